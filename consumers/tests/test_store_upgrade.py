"""A store written by an older Hookhub opens and reads as the new one: each adapter's own upgrade.

SQLite adds the columns an older file lacks when it opens it (ALTER TABLE ... ADD COLUMN); MongoDB
reads the fields a document saved before lacks as their defaults, and writes them at its next save,
and names the collections holding markers for the event log at its first use.
"""

import sqlite3
import uuid
from pathlib import Path

from hookhub_consumers.payments.records import Order, orders
from hookhub_consumers.store import Change, Marker
from hookhub_consumers.store.mongo import MongoStore
from hookhub_consumers.store.sqlite import SQLiteStore
from hookhub_eventlog.store.consumer_tables import marker_key
from hookhub_eventlog.store.mongo import MongoEventLog

from tests.support.mongo_standin import StandinClient

# The orders table as the first release made it, with one order in it.
OLD_ORDERS = """
CREATE TABLE orders (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    amount     INTEGER,
    currency   TEXT,
    customer   TEXT,
    items      TEXT NOT NULL,
    provider   TEXT,
    payment_id TEXT,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
INSERT INTO orders VALUES ('ord-1', 'approved', 4990, 'BRL', NULL, '[]', 'stripe', 'pi_1', 2,
                           '2025-03-01T15:30:12.345+00:00');
"""
MARKER = Marker.of("payments", "/providers/stripe", "evt-refund")


async def test_an_older_sqlite_file_gets_the_new_columns_and_keeps_its_orders(tmp_path: Path):
    path = tmp_path / "hookhub.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_ORDERS)
    store = SQLiteStore(path)
    try:
        old = await orders(store).get("ord-1")
        assert (old.status, old.amount, old.version) == ("approved", 4990, 2)
        assert (old.paid_amount, old.paid_currency, old.refunded_amount) == (None, None, 0)

        old.refunded_amount = 4990
        assert await store.save(Change(MARKER, old)) is True
        assert (await orders(store).get("ord-1")).refunded_amount == 4990
        assert (await orders(store).by_payment("stripe", "pi_1")).order_id == "ord-1"
    finally:
        await store.close()


async def test_two_stores_opening_an_older_sqlite_file_at_once_both_work(tmp_path: Path):
    path = tmp_path / "hookhub.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_ORDERS)
    one, other = SQLiteStore(path), SQLiteStore(path)
    try:
        assert (await orders(one).get("ord-1")).refunded_amount == 0
        assert (await orders(other).get("ord-1")).refunded_amount == 0
    finally:
        await one.close()
        await other.close()


async def test_an_order_document_saved_before_reads_with_the_new_fields_empty():
    database = StandinClient()[f"hookhub_test_{uuid.uuid4().hex}"]
    database["orders"]._sync.insert_one(
        {
            "_id": "ord-1",
            "status": "approved",
            "amount": 4990,
            "currency": "BRL",
            "customer": None,
            "items": [],
            "provider": "stripe",
            "payment_id": "pi_1",
            "version": 2,
            "updated_at": Order("x").updated_at,
            "applied": [],
            "outbox": [],
        }
    )
    store = MongoStore(database)  # type: ignore[arg-type]  # the stand-in's duck type

    old = await orders(store).get("ord-1")
    assert (old.paid_amount, old.paid_currency, old.refunded_amount) == (None, None, 0)
    old.refunded_amount = 4990
    assert await store.save(Change(MARKER, old)) is True
    assert (await orders(store).get("ord-1")).refunded_amount == 4990


async def test_the_event_log_finds_the_markers_of_a_database_from_before_once_a_store_opened_it():
    database = StandinClient()[f"hookhub_test_{uuid.uuid4().hex}"]
    # Written before the store named its record collections for the event log ("aggregates").
    database["orders"]._sync.insert_one(
        {
            "_id": "ord-1",
            "status": "pending",
            "amount": 4990,
            "currency": "BRL",
            "customer": None,
            "items": [],
            "provider": None,
            "payment_id": None,
            "version": 1,
            "updated_at": Order("x").updated_at,
            "applied": [marker_key(MARKER.consumer, MARKER.event_key)],
            "outbox": [],
        }
    )
    event_log = MongoEventLog(database)  # type: ignore[arg-type]
    store = MongoStore(database)  # type: ignore[arg-type]

    await store.check_writable()  # any first use, as a consumer's start-up (its outbox relay)

    assert [c for c, _ in await event_log.processed_by("/providers/stripe", "evt-refund")] == [
        "payments"
    ]
