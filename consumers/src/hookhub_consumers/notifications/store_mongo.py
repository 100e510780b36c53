"""The notifications consumer's delivery attempts in the MongoDB store: the `deliveries`
collection, which the event log reads too (`consumer_tables`)."""

from dataclasses import asdict

from hookhub_eventlog.store.consumer_tables import DELIVERIES
from pymongo import ASCENDING

from hookhub_consumers.notifications.records import Delivery
from hookhub_consumers.store.mongo import MongoRepository, utc


class MongoDeliveries(MongoRepository):
    # No `record`: an attempt is written outside a marker, by `record` below.
    collection = DELIVERIES

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
        cursor = self.db[DELIVERIES].find(query, {"_id": 0})
        documents = await cursor.sort([("at", ASCENDING), ("_id", ASCENDING)]).to_list()
        return [Delivery(**{**document, "at": utc(document["at"])}) for document in documents]
