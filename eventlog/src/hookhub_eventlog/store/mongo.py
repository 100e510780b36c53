"""The event log in the MongoDB database the consumers' store uses too, on PyMongo's async API:
its own collections `events` (by archive position) and `steps`, and reads of the consumers'
markers and deliveries (`consumer_tables`)."""

import re
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from hookhub import topology
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from hookhub_eventlog.store.base import Attempt, EventLog, EventQuery, LoggedEvent, Step
from hookhub_eventlog.store.consumer_tables import (
    AGGREGATES,
    APPLIED,
    DELIVERIES,
    MARKERS,
    event_key,
)

DEFAULT_DATABASE = "hookhub"  # when the URL names none
EVENTS, STEPS = "events", "steps"


def _utc(at: datetime) -> datetime:
    # BSON keeps UTC milliseconds; a client without tz_aware hands them back naive.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _event_filters(query: EventQuery) -> dict[str, Any]:
    """The filter of an event query; a type pattern by its literal head only: the rest is
    matched word by word afterwards."""
    filters: dict[str, Any] = {
        name: value
        for name in ("id", "source", "correlation_id", "subject", "causation_id")
        if (value := getattr(query, name)) is not None
    }
    if query.type is not None:
        head = topology.literal_head(query.type)
        filters["type"] = head if head == query.type else {"$regex": f"^{re.escape(head)}"}
    period = {k: v for k, v in (("$gte", query.since), ("$lt", query.until)) if v}
    if period:
        filters["time"] = period
    return filters


class MongoEventLog(EventLog):
    """The event log in one MongoDB database: `MongoEventLog.from_url(url)`, or
    `MongoEventLog(database)` with a database object you built (then closing it leaves its
    client open)."""

    def __init__(self, database: AsyncDatabase, client: AsyncMongoClient | None = None):
        self._db = database
        self._client = client  # owned: closed by close()

    @classmethod
    def from_url(cls, url: str) -> "MongoEventLog":
        """`mongodb://host:port/dbname` (dbname defaults to "hookhub"); connects on first use."""
        client: AsyncMongoClient = AsyncMongoClient(url, tz_aware=True)
        return cls(client.get_default_database(DEFAULT_DATABASE), client)

    async def index(self, events: Sequence[LoggedEvent]) -> None:
        for event in events:  # one upsert each: indexing the same position twice is harmless
            document = {k: v for k, v in asdict(event).items() if k != "position"}
            await self._db[EVENTS].update_one(
                {"_id": event.position}, {"$setOnInsert": document}, upsert=True
            )

    async def indexed_up_to(self) -> int | None:
        found = await self._db[EVENTS].find({}, {"_id": 1}).sort([("_id", -1)]).to_list(1)
        return found[0]["_id"] if found else None

    async def find_events(self, query: EventQuery) -> list[LoggedEvent]:
        cursor = self._db[EVENTS].find(_event_filters(query)).sort([("_id", -1)])
        documents = await cursor.to_list(query.limit if query.matched_by_the_store else None)
        found = []
        for document in documents:
            if query.type is None or topology.binding_matches(query.type, document["type"]):
                position = document.pop("_id")
                found.append(
                    LoggedEvent(position=position, **{**document, "time": _utc(document["time"])})
                )
                if len(found) == query.limit:
                    break
        return found

    async def record(self, step: Step) -> None:
        await self._db[STEPS].insert_one(asdict(step))

    async def steps(self, event_id: str) -> list[Step]:
        cursor = self._db[STEPS].find({"event_id": event_id}, {"_id": 0})
        documents = await cursor.sort([("at", ASCENDING)]).to_list()
        return [Step(**{**d, "at": _utc(d["at"])}) for d in documents]

    async def processed_by(self, source: str, event_id: str) -> list[tuple[str, datetime]]:
        key = event_key(source, event_id)
        markers = self._db[MARKERS]
        found = [
            (document["consumer"], _utc(document["processed_at"]))
            for document in await markers.find({"event_key": key}).to_list()
        ]
        # A marker saved with a state lives in its aggregate: its time is the aggregate's.
        suffix = {"$regex": f"\\|{re.escape(key)}$"}
        named = await self._db[AGGREGATES].find({}, {"_id": 1}).to_list()
        for name in (document["_id"] for document in named):
            aggregates = self._db[name].find({APPLIED: suffix})
            for document in await aggregates.to_list():
                for marker in document[APPLIED]:
                    consumer, _, marked = marker.partition("|")
                    if marked == key:
                        found.append((consumer, _utc(document["updated_at"])))
        return sorted(found, key=lambda one: one[1])

    async def attempts(self, event_id: str) -> list[Attempt]:
        # `at` is kept to the millisecond, so attempts in one millisecond fall back to _id,
        # which grows with each insert from one process.
        cursor = self._db[DELIVERIES].find({"event_id": event_id})
        documents = await cursor.sort([("at", ASCENDING), ("_id", ASCENDING)]).to_list()
        return [
            Attempt(d["url"], d["delivered"], _utc(d["at"]), d["status_code"], d["error"])
            for d in documents
        ]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
