"""The MongoDB store's migration 2: markers an older release kept only in a record's document
(`applied`) are copied into `markers`, where the unique _id makes them count store-wide."""

import uuid
from datetime import UTC, datetime
from typing import Any

from hookhub_consumers.notifications.store_mongo import MongoDeliveries
from hookhub_consumers.payments.records import Order
from hookhub_consumers.payments.store_mongo import MongoOrders
from hookhub_consumers.production.records import Ticket
from hookhub_consumers.production.store_mongo import MongoTickets
from hookhub_consumers.store import Change, Marker
from hookhub_consumers.store.mongo import MongoStore, markers_store_wide
from hookhub_eventlog.store.consumer_tables import marker_key

from tests.support.mongo_standin import StandinClient

MARKER = Marker.of("payments", "/providers/stripe", "evt-1")
SAVED_AT = datetime(2025, 3, 1, 15, 30, 12, 345000, tzinfo=UTC)
REPOSITORIES = {"payments": MongoOrders, "production": MongoTickets}


def an_older_releases_database() -> Any:
    database = StandinClient()[f"hookhub_test_{uuid.uuid4().hex}"]
    database["schema_versions"]._sync.insert_one({"_id": "store", "version": 1})
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
            "updated_at": SAVED_AT,
            "applied": [marker_key(MARKER.consumer, MARKER.event_key)],
            "outbox": [],
        }
    )
    return database


async def test_a_marker_an_older_release_saved_with_a_record_counts_store_wide():
    database = an_older_releases_database()
    store = MongoStore(database, repositories=REPOSITORIES)

    assert await store.is_processed(MARKER) is True
    assert await store.save(Change(MARKER, Ticket("ord-1"))) is False
    assert await store.mark_processed(MARKER) is False
    copied = database["markers"]._sync.find_one({"_id": marker_key("payments", MARKER.event_key)})
    assert (copied["event_id"], copied["processed_at"]) == ("evt-1", SAVED_AT)


async def test_migration_2_repeated_changes_nothing():
    database = an_older_releases_database()
    await markers_store_wide(database, ["orders"])
    before = list(database["markers"]._sync.find())

    await markers_store_wide(database, ["orders"])

    assert list(database["markers"]._sync.find()) == before


async def test_a_new_save_keeps_its_marker_in_markers_and_not_in_the_record():
    database = StandinClient()[f"hookhub_test_{uuid.uuid4().hex}"]
    store = MongoStore(database, repositories=REPOSITORIES)

    assert await store.save(Change(MARKER, Order("ord-1"))) is True

    assert database["markers"]._sync.count_documents({}) == 1
    assert "applied" not in database["orders"]._sync.find_one({"_id": "ord-1"})


async def test_duplicate_delivery_attempts_an_older_release_wrote_are_kept_once_and_made_unique():
    database = StandinClient()[f"hookhub_test_{uuid.uuid4().hex}"]
    attempt = {"event_id": "evt-1", "source": "/s", "url": "https://x.example/h", "attempt": 1}
    database["schema_versions"]._sync.insert_one({"_id": "notifications", "version": 1})
    database["deliveries"]._sync.insert_one({**attempt, "delivered": False, "at": SAVED_AT})
    database["deliveries"]._sync.insert_one({**attempt, "delivered": True, "at": SAVED_AT})

    await MongoStore(database, repositories={"notifications": MongoDeliveries}).open()

    kept = list(database["deliveries"]._sync.find())
    assert [d["delivered"] for d in kept] == [False]  # the first one
    indexes = database["deliveries"]._sync.index_information()
    # Migration 3: an attempt's identity names its endpoint (two may share a URL).
    assert indexes["one_per_endpoint_attempt"]["unique"] is True
    assert "one_per_attempt" not in indexes
