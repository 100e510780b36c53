"""A change that finds the store idle waits a little for company (`HOOKHUB_COMMIT_LINGER_MS`), so
that at low load several events share one commit and its fsync; it stops waiting once a
consumer's prefetch worth is queued, when an outbox is to be forgotten (the relay waits on each),
and when the store is closing; it never waits past the linger. The group mechanism in memory:
what each commit held. Where writes each commit alone (MongoDB) the store does not linger."""

import asyncio
from collections.abc import Sequence

from hookhub_consumers.store.base import GroupCommit, Marker, Sent
from hookhub_consumers.store.mongo import MongoStore
from hookhub_consumers.store.sqlite import SQLiteStore

LONG_S = 30.0  # a linger no test may wait out
BOUND_S = 5.0


def recording(linger_s: float, enough: int = 32) -> tuple[GroupCommit, list[list[object]]]:
    commits: list[list[object]] = []

    async def write(writes: Sequence[object]) -> list[bool]:
        commits.append(list(writes))
        return [True] * len(writes)

    group = GroupCommit(write)  # type: ignore[arg-type]
    group.linger_s, group.enough = linger_s, enough
    return group, commits


def submit(group: GroupCommit, write: object) -> "asyncio.Task[bool]":
    return asyncio.create_task(group.submit(write))  # type: ignore[arg-type]


async def test_changes_arriving_while_one_lingers_share_its_commit() -> None:
    group, commits = recording(LONG_S)
    first = submit(group, "a")
    await asyncio.sleep(0.02)  # lingering
    later = [submit(group, "b"), submit(group, "c")]
    await asyncio.sleep(0.02)
    assert commits == []  # still waiting for company
    await asyncio.wait_for(group.flush(), BOUND_S)
    assert await asyncio.wait_for(asyncio.gather(first, *later), BOUND_S) == [True] * 3
    assert commits == [["a", "b", "c"]]


async def test_a_lone_change_commits_when_the_linger_runs_out() -> None:
    group, commits = recording(0.05)
    assert await asyncio.wait_for(submit(group, "a"), BOUND_S)
    assert commits == [["a"]]


async def test_without_a_linger_a_change_to_an_idle_store_commits_alone() -> None:
    group, commits = recording(0)
    assert await submit(group, "a")
    await asyncio.sleep(0.02)
    assert await submit(group, "b")
    assert commits == [["a"], ["b"]]


async def test_a_prefetch_worth_of_changes_ends_a_linger_at_once() -> None:
    group, commits = recording(LONG_S, enough=3)
    first = submit(group, "a")
    await asyncio.sleep(0.02)  # lingering
    rest = [submit(group, "b"), submit(group, "c")]
    assert await asyncio.wait_for(asyncio.gather(first, *rest), BOUND_S) == [True] * 3
    assert commits == [["a", "b", "c"]]


async def test_forgetting_an_outbox_does_not_linger() -> None:
    group, commits = recording(LONG_S)
    sent = Sent(Marker("payments", "evt-1"))
    assert await asyncio.wait_for(submit(group, sent), BOUND_S)
    change = submit(group, "a")
    await asyncio.sleep(0.02)  # lingering
    assert await asyncio.wait_for(submit(group, sent), BOUND_S)  # ends it, commits both
    assert await asyncio.wait_for(change, BOUND_S)
    assert commits == [[sent], ["a", sent]]


async def test_closing_the_store_ends_a_linger_and_commits_what_waits() -> None:
    group, commits = recording(LONG_S)
    pending = submit(group, "a")
    await asyncio.sleep(0.02)  # lingering
    await asyncio.wait_for(group.flush(), BOUND_S)
    assert await asyncio.wait_for(pending, BOUND_S)
    assert commits == [["a"]]


async def test_the_linger_still_works_after_a_flush() -> None:
    group, commits = recording(LONG_S, enough=2)
    await group.flush()
    first = submit(group, "a")
    await asyncio.sleep(0.02)
    assert commits == []  # lingering again
    assert await asyncio.wait_for(asyncio.gather(first, submit(group, "b")), BOUND_S)
    assert commits == [["a", "b"]]


def test_only_a_store_whose_group_is_one_commit_lingers() -> None:
    assert SQLiteStore.groups_share_a_commit
    assert not MongoStore.groups_share_a_commit
