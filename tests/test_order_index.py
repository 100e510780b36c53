"""The index knows the order of inbound events too: the storefront's order events by their data,
each payment provider's webhooks by the provider table's `order_id_at`, the very paths the
payments consumer reconciles by (one source, in `hookhub.providers`). An index an older release
made gets the column, its follow-ups' subjects copied in (the event log's migration 2); both
adapters read the order the payments consumer wrote, as its repositories write it."""

import json
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hookhub.events import Event
from hookhub.providers import PROVIDERS
from hookhub_consumers.payments.providers import RULES, normalise
from hookhub_consumers.payments.records import Order
from hookhub_consumers.payments.store_mongo import MongoOrders
from hookhub_consumers.payments.store_sqlite import SQLiteOrders
from hookhub_eventlog.archive import order_of
from hookhub_eventlog.store import EventQuery, LoggedEvent
from hookhub_eventlog.store.consumer_tables import ORDERS
from hookhub_eventlog.store.mongo import MongoEventLog
from hookhub_eventlog.store.sqlite import MIGRATIONS, SQLiteEventLog

from tests.support.mongo_standin import StandinClient

A_TIME = datetime(2026, 11, 1, tzinfo=UTC)
PAYLOADS = Path(__file__).parents[1] / "consumers" / "tests" / "payloads"
# Every documented sample a payment provider's rule normalises (Mercado Pago's notifications
# carry only a payment id: below).
SAMPLES = sorted(
    (path.parent.name, path.stem)
    for path in PAYLOADS.glob("*/*.json")
    if path.stem in RULES.get(path.parent.name, {}) and path.parent.name != "mercadopago"
)


def inbound(provider: str, type: str, payload: object) -> Event:
    return Event(
        id="e-1",
        source=f"/webhooks/{provider}",
        type=f"{provider}.{type}",
        data=json.dumps(payload).encode(),
    )


def test_every_payment_provider_with_samples_is_covered():
    assert {provider for provider, _ in SAMPLES} >= {"stripe", "hotmart", "kiwify", "asaas"}


@pytest.mark.parametrize(("provider", "type"), SAMPLES)
def test_an_inbound_payment_is_indexed_under_the_order_the_payments_consumer_reconciles(
    provider: str, type: str
):
    payload = json.loads((PAYLOADS / provider / f"{type}.json").read_text())
    update = normalise(provider, type, payload)

    assert order_of(inbound(provider, type, payload)) == (update.order_id if update else None)


def test_the_consumer_reads_where_the_order_id_is_from_the_provider_table():
    for provider, rules in RULES.items():
        for rule in rules.values():
            assert rule.fields.order_id == PROVIDERS[provider].order_id_at


@pytest.mark.parametrize("type", ["order.created", "order.amended"])
def test_the_storefronts_order_events_are_indexed_under_their_data_order_id(type: str):
    event = Event(
        id="o-1", source="/events/storefront", type=type, data=b'{"order_id": "1001", "amount": 1}'
    )

    assert order_of(event) == "1001"


def test_a_follow_up_is_indexed_under_its_subject():
    event = Event(id="f-1", source="/consumers/payments", type="payment.approved", data=b"{}",
                  subject="1001")  # fmt: skip

    assert order_of(event) == "1001"


def test_events_about_no_order_have_none():
    mercadopago = json.loads(
        (PAYLOADS / "mercadopago" / "webhook.payment.updated.json").read_text()
    )
    assert order_of(inbound("mercadopago", "payment.updated", mercadopago)) is None
    assert order_of(inbound("github", "push", {"ref": "main"})) is None
    assert order_of(inbound("stripe", "payment_intent.succeeded", {"data": {}})) is None
    not_json = Event(id="x", source="/webhooks/hotmart", type="hotmart.X", data=b"a=1")
    assert order_of(not_json) is None


OLD_EVENTS = """
CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL,
                              applied_at TEXT NOT NULL);
INSERT INTO schema_versions VALUES ('eventlog', 1, '2026-11-01T00:00:00.000Z');
CREATE TABLE events (position INTEGER PRIMARY KEY, id TEXT NOT NULL, source TEXT NOT NULL,
    type TEXT NOT NULL, time TEXT NOT NULL, subject TEXT, correlation_id TEXT,
    causation_id TEXT);
INSERT INTO events VALUES
    (0, 'order-1001', '/events/storefront', 'order.created', '2026-11-01T00:00:00.000Z',
     NULL, 'c', NULL),
    (1, 'f-1', '/consumers/payments', 'payment.approved', '2026-11-01T00:00:01.000Z',
     '1001', 'c', 'order-1001');
"""


async def test_an_index_an_older_release_made_finds_its_follow_ups_by_order(tmp_path: Path):
    path = tmp_path / "hookhub.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_EVENTS)
    event_log = SQLiteEventLog(path)
    try:
        await event_log.open()
        found = await event_log.find_events(EventQuery(order_id="1001"))
    finally:
        await event_log.close()

    # The inbound order.created indexed before keeps none: only a re-index reads its data.
    assert [e.id for e in found] == ["f-1"]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_versions").fetchone() == (len(MIGRATIONS),)


ORDER = Order(
    order_id="1001",
    status="approved",
    amount=4990,
    currency="BRL",
    provider="hotmart",
    payment_id="HP1",
    paid_amount=4990,
    paid_currency="BRL",
    refunded_amount=990,
)


async def test_the_sqlite_event_log_reads_the_order_the_payments_consumer_wrote(tmp_path: Path):
    path = tmp_path / "hookhub.db"
    with sqlite3.connect(path) as db:
        db.executescript(SQLiteOrders.schema)
        SQLiteOrders(None).write(db, ORDER)  # type: ignore[arg-type]
    event_log = SQLiteEventLog(path)
    try:
        state = await event_log.payment_state("1001")
        unknown = await event_log.payment_state("1002")
    finally:
        await event_log.close()

    assert state is not None and unknown is None
    assert (state.status, state.amount, state.paid_amount, state.refunded_amount) == (
        "approved", 4990, 4990, 990
    )  # fmt: skip
    assert (state.provider, state.payment_id, state.paid_currency) == ("hotmart", "HP1", "BRL")


async def test_the_mongodb_event_log_reads_the_order_the_payments_consumer_wrote():
    database = StandinClient()[f"t_{uuid.uuid4().hex}"]
    document = MongoOrders(database).document(ORDER)  # type: ignore[arg-type]
    database[ORDERS]._sync.insert_one({"_id": "1001", **document, "version": 1})
    event_log = MongoEventLog(database)  # type: ignore[arg-type]

    state = await event_log.payment_state("1001")

    assert state is not None and await event_log.payment_state("1002") is None
    assert (state.status, state.refunded_amount, state.provider) == ("approved", 990, "hotmart")


async def test_the_mongodb_event_log_finds_events_by_order_and_migrates_subjects():
    database = StandinClient()[f"t_{uuid.uuid4().hex}"]
    database["events"]._sync.insert_one(
        {"_id": 0, "id": "f-1", "source": "/consumers/payments", "type": "payment.approved",
         "time": A_TIME, "subject": "1001", "correlation_id": None, "causation_id": None}
    )  # fmt: skip
    event_log = MongoEventLog(database)  # type: ignore[arg-type]
    await event_log.open()
    await event_log.index([
        LoggedEvent(1, "o-1", "/events/storefront", "order.created", A_TIME, order_id="1001"),
        LoggedEvent(2, "o-2", "/events/storefront", "order.created", A_TIME, order_id="1002"),
    ])  # fmt: skip

    found = await event_log.find_events(EventQuery(order_id="1001"))

    assert [e.id for e in found] == ["o-1", "f-1"]
