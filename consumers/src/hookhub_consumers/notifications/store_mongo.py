"""The notifications consumer's delivery attempts in the MongoDB store: the `deliveries`
collection, which the event log reads too (`consumer_tables`)."""

from dataclasses import asdict

from hookhub_eventlog.store.consumer_tables import DELIVERIES
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase

from hookhub_consumers.notifications.records import Delivery
from hookhub_consumers.store.mongo import MongoRepository, utc

# One document per attempt: what `record` upserts by, unique, as SQLite's key makes it.
ATTEMPT = ("event_id", "source", "url", "attempt")
ONE_PER_ATTEMPT = "one_per_attempt"
# Since endpoints are named on their attempts (two may share a URL): the identity with the name.
ENDPOINT_ATTEMPT = (*ATTEMPT, "endpoint")
ONE_PER_ENDPOINT_ATTEMPT = "one_per_endpoint_attempt"
LOOKUP_MS = 5000  # a read's server-side budget


async def one_document_per_attempt(db: AsyncDatabase) -> None:
    """Migration 2: the unique index on an attempt's identity, once duplicates (two processes
    upserting one attempt at once, before it) are gone, keeping the first. Safe to repeat."""
    seen: set[tuple[object, ...]] = set()
    duplicates = []
    documents = db[DELIVERIES].find({}, {field: 1 for field in ATTEMPT})
    for document in await documents.sort([("_id", ASCENDING)]).to_list(None):
        identity = tuple(document.get(field) for field in ATTEMPT)
        if identity in seen:
            duplicates.append(document["_id"])
        seen.add(identity)
    if duplicates:
        await db[DELIVERIES].delete_many({"_id": {"$in": duplicates}})
    keys = [(field, ASCENDING) for field in ATTEMPT]
    await db[DELIVERIES].create_index(keys, name=ONE_PER_ATTEMPT, unique=True)


async def one_document_per_endpoint_attempt(db: AsyncDatabase) -> None:
    """Migration 3: an attempt's identity includes its endpoint's name (two endpoints at one URL
    each record their own attempts); an older document has none, which matches null."""
    keys = [(field, ASCENDING) for field in ENDPOINT_ATTEMPT]
    await db[DELIVERIES].create_index(keys, name=ONE_PER_ENDPOINT_ATTEMPT, unique=True)
    if ONE_PER_ATTEMPT in await db[DELIVERIES].index_information():
        await db[DELIVERIES].drop_index(ONE_PER_ATTEMPT)


class MongoDeliveries(MongoRepository):
    # No `record`: an attempt is written outside a marker, by `record` below.
    collection = DELIVERIES
    migrations = (one_document_per_attempt, one_document_per_endpoint_attempt)
    queries = {
        ("_id",): "_id_",  # migration 2's removal of duplicates
        ("event_id",): "by_event",
        ("event_id", "source"): "by_event",
        ("attempt", "endpoint", "event_id", "source", "url"): ONE_PER_ENDPOINT_ATTEMPT,
        (): "",  # every attempt: `attempts()` without an event, for tests and tools only
    }

    async def create_indexes(self) -> None:
        await self.db[DELIVERIES].create_index(
            [("event_id", ASCENDING), ("at", ASCENDING), ("_id", ASCENDING)], name="by_event"
        )

    async def record(self, delivery: Delivery) -> None:
        attempt = {
            "event_id": delivery.event_id,
            "source": delivery.source,
            "url": delivery.url,
            "attempt": delivery.attempt,
            "endpoint": delivery.endpoint,
        }
        await self.db[DELIVERIES].update_one(attempt, {"$set": asdict(delivery)}, upsert=True)

    async def attempts(
        self, event_id: str | None = None, source: str | None = None
    ) -> list[Delivery]:
        query: dict[str, object] = {} if event_id is None else {"event_id": event_id}
        if event_id is not None and source is not None:
            # A document an older release wrote has no source: it is no (source, id)'s.
            query["source"] = source
        # `at` is kept to the millisecond, so attempts in one millisecond fall back to _id, which
        # grows with each insert from one process (the notifications consumer records in order).
        cursor = self.db[DELIVERIES].find(query, {"_id": 0}, max_time_ms=LOOKUP_MS)
        documents = await cursor.sort([("at", ASCENDING), ("_id", ASCENDING)]).to_list()
        return [Delivery(**{**document, "at": utc(document["at"])}) for document in documents]
