"""The MongoDB store, on PyMongo's async API.

Why no multi-document transaction: a record keeps the markers of the events that changed it
inside its own document (`applied`, an array of marker keys), so a state change and its marker are
ONE conditional write: filter on _id, version and "marker not in applied"; $set the state, $inc
the version, $push the marker. MongoDB makes a single-document write atomic on every deployment
(a standalone server as in docker-compose, a replica set, the in-process stand-in of the tests),
while a transaction needs a replica set and would be a code path the tests cannot run here. An
order collects one marker per event that changed it (a handful), so the array stays small. The
events a change emits ride in the same write (`outbox`, entries tagged with the marker) and are
pulled once published. Which collection, which _id and which fields: the record's repository
(`MongoRepository`) says; the store adds the version, the markers and the outbox.

Markers of effects outside the store (mark_processed) are documents of their own in `markers`, the
marker key as _id, whose unique index settles a race between two processes. is_processed looks in
both places, and every write checks the other place first, so a marker counts wherever it was
written. (Only two deliveries of one event handled at the same moment, one saving state and the
other marking alone, could both pass that check; the runtime skips an event already marked before
handling it, so that takes a redelivery racing the first delivery and deciding differently.)
"""

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, ClassVar

from hookhub import schema
from hookhub_eventlog.store.consumer_tables import AGGREGATES, APPLIED, MARKERS, marker_key
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from hookhub_consumers.store.base import (
    ConcurrentUpdate,
    Marker,
    Record,
    Repository,
    Sent,
    Store,
    Write,
    Written,
    load_repositories,
)

DEFAULT_DATABASE = "hookhub"  # when the URL names none
HEALTH = "health"  # one document, rewritten by each readiness check
OUTBOX = "outbox"  # the field of a record that holds the events it emits until they are sent
COMPONENT = "store"  # the runtime's collections, in schema_versions
# The runtime's numbered migrations (`hookhub.schema`), each called with the database and safe to
# repeat: 1, the baseline, is the collections and indexes as they were when versions began to be
# recorded (#27). Append; never edit or reorder one that shipped.
MIGRATIONS: tuple[Any, ...] = (schema.baseline,)


def utc(at: datetime) -> datetime:
    """A time read back from MongoDB, tz-aware in UTC (BSON keeps UTC milliseconds; a client
    without tz_aware hands them back naive)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class MongoRepository(Repository):
    """A consumer's records in the store's database: its `collection`, the record field that is
    a document's _id (`key`), its indexes (`create_indexes`), and its reads, on `self.db`."""

    collection: ClassVar[str]
    key: ClassVar[str] = ""
    # Numbered migrations after the baseline (version 1): coroutine functions of the database,
    # safe to repeat; version 2 first. Append; never edit or reorder one that shipped.
    migrations: ClassVar[Sequence[Any]] = ()

    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db

    async def create_indexes(self) -> None:
        """Its own indexes (idempotent); the store makes those of the markers and the outbox."""

    def document(self, state: Record) -> dict[str, Any]:
        """The fields a save writes: all the record's but its key and version, as they are."""
        kept = (f.name for f in fields(state) if f.name not in (self.key, "version"))
        return {name: getattr(state, name) for name in kept}


def _key(marker: Marker) -> str:
    return marker_key(marker.consumer, marker.event_key)


class MongoStore(Store):
    """The store in one MongoDB database: `MongoStore.from_url(url)`, or `MongoStore(database)`
    with a database object you built (then closing the store leaves its client open).
    `repositories`: consumer name → its repository class (every installed consumer's if None)."""

    def __init__(
        self,
        database: AsyncDatabase,
        client: AsyncMongoClient | None = None,
        *,
        repositories: Mapping[str, type[MongoRepository]] | None = None,
    ):
        classes = load_repositories("mongodb") if repositories is None else repositories
        for name, cls in classes.items():
            if not (isinstance(cls, type) and issubclass(cls, MongoRepository)):
                raise TypeError(f"{name}'s mongodb repository {cls!r} is not a MongoRepository")
        super().__init__({name: cls(database) for name, cls in classes.items()})
        self._db = database
        self._client = client  # owned: closed by close()
        self._indexes_created = False
        # The collections whose documents carry markers: those of the records saved with them.
        self._aggregates = [r.collection for r in self._by_record.values()]

    @classmethod
    def from_url(
        cls, url: str, repositories: Mapping[str, type[MongoRepository]] | None = None
    ) -> "MongoStore":
        """`mongodb://host:port/dbname` (dbname defaults to "hookhub"); connects on first use."""
        client: AsyncMongoClient = AsyncMongoClient(url, tz_aware=True)
        database = client.get_default_database(DEFAULT_DATABASE)
        return cls(database, client, repositories=repositories)

    async def open(self) -> None:
        await self._collection(MARKERS)

    async def _collection(self, name: str) -> AsyncCollection:
        if not self._indexes_created:
            # First: a database a newer release made is refused before anything is created.
            await schema.migrate_documents(
                self._db,
                {
                    COMPONENT: MIGRATIONS,
                    **{
                        consumer: (schema.baseline, *type(repository).migrations)
                        for consumer, repository in self._repositories.items()
                    },
                },
            )
            # Idempotent, so two processes (or two coroutines) creating them at once is harmless.
            for aggregate in self._aggregates:
                await self._db[aggregate].create_index(APPLIED, name="by_marker")
                await self._db[aggregate].create_index(f"{OUTBOX}.marker", name="by_outbox")
                # Named for the event log, which finds markers in the collections named here.
                await self._db[AGGREGATES].update_one(
                    {"_id": aggregate}, {"$set": {"markers_in": APPLIED}}, upsert=True
                )
            for repository in self._repositories.values():
                await repository.create_indexes()
            self._indexes_created = True
        return self._db[name]

    async def _marked(self, key: str) -> bool:
        for name in (MARKERS, *self._aggregates):
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
        repository: MongoRepository = self._repository_of(write.state)
        state = write.state
        return await self._save(
            repository.collection,
            getattr(state, repository.key),
            state.version,
            repository.document(state),
            write.marker,
            write.outbox,
        )

    async def _save(
        self,
        name: str,
        record_id: str,
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
            document = {"_id": record_id, **state, "version": 1, APPLIED: [key], OUTBOX: entries}
            try:
                await collection.insert_one(document)
                return True
            except DuplicateKeyError:
                pass
        else:
            result = await collection.update_one(
                {"_id": record_id, "version": version, APPLIED: {"$ne": key}},
                {
                    "$set": state,
                    "$inc": {"version": 1},
                    "$push": {APPLIED: key, OUTBOX: {"$each": entries}},
                },
            )
            if result.matched_count == 1:
                return True
        # Nothing written: either this event got there first (a redelivery), or another one did.
        if await collection.find_one({"_id": record_id, APPLIED: key}, {"_id": 1}):
            return False
        raise ConcurrentUpdate(
            f"{name.removesuffix('s')} '{record_id}' was saved by someone else since version "
            f"{version}"
        )

    async def pending(self, marker: Marker) -> list[str]:
        key = _key(marker)
        for name in self._aggregates:
            document = await (await self._collection(name)).find_one(
                {f"{OUTBOX}.marker": key}, {OUTBOX: 1}
            )
            if document:
                return [e["event"] for e in document[OUTBOX] if e["marker"] == key]
        return []

    async def _sent(self, marker: Marker) -> None:
        key = _key(marker)
        for name in self._aggregates:
            await (await self._collection(name)).update_many(
                {f"{OUTBOX}.marker": key}, {"$pull": {OUTBOX: {"marker": key}}}
            )

    async def unsent(self, consumer: str, saved_before: datetime) -> list[Marker]:
        prefix = _key(Marker(consumer, ""))

        def old(entry: dict) -> bool:  # entries saved before they carried a time count as old
            return entry["marker"].startswith(prefix) and (
                "at" not in entry or utc(entry["at"]) < saved_before
            )

        query = {f"{OUTBOX}.marker": {"$regex": f"^{re.escape(prefix)}"}}
        keys: dict[str, None] = {}  # in the order found, without repeats
        for name in self._aggregates:
            found = await (await self._collection(name)).find(query, {OUTBOX: 1}).to_list()
            for document in found:
                keys.update(dict.fromkeys(e["marker"] for e in document[OUTBOX] if old(e)))
        return [Marker(consumer, key.removeprefix(prefix)) for key in keys]

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
