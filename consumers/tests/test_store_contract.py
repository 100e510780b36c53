"""The store contract: what every adapter promises, run against each of them.

SQLite on a temporary file; MongoDB against the in-process stand-in, and against a real server
when HOOKHUB_TEST_MONGODB_URL is set. Tests use only the Store interface, and the event log's
read-only view of what stores keep (`hookhub_eventlog.store.consumer_tables`), on the same storage.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hookhub_consumers.records import Delivery, Order, Ticket
from hookhub_consumers.store import ConcurrentUpdate, Marker, Store, open_store
from hookhub_consumers.store.mongo import MongoStore
from hookhub_consumers.store.sqlite import SQLiteStore
from hookhub_eventlog.store import Attempt, EventLog
from hookhub_eventlog.store.mongo import MongoEventLog
from hookhub_eventlog.store.sqlite import SQLiteEventLog
from pymongo import AsyncMongoClient

from tests.support.mongo_standin import StandinClient

MONGODB_URL_VAR = "HOOKHUB_TEST_MONGODB_URL"
SOURCE = "/providers/stripe"
A_TIME = datetime(2025, 3, 1, 15, 30, 12, 345000, tzinfo=UTC)  # millisecond precision, as stored


def marker(event_id: str = "evt-1", consumer: str = "payments") -> Marker:
    return Marker.of(consumer, SOURCE, event_id)


OpenStore = Callable[[], Store]


@dataclass
class Storage:
    """One fresh storage (a SQLite file, a MongoDB database), on which stores and event logs are
    opened, each as a separate process would; all closed at the end."""

    new_store: Callable[[], Store]
    new_event_log: Callable[[], EventLog]
    opened: list[Store | EventLog] = field(default_factory=list)

    def store(self) -> Store:
        self.opened.append(store := self.new_store())
        return store

    def event_log(self) -> EventLog:
        self.opened.append(event_log := self.new_event_log())
        return event_log


@pytest.fixture(params=["sqlite", "mongodb-standin", "mongodb-server"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    cleanup = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/hookhub.db"
        found = Storage(lambda: SQLiteStore.from_url(url), lambda: SQLiteEventLog.from_url(url))

    elif request.param == "mongodb-standin":
        database = StandinClient()[f"hookhub_test_{uuid.uuid4().hex}"]
        # The stand-in's duck type stands for an AsyncDatabase.
        found = Storage(lambda: MongoStore(database), lambda: MongoEventLog(database))  # type: ignore[arg-type]

    else:
        server_url = os.environ.get(MONGODB_URL_VAR)
        if not server_url:
            pytest.skip(f"no MongoDB server: set {MONGODB_URL_VAR}=mongodb://host:port to run this")
        name = f"hookhub_test_{uuid.uuid4().hex}"
        admin: AsyncMongoClient = AsyncMongoClient(server_url)

        def client() -> AsyncMongoClient:
            return AsyncMongoClient(server_url, tz_aware=True)

        found = Storage(
            lambda: MongoStore((c := client())[name], c),
            lambda: MongoEventLog((c := client())[name], c),
        )

        async def cleanup() -> None:
            await admin.drop_database(name)
            await admin.close()

    yield found
    for opened in found.opened:
        await opened.close()
    if cleanup:
        await cleanup()


@pytest.fixture
def open_another(storage: Storage) -> OpenStore:
    """Opens stores on one fresh storage, each as a separate consumer process would."""
    return storage.store


@pytest.fixture
def store(storage: Storage) -> Store:
    return storage.store()


@pytest.fixture
def event_log(storage: Storage) -> EventLog:
    """The event log on the same storage, which reads the markers and deliveries stores keep."""
    return storage.event_log()


def full_order() -> Order:
    return Order(
        order_id="ord-1",
        status="approved",
        amount=129_90,
        currency="BRL",
        customer={"name": "Ana Souza", "email": "ana@example.com", "address": {"city": "Recife"}},
        items=[{"sku": "MUG-01", "quantity": 2, "price": 4990}, {"sku": "TEE-M", "quantity": 1}],
        provider="mercadopago",
        payment_id="pay-123",
        paid_amount=130_00,
        paid_currency="BRL",
        refunded_amount=10,
        updated_at=A_TIME,
    )


# Round trips


async def test_a_working_store_takes_the_readiness_write(store: Store):
    await store.check_writable()
    await store.check_writable()  # repeated, it rewrites the same record


async def test_an_order_round_trips_with_every_field(store: Store):
    assert await store.save_order(full_order(), marker()) is True

    got = await store.get_order("ord-1")

    expected = full_order()
    expected.version = 1
    assert got == expected
    assert got.updated_at.utcoffset() == timedelta(0)


async def test_a_ticket_round_trips_with_every_field(store: Store):
    ticket = Ticket("ord-1", status="ready", updated_at=A_TIME)
    assert await store.save_ticket(ticket, marker(consumer="production")) is True

    got = await store.get_ticket("ord-1")

    assert got == Ticket("ord-1", status="ready", version=1, updated_at=A_TIME)
    assert got.updated_at.utcoffset() == timedelta(0)


async def test_an_order_or_ticket_never_saved_is_none(store: Store):
    assert await store.get_order("nope") is None
    assert await store.get_ticket("nope") is None


async def test_an_order_is_found_by_the_payment_that_paid_it(store: Store):
    await store.save_order(full_order(), marker("evt-1"))
    await store.save_order(Order("ord-2", provider="stripe", payment_id="pi_2"), marker("evt-2"))

    assert await store.order_of_payment("mercadopago", "pay-123") == await store.get_order("ord-1")
    assert (await store.order_of_payment("stripe", "pi_2")).order_id == "ord-2"


async def test_a_payment_id_of_another_provider_or_none_saved_finds_no_order(store: Store):
    await store.save_order(full_order(), marker("evt-1"))

    assert await store.order_of_payment("stripe", "pay-123") is None
    assert await store.order_of_payment("mercadopago", "pay-999") is None


async def test_an_order_without_a_payment_yet_keeps_its_payment_fields_empty(store: Store):
    await store.save_order(Order("ord-1", amount=4990, currency="BRL"), marker())

    got = await store.get_order("ord-1")

    assert (got.paid_amount, got.paid_currency, got.refunded_amount) == (None, None, 0)


async def test_times_come_back_in_utc_to_the_millisecond(store: Store):
    sao_paulo = timezone(timedelta(hours=-3))
    order = Order("ord-1", updated_at=datetime(2025, 3, 1, 12, 30, 12, 345678, tzinfo=sao_paulo))
    await store.save_order(order, marker())

    got = await store.get_order("ord-1")

    assert got.updated_at == datetime(2025, 3, 1, 15, 30, 12, 345000, tzinfo=UTC)
    assert got.updated_at.utcoffset() == timedelta(0)


async def test_each_save_bumps_the_version_in_the_store_and_in_the_saved_copy(store: Store):
    order = Order("ord-1")
    await store.save_order(order, marker("evt-1"))
    assert order.version == 1

    order.status = "approved"
    await store.save_order(order, marker("evt-2"))

    assert order.version == 2
    assert (await store.get_order("ord-1")).version == 2


# Exactly once in effect


async def test_the_outbox_saved_with_a_change_is_pending_in_order_until_sent(store: Store):
    await store.save_order(Order("ord-1"), marker("evt-1"), outbox=["first", "second"])
    ticket_marker = marker("evt-1", consumer="production")
    await store.save_ticket(Ticket("ord-1"), ticket_marker, outbox=["queued"])

    assert await store.pending(marker("evt-1")) == ["first", "second"]
    assert await store.pending(ticket_marker) == ["queued"]
    await store.sent(marker("evt-1"))
    assert await store.pending(marker("evt-1")) == []
    assert await store.pending(ticket_marker) == ["queued"]


async def test_a_second_change_keeps_the_first_changes_outbox_apart(store: Store):
    order = Order("ord-1")
    await store.save_order(order, marker("evt-1"), outbox=["one"])
    await store.save_order(order, marker("evt-2"), outbox=["two"])

    assert await store.pending(marker("evt-1")) == ["one"]
    assert await store.pending(marker("evt-2")) == ["two"]


async def test_a_refused_save_adds_nothing_to_the_outbox(store: Store):
    await store.save_order(Order("ord-1"), marker("evt-1"), outbox=["original"])
    await store.sent(marker("evt-1"))
    stale = Order("ord-1")  # version 0: someone else created it meanwhile

    assert await store.save_order(Order("ord-1", version=1), marker("evt-1"), ["again"]) is False
    with pytest.raises(ConcurrentUpdate):
        await store.save_order(stale, marker("evt-2"), outbox=["lost race"])

    assert await store.pending(marker("evt-1")) == []
    assert await store.pending(marker("evt-2")) == []


async def test_unsent_outboxes_older_than_a_time_are_found_per_consumer(store: Store):
    await store.save_order(Order("ord-1"), marker("evt-1"), outbox=["approved"])
    await store.save_order(Order("ord-2"), marker("evt-2"), outbox=["declined"])
    await store.save_ticket(Ticket("ord-1"), marker("evt-1", "production"), outbox=["queued"])
    await store.save_order(Order("ord-3"), marker("evt-3"))  # nothing to send
    await store.sent(marker("evt-2"))
    later = datetime.now(UTC) + timedelta(seconds=1)

    assert await store.unsent("payments", saved_before=later) == [marker("evt-1")]
    assert await store.unsent("production", saved_before=later) == [marker("evt-1", "production")]
    assert await store.unsent("notifications", saved_before=later) == []


async def test_an_outbox_saved_after_the_time_is_not_unsent_yet(store: Store):
    earlier = datetime.now(UTC) - timedelta(seconds=1)
    await store.save_order(Order("ord-1"), marker("evt-1"), outbox=["approved"])

    assert await store.unsent("payments", saved_before=earlier) == []


async def test_a_redelivered_event_writes_nothing_and_returns_false(store: Store):
    await store.save_order(Order("ord-1", status="approved"), marker("evt-1"))
    again = await store.get_order("ord-1")
    again.status = "refunded"

    assert await store.save_order(again, marker("evt-1")) is False

    stored = await store.get_order("ord-1")
    assert (stored.status, stored.version) == ("approved", 1)


async def test_a_redelivered_creation_writes_nothing_and_returns_false(store: Store):
    await store.save_ticket(Ticket("ord-1", status="queued"), marker(consumer="production"))

    redelivered = Ticket("ord-1", status="ready")
    assert await store.save_ticket(redelivered, marker(consumer="production")) is False

    stored = await store.get_ticket("ord-1")
    assert (stored.status, stored.version) == ("queued", 1)


async def test_a_save_with_a_stale_version_raises_and_writes_nothing(store: Store):
    await store.save_order(Order("ord-1"), marker("evt-1"))
    first, second = await store.get_order("ord-1"), await store.get_order("ord-1")
    first.status = "approved"
    await store.save_order(first, marker("evt-2"))

    second.status = "declined"
    with pytest.raises(ConcurrentUpdate, match="ord-1"):
        await store.save_order(second, marker("evt-3"))

    stored = await store.get_order("ord-1")
    assert (stored.status, stored.version) == ("approved", 2)
    assert await store.is_processed(marker("evt-3")) is False


async def test_creating_what_already_exists_raises_and_writes_nothing(store: Store):
    await store.save_ticket(Ticket("ord-1", status="queued"), marker("evt-1", "production"))

    with pytest.raises(ConcurrentUpdate, match="ord-1"):
        await store.save_ticket(Ticket("ord-1", status="cancelled"), marker("evt-2", "production"))

    stored = await store.get_ticket("ord-1")
    assert (stored.status, stored.version) == ("queued", 1)
    assert await store.is_processed(marker("evt-2", "production")) is False


async def test_a_saved_marker_is_processed(store: Store):
    assert await store.is_processed(marker()) is False

    await store.save_order(Order("ord-1"), marker())

    assert await store.is_processed(marker()) is True


async def test_markers_are_per_consumer(store: Store):
    await store.save_order(Order("ord-1"), marker("evt-1", "payments"))

    assert await store.is_processed(marker("evt-1", "production")) is False
    assert await store.save_ticket(Ticket("ord-1"), marker("evt-1", "production")) is True
    assert await store.mark_processed(marker("evt-1", "notifications")) is True


async def test_a_marker_written_alone_is_processed_once(store: Store):
    assert await store.mark_processed(marker(consumer="notifications")) is True

    assert await store.is_processed(marker(consumer="notifications")) is True
    assert await store.mark_processed(marker(consumer="notifications")) is False


async def test_a_marker_written_alone_makes_a_save_for_that_event_write_nothing(store: Store):
    await store.mark_processed(marker())

    assert await store.save_order(Order("ord-1"), marker()) is False
    assert await store.get_order("ord-1") is None


async def test_a_marker_saved_with_state_cannot_be_written_alone_again(store: Store):
    await store.save_order(Order("ord-1"), marker())

    assert await store.mark_processed(marker()) is False


# Deliveries


async def test_deliveries_come_back_oldest_first_with_every_field(store: Store):
    def attempt(n: int, after_s: int, **outcome) -> Delivery:
        at = A_TIME + timedelta(seconds=after_s)
        return Delivery("evt-1", "payment.approved", "https://a.example/hook", n, at=at, **outcome)

    attempts = [
        attempt(1, 0, status_code=503, error="HTTP 503"),
        attempt(2, 30, error="timed out"),
        attempt(3, 90, status_code=200, delivered=True),
    ]
    for attempt in reversed(attempts):
        await store.record_delivery(attempt)

    assert await store.deliveries() == attempts


async def test_deliveries_in_the_same_millisecond_keep_the_order_they_were_recorded_in(
    store: Store,
):
    attempts = [
        Delivery("evt-1", "ci.build", f"https://{n}.example/hook", 1, at=A_TIME) for n in range(3)
    ]
    for attempt in attempts:
        await store.record_delivery(attempt)

    assert [d.url for d in await store.deliveries("evt-1")] == [a.url for a in attempts]


async def test_an_attempt_recorded_again_gets_its_outcome_and_stays_one_attempt(store: Store):
    sending = Delivery("evt-1", "ci.build", "https://a.example/hook", 1, at=A_TIME)
    await store.record_delivery(sending)
    done = Delivery(
        "evt-1", "ci.build", "https://a.example/hook", 1, status_code=200, delivered=True, at=A_TIME
    )
    await store.record_delivery(done)

    assert await store.deliveries("evt-1") == [done]


async def test_deliveries_can_be_filtered_by_event(store: Store):
    for n, event_id in enumerate(["evt-1", "evt-2", "evt-1"]):
        await store.record_delivery(
            Delivery(
                event_id,
                "order.ready",
                "https://a.example/hook",
                n + 1,
                at=A_TIME + timedelta(seconds=n),
            )
        )

    assert [d.attempt for d in await store.deliveries("evt-1")] == [1, 3]
    assert [d.attempt for d in await store.deliveries("evt-2")] == [2]
    assert await store.deliveries("evt-unknown") == []


# Several processes on one storage


async def test_a_second_store_on_the_same_storage_sees_the_first_ones_writes(
    open_another: OpenStore,
):
    one, other = open_another(), open_another()
    await one.save_order(full_order(), marker("evt-1"))
    await one.mark_processed(marker("evt-2", "notifications"))
    await one.record_delivery(
        Delivery("evt-2", "payment.approved", "https://a.example/hook", 1, at=A_TIME)
    )

    assert (await other.get_order("ord-1")).status == "approved"
    assert await other.is_processed(marker("evt-1")) is True
    assert await other.save_order(await other.get_order("ord-1"), marker("evt-1")) is False
    assert await other.mark_processed(marker("evt-2", "notifications")) is False
    assert [d.attempt for d in await other.deliveries("evt-2")] == [1]


async def test_two_stores_on_the_same_storage_conflict_on_a_stale_version(open_another: OpenStore):
    one, other = open_another(), open_another()
    await one.save_order(Order("ord-1"), marker("evt-1"))
    mine, theirs = await one.get_order("ord-1"), await other.get_order("ord-1")
    mine.status = "approved"
    await one.save_order(mine, marker("evt-2"))

    theirs.status = "declined"
    with pytest.raises(ConcurrentUpdate):
        await other.save_order(theirs, marker("evt-3"))

    assert (await other.get_order("ord-1")).status == "approved"


async def test_two_stores_creating_the_same_order_at_once_let_exactly_one_win(
    open_another: OpenStore,
):
    one, other = open_another(), open_another()

    results = await asyncio.gather(
        one.save_order(Order("ord-1", status="approved"), marker("evt-1")),
        other.save_order(Order("ord-1", status="declined"), marker("evt-2")),
        return_exceptions=True,
    )

    assert sorted(type(r).__name__ for r in results) == ["ConcurrentUpdate", "bool"]
    winner = "approved" if results[0] is True else "declined"
    assert (await one.get_order("ord-1")).status == winner
    assert (await one.get_order("ord-1")).version == 1


# Choosing the adapter


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


# What the event log reads of it, on the same storage


async def test_the_event_log_knows_which_consumers_processed_an_event(
    store: Store, event_log: EventLog
):
    await store.save_order(Order("ord-1"), marker("evt-1", "payments"))
    await store.save_ticket(Ticket("ord-1"), marker("evt-1", "production"))
    await store.mark_processed(marker("evt-1", "notifications"))
    await store.mark_processed(marker("evt-2", "notifications"))

    processed = await event_log.processed_by(SOURCE, "evt-1")

    assert sorted(consumer for consumer, _ in processed) == [
        "notifications",
        "payments",
        "production",
    ]
    assert all(at.utcoffset() == timedelta(0) for _, at in processed)
    assert await event_log.processed_by(SOURCE, "evt-3") == []
    assert await event_log.processed_by("/another/source", "evt-1") == []


async def test_the_event_log_reads_an_events_delivery_attempts_oldest_first(
    store: Store, event_log: EventLog
):
    url = "https://a.example/hook"
    await store.record_delivery(Delivery("evt-1", "ci.build", url, 2, error="timed out", at=A_TIME))
    await store.record_delivery(
        Delivery("evt-1", "ci.build", url, 1, status_code=503, at=A_TIME - timedelta(seconds=5))
    )
    await store.record_delivery(Delivery("evt-2", "ci.build", url, 1, delivered=True, at=A_TIME))

    assert await event_log.attempts("evt-1") == [
        Attempt(url, False, A_TIME - timedelta(seconds=5), status_code=503),
        Attempt(url, False, A_TIME, error="timed out"),
    ]
    assert await event_log.attempts("evt-3") == []
