"""A write that finds the store idle waits a little for company (`HOOKHUB_COMMIT_LINGER_MS`), so
that at low load several events share one commit and its fsync; it never waits once a consumer's
prefetch worth is queued, nor when the store is closing. The group mechanism in memory: what
each commit held."""

import asyncio
from collections.abc import Sequence

from hookhub_consumers.store.base import GroupCommit

LONG_S = 30.0  # a linger no test may wait out
BOUND_S = 5.0


def recording() -> tuple[GroupCommit, list[list[str]]]:
    commits: list[list[str]] = []

    async def write(writes: Sequence[str]) -> list[bool]:  # type: ignore[override]
        commits.append(list(writes))
        return [True] * len(writes)

    return GroupCommit(write), commits  # type: ignore[arg-type]


async def test_writes_arriving_while_one_lingers_share_its_commit() -> None:
    group, commits = recording()
    group.linger_s = 0.3
    first = asyncio.create_task(group.submit("a"))  # type: ignore[arg-type]
    await asyncio.sleep(0.02)
    later = [asyncio.create_task(group.submit(w)) for w in ("b", "c")]  # type: ignore[arg-type]
    assert await asyncio.gather(first, *later) == [True, True, True]
    assert commits == [["a", "b", "c"]]


async def test_without_a_linger_a_write_to_an_idle_store_commits_alone() -> None:
    group, commits = recording()
    assert await group.submit("a")  # type: ignore[arg-type]
    await asyncio.sleep(0.02)
    assert await group.submit("b")  # type: ignore[arg-type]
    assert commits == [["a"], ["b"]]


async def test_a_prefetch_worth_of_writes_commits_without_waiting_out_the_linger() -> None:
    group, commits = recording()
    group.linger_s, group.enough = LONG_S, 3
    writes = [group.submit(w) for w in ("a", "b", "c")]  # type: ignore[arg-type]
    assert await asyncio.wait_for(asyncio.gather(*writes), BOUND_S) == [True, True, True]
    assert commits == [["a", "b", "c"]]


async def test_closing_the_store_ends_a_linger_and_commits_what_waits() -> None:
    group, commits = recording()
    group.linger_s = LONG_S
    pending = asyncio.create_task(group.submit("a"))  # type: ignore[arg-type]
    await asyncio.sleep(0.02)  # lingering
    await asyncio.wait_for(group.flush(), BOUND_S)
    assert await asyncio.wait_for(pending, BOUND_S)
    assert commits == [["a"]]


async def test_a_write_made_as_the_store_closes_does_not_linger() -> None:
    group, commits = recording()
    group.linger_s = LONG_S
    pending = asyncio.create_task(group.submit("a"))  # type: ignore[arg-type]
    await asyncio.wait_for(group.flush(), BOUND_S)  # before the write's group began
    assert await asyncio.wait_for(pending, BOUND_S)
    assert commits == [["a"]]
