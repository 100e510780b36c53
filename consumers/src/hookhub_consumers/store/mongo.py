"""The MongoDB store, on PyMongo's async API.

Why no multi-document transaction: an aggregate keeps the markers of the events that changed it
inside its own document (`applied`, an array of marker keys), so a state change and its marker are
ONE conditional write: filter on _id, version and "marker not in applied"; $set the state, $inc
the version, $push the marker. MongoDB makes a single-document write atomic on every deployment
(a standalone server as in docker-compose, a replica set, the in-process stand-in of the tests),
while a transaction needs a replica set and would be a code path the tests cannot run here. An
order collects one marker per event that changed it (a handful), so the array stays small. The
events a change emits ride in the same write (`outbox`, entries tagged with the marker) and are
pulled once published.

Markers of effects outside the store (mark_processed) are documents of their own in `markers`, the
marker key as _id, whose unique index settles a race between two processes. is_processed looks in
both places, and every write checks the other place first, so a marker counts wherever it was
written. (Only two deliveries of one event handled at the same moment, one saving state and the
other marking alone, could both pass that check; the runtime skips an event already marked before
handling it, so that takes a redelivery racing the first delivery and deciding differently.)
"""

import asyncio
import re
from collections.abc import Sequence
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import Any

from hookhub_eventlog.store.consumer_tables import (
    AGGREGATES,
    APPLIED,
    DELIVERIES,
    MARKERS,
    marker_key,
)
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from hookhub_consumers.records import Delivery, Order, Ticket
from hookhub_consumers.store.base import ConcurrentUpdate, Marker, Sent, Store, Write, Written

DEFAULT_DATABASE = "hookhub"  # when the URL names none
# The aggregates, which hold their markers in APPLIED; the markers written alone are in MARKERS
# (the event log reads both, and the deliveries: `consumer_tables` is the shape they keep).
ORDERS, TICKETS = AGGREGATES
HEALTH = "health"  # one document, rewritten by each readiness check
OUTBOX = "outbox"  # the field of an aggregate that holds the events it emits until they are sent


def _key(marker: Marker) -> str:
    return marker_key(marker.consumer, marker.event_key)


def _utc(at: datetime) -> datetime:
    # BSON keeps UTC milliseconds; a client without tz_aware hands them back naive.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _order(document: dict[str, Any] | None) -> Order | None:
    if document is None:
        return None
    return Order(
        order_id=document["_id"],
        status=document["status"],
        amount=document["amount"],
        currency=document["currency"],
        customer=document["customer"],
        items=document["items"],
        provider=document["provider"],
        payment_id=document["payment_id"],
        # Fields added later: a document saved before has none of them until its next save.
        paid_amount=document.get("paid_amount"),
        paid_currency=document.get("paid_currency"),
        refunded_amount=document.get("refunded_amount", 0),
        version=document["version"],
        updated_at=_utc(document["updated_at"]),
    )


def _state(aggregate: Order | Ticket) -> dict[str, Any]:
    """The fields a save writes: all but the key and the version, which the store manages."""
    return {
        f.name: getattr(aggregate, f.name)
        for f in fields(aggregate)
        if f.name not in ("order_id", "version")
    }


class MongoStore(Store):
    """The store in one MongoDB database: `MongoStore.from_url(url)`, or `MongoStore(database)`
    with a database object you built (then closing the store leaves its client open)."""

    def __init__(self, database: AsyncDatabase, client: AsyncMongoClient | None = None):
        super().__init__()
        self._db = database
        self._client = client  # owned: closed by close()
        self._indexes_created = False

    @classmethod
    def from_url(cls, url: str) -> "MongoStore":
        """`mongodb://host:port/dbname` (dbname defaults to "hookhub"); connects on first use."""
        client: AsyncMongoClient = AsyncMongoClient(url, tz_aware=True)
        return cls(client.get_default_database(DEFAULT_DATABASE), client)

    async def _collection(self, name: str) -> AsyncCollection:
        if not self._indexes_created:
            # Idempotent, so two processes (or two coroutines) creating them at once is harmless.
            for aggregate in AGGREGATES:
                await self._db[aggregate].create_index(APPLIED, name="by_marker")
                await self._db[aggregate].create_index(f"{OUTBOX}.marker", name="by_outbox")
            await self._db[DELIVERIES].create_index(
                [("event_id", ASCENDING), ("at", ASCENDING), ("_id", ASCENDING)], name="by_event"
            )
            await self._db[ORDERS].create_index(
                [("provider", ASCENDING), ("payment_id", ASCENDING)], name="by_payment"
            )
            self._indexes_created = True
        return self._db[name]

    async def _marked(self, key: str) -> bool:
        for name in (MARKERS, *AGGREGATES):
            found_by = {"_id": key} if name == MARKERS else {APPLIED: key}
            if await (await self._collection(name)).find_one(found_by, {"_id": 1}):
                return True
        return False

    async def write(self, writes: Sequence[Write]) -> list[Written]:
        # Each write is one atomic single-document write of its own (see the module's
        # docstring), so a group is those writes in flight together on the client's pool.
        results = await asyncio.gather(*map(self._write_one, writes), return_exceptions=True)
        for result in results:
            if not isinstance(result, bool | Exception):  # CancelledError and the like
                raise result
        return list(results)  # type: ignore[arg-type]

    async def _write_one(self, write: Write) -> bool:
        if isinstance(write, Sent):
            await self._sent(write.marker)
            return True
        if write.state is None:
            return await self._mark(write.marker)
        name = ORDERS if isinstance(write.state, Order) else TICKETS
        state = write.state
        return await self._save(
            name, state.order_id, state.version, _state(state), write.marker, write.outbox
        )

    async def _save(
        self,
        name: str,
        order_id: str,
        version: int,
        state: dict,
        marker: Marker,
        outbox: Sequence[str],
    ) -> bool:
        """Write `state` at `version + 1` with the marker and the outbox in one atomic
        single-document write."""
        key = _key(marker)
        saved_at = datetime.now(UTC)
        entries = [{"marker": key, "event": event, "at": saved_at} for event in outbox]
        # A marker written alone is honoured too; one saved with state is found by the write below.
        if await (await self._collection(MARKERS)).find_one({"_id": key}, {"_id": 1}):
            return False
        collection = await self._collection(name)
        if version == 0:
            document = {"_id": order_id, **state, "version": 1, APPLIED: [key], OUTBOX: entries}
            try:
                await collection.insert_one(document)
                return True
            except DuplicateKeyError:
                pass
        else:
            result = await collection.update_one(
                {"_id": order_id, "version": version, APPLIED: {"$ne": key}},
                {
                    "$set": state,
                    "$inc": {"version": 1},
                    "$push": {APPLIED: key, OUTBOX: {"$each": entries}},
                },
            )
            if result.matched_count == 1:
                return True
        # Nothing written: either this event got there first (a redelivery), or another one did.
        if await collection.find_one({"_id": order_id, APPLIED: key}, {"_id": 1}):
            return False
        raise ConcurrentUpdate(
            f"{name[:-1]} '{order_id}' was saved by someone else since version {version}"
        )

    async def get_order(self, order_id: str) -> Order | None:
        return _order(await (await self._collection(ORDERS)).find_one({"_id": order_id}))

    async def order_of_payment(self, provider: str, payment_id: str) -> Order | None:
        found = {"provider": provider, "payment_id": payment_id}
        return _order(await (await self._collection(ORDERS)).find_one(found))

    async def get_ticket(self, order_id: str) -> Ticket | None:
        document = await (await self._collection(TICKETS)).find_one({"_id": order_id})
        if document is None:
            return None
        return Ticket(
            order_id=document["_id"],
            status=document["status"],
            version=document["version"],
            updated_at=_utc(document["updated_at"]),
        )

    async def pending(self, marker: Marker) -> list[str]:
        key = _key(marker)
        for name in AGGREGATES:
            document = await (await self._collection(name)).find_one(
                {f"{OUTBOX}.marker": key}, {OUTBOX: 1}
            )
            if document:
                return [e["event"] for e in document[OUTBOX] if e["marker"] == key]
        return []

    async def _sent(self, marker: Marker) -> None:
        key = _key(marker)
        for name in AGGREGATES:
            await (await self._collection(name)).update_many(
                {f"{OUTBOX}.marker": key}, {"$pull": {OUTBOX: {"marker": key}}}
            )

    async def unsent(self, consumer: str, saved_before: datetime) -> list[Marker]:
        prefix = _key(Marker(consumer, ""))

        def old(entry: dict) -> bool:  # entries saved before they carried a time count as old
            return entry["marker"].startswith(prefix) and (
                "at" not in entry or _utc(entry["at"]) < saved_before
            )

        query = {f"{OUTBOX}.marker": {"$regex": f"^{re.escape(prefix)}"}}
        keys: dict[str, None] = {}  # in the order found, without repeats
        for name in AGGREGATES:
            found = await (await self._collection(name)).find(query, {OUTBOX: 1}).to_list()
            for document in found:
                keys.update(dict.fromkeys(e["marker"] for e in document[OUTBOX] if old(e)))
        return [Marker(consumer, key.removeprefix(prefix)) for key in keys]

    async def record_delivery(self, delivery: Delivery) -> None:
        attempt = {"event_id": delivery.event_id, "url": delivery.url, "attempt": delivery.attempt}
        await (await self._collection(DELIVERIES)).update_one(
            attempt, {"$set": asdict(delivery)}, upsert=True
        )

    async def deliveries(self, event_id: str | None = None) -> list[Delivery]:
        collection = await self._collection(DELIVERIES)
        query = {} if event_id is None else {"event_id": event_id}
        # `at` is kept to the millisecond, so attempts in one millisecond fall back to _id, which
        # grows with each insert from one process (the notifications consumer records in order).
        cursor = collection.find(query, {"_id": 0}).sort([("at", ASCENDING), ("_id", ASCENDING)])
        return [
            Delivery(**{**document, "at": _utc(document["at"])})
            for document in await cursor.to_list()
        ]

    async def is_processed(self, marker: Marker) -> bool:
        return await self._marked(_key(marker))

    async def _mark(self, marker: Marker) -> bool:
        key = _key(marker)
        if await self._marked(key):
            return False
        markers = await self._collection(MARKERS)
        try:
            await markers.insert_one(
                {
                    "_id": key,
                    "consumer": marker.consumer,
                    "event_key": marker.event_key,
                    "processed_at": datetime.now(UTC),
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def check_writable(self) -> None:
        await (await self._collection(HEALTH)).update_one(
            {"_id": "readiness"}, {"$set": {"checked_at": datetime.now(UTC)}}, upsert=True
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
