"""The runtime store's contract: markers, the outbox, group commit, and a state saved atomically
with them through the repository its consumer registered; run against each adapter.

The record saved is the toy loyalty consumer's (`tests/support/loyalty`), whose repository is
registered exactly as a real consumer's: the store knows no record type of its own. Each
consumer's repository has its own contract suite (test_<consumer>_records.py).
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hookhub import specs
from hookhub.specs import ConsumerSpec
from hookhub_consumers.payments.records import Order, orders
from hookhub_consumers.production.records import Ticket
from hookhub_consumers.store import ConcurrentUpdate, Marker, Store, open_store
from hookhub_consumers.store.base import Change, load_repositories
from hookhub_consumers.store.mongo import MongoStore
from hookhub_consumers.store.sqlite import SQLiteStore
from hookhub_eventlog.store import EventLog
from storages import ADAPTERS, Storage, storage

from tests.support.loyalty.records import Account, accounts
from tests.support.loyalty.spec import SPEC as LOYALTY

SOURCE = "/providers/stripe"
A_TIME = datetime(2025, 3, 1, 15, 30, 12, 345000, tzinfo=UTC)  # millisecond precision, as stored


def marker(event_id: str = "evt-1", consumer: str = "loyalty") -> Marker:
    return Marker.of(consumer, SOURCE, event_id)


async def save(store: Store, state: object, mark: Marker, outbox: tuple[str, ...] = ()) -> bool:
    return await store.save(Change(mark, state, outbox))


@pytest.fixture(params=ADAPTERS)
async def on_storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    # The toy's records, and the real consumers' too: the event log reads them all.
    async with storage(request.param, tmp_path, [LOYALTY, *specs.installed()]) as found:
        yield found


@pytest.fixture
def store(on_storage: Storage) -> Store:
    return on_storage.store()


@pytest.fixture
def event_log(on_storage: Storage) -> EventLog:
    return on_storage.event_log()


# Saving through the registered repository


async def test_a_working_store_takes_the_readiness_write(store: Store):
    await store.check_writable()
    await store.check_writable()  # repeated, it rewrites the same record
    assert await store.is_processed(marker("evt-3")) is False


async def test_a_state_is_saved_through_the_repository_of_its_record_type(store: Store):
    assert await save(store, Account("ana", points=49, updated_at=A_TIME), marker()) is True

    assert await accounts(store).get("ana") == Account("ana", 49, version=1, updated_at=A_TIME)


async def test_each_save_bumps_the_version_in_the_store_and_in_the_saved_copy(store: Store):
    account = Account("ana")
    await save(store, account, marker("evt-1"))
    assert account.version == 1

    account.points = 10
    await save(store, account, marker("evt-2"))

    assert account.version == 2
    assert (await accounts(store).get("ana")).version == 2


async def test_a_state_no_repository_keeps_is_refused_saying_how_to_register_one(store: Store):
    @dataclass
    class Stamp:
        card_id: str
        version: int = 0

    with pytest.raises(TypeError, match=r"no repository .* keeps Stamp records: register one"):
        await save(store, Stamp("c-1"), marker())

    assert await store.is_processed(marker()) is False


async def test_each_consumer_gets_its_own_repository_and_an_unknown_one_is_named(store: Store):
    assert accounts(store) is store.repository("loyalty")

    with pytest.raises(KeyError, match=r"no records of 'billing' .* loyalty, notifications"):
        store.repository("billing")


# Markers


async def test_a_saved_marker_is_processed(store: Store):
    assert await store.is_processed(marker()) is False

    await save(store, Account("ana"), marker())

    assert await store.is_processed(marker()) is True


async def test_markers_are_per_consumer(store: Store):
    await save(store, Account("ana"), marker("evt-1", "loyalty"))

    assert await store.is_processed(marker("evt-1", "rewards")) is False
    assert await store.mark_processed(marker("evt-1", "rewards")) is True


async def test_a_marker_written_alone_is_processed_once(store: Store):
    assert await store.mark_processed(marker(consumer="notifications")) is True

    assert await store.is_processed(marker(consumer="notifications")) is True
    assert await store.mark_processed(marker(consumer="notifications")) is False


async def test_a_marker_written_alone_makes_a_save_for_that_event_write_nothing(store: Store):
    await store.mark_processed(marker())

    assert await save(store, Account("ana"), marker()) is False
    assert await accounts(store).get("ana") is None


async def test_a_marker_saved_with_state_cannot_be_written_alone_again(store: Store):
    await save(store, Account("ana"), marker())

    assert await store.mark_processed(marker()) is False


async def test_a_marker_is_unique_across_records_and_collections(store: Store):
    one = marker("evt-1", "payments")

    saved = [
        await save(store, Order("ord-b"), one),
        await save(store, Order("ord-c"), one),
        await save(store, Ticket("ord-d"), one),
    ]

    assert saved == [True, False, False]
    assert await orders(store).get("ord-c") is None


async def test_a_state_saved_and_the_same_marker_written_alone_at_once_let_exactly_one_win(
    on_storage: Storage,
):
    one, other = on_storage.store(), on_storage.store()
    both = marker("evt-1", "payments")

    results = await asyncio.gather(save(one, Order("ord-1"), both), other.mark_processed(both))

    assert sorted(results) == [False, True]
    assert await one.is_processed(both) is True


async def test_one_marker_saved_with_two_records_at_once_lets_exactly_one_win(on_storage: Storage):
    one, other = on_storage.store(), on_storage.store()
    both = marker("evt-1", "payments")

    results = await asyncio.gather(
        save(one, Order("ord-1"), both), save(other, Ticket("t-1"), both)
    )

    assert sorted(results) == [False, True]


# Exactly once in effect


async def test_the_outbox_saved_with_a_change_is_pending_in_order_until_sent(store: Store):
    await save(store, Account("ana"), marker("evt-1"), ("first", "second"))
    other = marker("evt-1", consumer="rewards")
    await save(store, Account("bea"), other, ("earned",))

    assert await store.pending(marker("evt-1")) == ["first", "second"]
    assert await store.pending(other) == ["earned"]
    await store.sent(marker("evt-1"))
    assert await store.pending(marker("evt-1")) == []
    assert await store.pending(other) == ["earned"]


async def test_an_outbox_forgotten_soon_goes_with_the_next_save_not_a_write_of_its_own(
    store: Store,
):
    await save(store, Account("ana"), marker("evt-1"), ("published",))
    store.forget_soon(marker("evt-1"))

    assert await store.pending(marker("evt-1")) == ["published"]  # nothing written for it yet
    await save(store, Account("bea"), marker("evt-2"), ("next",))
    assert await store.pending(marker("evt-1")) == []
    assert await store.pending(marker("evt-2")) == ["next"]


async def test_an_outbox_forgotten_soon_is_written_within_its_time_when_nothing_comes(
    store: Store,
):
    await save(store, Account("ana"), marker("evt-1"), ("published",))
    store.forget_soon(marker("evt-1"), within_s=0.05)

    await asyncio.sleep(0.5)
    assert await store.pending(marker("evt-1")) == []


async def test_closing_the_store_writes_the_outbox_forgotten_soon(on_storage: Storage):
    store = on_storage.store()
    await save(store, Account("ana"), marker("evt-1"), ("published",))
    store.forget_soon(marker("evt-1"))
    await store.close()

    assert await on_storage.store().pending(marker("evt-1")) == []


async def test_a_second_change_keeps_the_first_changes_outbox_apart(store: Store):
    account = Account("ana")
    await save(store, account, marker("evt-1"), ("one",))
    await save(store, account, marker("evt-2"), ("two",))

    assert await store.pending(marker("evt-1")) == ["one"]
    assert await store.pending(marker("evt-2")) == ["two"]


async def test_follow_ups_need_a_state_to_ride_with():
    with pytest.raises(ValueError, match="saved with a state change"):
        Change(marker(), None, ("alone",))


async def test_a_refused_save_adds_nothing_to_the_outbox(store: Store):
    await save(store, Account("ana"), marker("evt-1"), ("original",))
    await store.sent(marker("evt-1"))
    stale = Account("ana")  # version 0: someone else created it meanwhile

    assert await save(store, Account("ana", version=1), marker("evt-1"), ("again",)) is False
    with pytest.raises(ConcurrentUpdate):
        await save(store, stale, marker("evt-2"), ("lost race",))

    assert await store.pending(marker("evt-1")) == []
    assert await store.pending(marker("evt-2")) == []


async def test_unsent_outboxes_older_than_a_time_are_found_per_consumer(store: Store):
    await save(store, Account("ana"), marker("evt-1"), ("earned",))
    await save(store, Account("bea"), marker("evt-2"), ("earned",))
    await save(store, Account("cid"), marker("evt-1", "rewards"), ("rewarded",))
    await save(store, Account("dan"), marker("evt-3"))  # nothing to send
    await store.sent(marker("evt-2"))
    later = datetime.now(UTC) + timedelta(seconds=1)

    assert await store.unsent("loyalty", saved_before=later) == [marker("evt-1")]
    assert await store.unsent("rewards", saved_before=later) == [marker("evt-1", "rewards")]
    assert await store.unsent("notifications", saved_before=later) == []


async def test_an_outbox_saved_after_the_time_is_not_unsent_yet(store: Store):
    earlier = datetime.now(UTC) - timedelta(seconds=1)
    await save(store, Account("ana"), marker("evt-1"), ("earned",))

    assert await store.unsent("loyalty", saved_before=earlier) == []


async def test_a_redelivered_event_writes_nothing_and_returns_false(store: Store):
    await save(store, Account("ana", points=5), marker("evt-1"))
    again = await accounts(store).get("ana")
    again.points = 10

    assert await save(store, again, marker("evt-1")) is False

    stored = await accounts(store).get("ana")
    assert (stored.points, stored.version) == (5, 1)


async def test_a_redelivered_creation_writes_nothing_and_returns_false(store: Store):
    await save(store, Account("ana", points=5), marker())

    assert await save(store, Account("ana", points=10), marker()) is False

    stored = await accounts(store).get("ana")
    assert (stored.points, stored.version) == (5, 1)


async def test_creating_what_already_exists_raises_and_writes_nothing(store: Store):
    await save(store, Account("ana", points=5), marker("evt-1"))

    with pytest.raises(ConcurrentUpdate, match="ana"):
        await save(store, Account("ana", points=10), marker("evt-2"))

    stored = await accounts(store).get("ana")
    assert (stored.points, stored.version) == (5, 1)
    assert await store.is_processed(marker("evt-2")) is False


async def test_a_save_with_a_stale_version_raises_and_writes_nothing(store: Store):
    await save(store, Account("ana"), marker("evt-1"))
    first, second = await accounts(store).get("ana"), await accounts(store).get("ana")
    first.points = 5
    await save(store, first, marker("evt-2"))

    second.points = 7
    with pytest.raises(ConcurrentUpdate, match="ana"):
        await save(store, second, marker("evt-3"))

    stored = await accounts(store).get("ana")
    assert (stored.points, stored.version) == (5, 2)
    assert await store.is_processed(marker("evt-3")) is False


# Group commit


async def test_changes_written_in_one_group_each_succeed_or_fail_alone(store: Store):
    await save(store, Account("ana"), marker("evt-0"))
    stale = Account("ana")  # version 0: creating what exists

    results = await asyncio.gather(
        save(store, Account("bea"), marker("evt-1"), ("bea earned",)),
        save(store, stale, marker("evt-2"), ("lost race",)),
        save(store, Account("cid"), marker("evt-3")),
        store.mark_processed(marker("evt-0")),  # a repeat: nothing written
        return_exceptions=True,
    )

    assert [type(r).__name__ for r in results] == ["bool", "ConcurrentUpdate", "bool", "bool"]
    assert [results[0], results[2], results[3]] == [True, True, False]
    assert await store.pending(marker("evt-1")) == ["bea earned"]
    assert await store.is_processed(marker("evt-2")) is False
    assert (await accounts(store).get("cid")).version == 1


# Several processes on one storage


async def test_a_second_store_on_the_same_storage_sees_the_first_ones_writes(on_storage: Storage):
    one, other = on_storage.store(), on_storage.store()
    await save(one, Account("ana", points=5), marker("evt-1"))
    await one.mark_processed(marker("evt-2", "notifications"))

    assert (await accounts(other).get("ana")).points == 5
    assert await other.is_processed(marker("evt-1")) is True
    assert await save(other, await accounts(other).get("ana"), marker("evt-1")) is False
    assert await other.mark_processed(marker("evt-2", "notifications")) is False


async def test_two_stores_on_the_same_storage_conflict_on_a_stale_version(on_storage: Storage):
    one, other = on_storage.store(), on_storage.store()
    await save(one, Account("ana"), marker("evt-1"))
    mine, theirs = await accounts(one).get("ana"), await accounts(other).get("ana")
    mine.points = 5
    await save(one, mine, marker("evt-2"))

    theirs.points = 7
    with pytest.raises(ConcurrentUpdate):
        await save(other, theirs, marker("evt-3"))

    assert (await accounts(other).get("ana")).points == 5


async def test_two_stores_creating_the_same_record_at_once_let_exactly_one_win(
    on_storage: Storage,
):
    one, other = on_storage.store(), on_storage.store()

    results = await asyncio.gather(
        save(one, Account("ana", points=5), marker("evt-1")),
        save(other, Account("ana", points=7), marker("evt-2")),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["ConcurrentUpdate", "bool"]
    winner = 5 if results[0] is True else 7
    assert (await accounts(one).get("ana")).points == winner
    assert (await accounts(one).get("ana")).version == 1


# What the event log reads of it, on the same storage


async def test_the_event_log_knows_which_consumers_processed_an_event(
    store: Store, event_log: EventLog
):
    await save(store, Account("ana"), marker("evt-1", "loyalty"))
    await save(store, Order("ord-1"), marker("evt-1", "payments"))
    await save(store, Ticket("ord-1"), marker("evt-1", "production"))
    await store.mark_processed(marker("evt-1", "notifications"))
    await store.mark_processed(marker("evt-2", "notifications"))

    processed = await event_log.processed_by(SOURCE, "evt-1")

    assert sorted(consumer for consumer, _ in processed) == [
        "loyalty",
        "notifications",
        "payments",
        "production",
    ]
    assert all(at.utcoffset() == timedelta(0) for _, at in processed)
    assert await event_log.processed_by(SOURCE, "evt-3") == []
    assert await event_log.processed_by("/another/source", "evt-1") == []


# Opening a store: the adapter, and the repositories it loads


async def test_open_store_picks_sqlite_for_a_sqlite_url_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///var/data/hookhub.db")
    try:
        assert isinstance(store, SQLiteStore)
        await store.mark_processed(marker())
    finally:
        await store.close()

    assert (tmp_path / "var" / "data" / "hookhub.db").is_file()


async def test_open_store_takes_an_absolute_sqlite_path_after_four_slashes(tmp_path: Path):
    store = open_store(f"sqlite:///{tmp_path}/nested/hookhub.db")  # tmp_path starts with "/"
    try:
        await store.mark_processed(marker())
    finally:
        await store.close()

    assert (tmp_path / "nested" / "hookhub.db").is_file()


async def test_open_store_picks_mongodb_for_a_mongodb_url():
    store = open_store("mongodb://127.0.0.1:27017/hookhub")  # connects only on first use
    try:
        assert isinstance(store, MongoStore)
    finally:
        await store.close()


def test_open_store_rejects_other_urls_saying_which_ones_work_and_not_the_password():
    with pytest.raises(ValueError) as rejected:
        open_store("postgresql://hookhub:s3cret@localhost/hookhub")

    assert str(rejected.value) == (
        "unsupported HOOKHUB_STORE_URL scheme 'postgresql': use sqlite:///path or mongodb://host/db"
    )


def test_a_sqlite_url_without_a_path_says_how_to_write_one():
    with pytest.raises(ValueError, match=r"use sqlite:///relative/path.db or sqlite:////absolute"):
        open_store("sqlite://hookhub.db")


async def test_a_store_opened_for_some_consumers_keeps_only_their_records(tmp_path: Path):
    store = open_store(f"sqlite:///{tmp_path}/hookhub.db", [LOYALTY])
    try:
        assert accounts(store) is not None
        with pytest.raises(KeyError, match="opened with the repositories of: loyalty"):
            store.repository("payments")
    finally:
        await store.close()


def test_a_consumer_without_a_repository_for_the_stores_scheme_is_refused_saying_why():
    sqlite_only = ConsumerSpec(
        "stamps", ("x.#",), "m:S", repositories={"sqlite": "tests.support.loyalty.store_sqlite:X"}
    )

    with pytest.raises(ValueError, match=r"stamps keeps no records in a mongodb store: .* sqlite"):
        load_repositories("mongodb", [sqlite_only])


def test_two_consumers_keeping_one_record_type_are_refused(tmp_path: Path):
    twin = ConsumerSpec("twin", ("x.#",), "m:S", repositories=LOYALTY.repositories)

    with pytest.raises(ValueError, match="loyalty and another consumer both keep Account"):
        open_store(f"sqlite:///{tmp_path}/hookhub.db", [twin, LOYALTY])
