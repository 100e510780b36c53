"""The MongoDB store, on PyMongo's async API.

Every processed-marker is a document of `markers`, the marker key as _id, so the unique _id
index makes a marker unique across the whole store, as SQLite's primary key does: one event
changes one record of one consumer, once. A state change and its marker are one transaction:
insert the marker (a duplicate: a redelivery, nothing written), then the conditional write of
the record (filter on _id and version; $set the state, $inc the version, $push the events it
emits to `outbox`, entries tagged with the marker, pulled once published). A marker written
alone (mark_processed) is the insert alone. Transactions need a replica set: compose runs a
one-member one, the chart a three-member one; a standalone server refuses them. Which
collection, which _id and which fields: the record's repository (`MongoRepository`) says; the
store adds the version and the outbox.

Releases before store migration 2 kept a marker saved with a state only in its record's
document (the array `applied`); the migration copies those into `markers`, and is safe to repeat.

A read that decides an ack (`is_processed`) reads majority-committed data, so a marker a failover
later rolls back cannot make a redelivery look done; the writes are majority-acknowledged.
"""

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any, ClassVar

from hookhub import schema
from hookhub_eventlog.store.consumer_tables import AGGREGATES, APPLIED, MARKERS, marker_key
from hookhub_eventlog.store.mongo import connect
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

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
MAJORITY_READ = ReadConcern("majority")
MAJORITY_WRITE = WriteConcern("majority")
MARKERS_BY_EVENT_KEY, MARKERS_BY_EVENT_ID = "markers_by_event_key", "markers_by_event_id"
BY_OUTBOX = "by_outbox"
SCAN = ""  # in QUERY_INDEXES: no index, on purpose (a tiny collection, or a one-time migration)


def marker_document(key: str, consumer: str, event_key: str, at: datetime) -> dict[str, Any]:
    """A marker in `markers` (`consumer_tables`): its event id apart, for the event log's index."""
    event_id = event_key.partition("#")[2]
    return {
        "_id": key,
        "consumer": consumer,
        "event_key": event_key,
        "event_id": event_id,
        "processed_at": at,
    }


async def markers_store_wide(db: AsyncDatabase, aggregates: Sequence[str] = ()) -> None:
    """Store migration 2: every marker in `markers`, those an older release kept only in a
    record's `applied` copied there (with the record's `updated_at` as their time), and the
    event log's indexes on them. Upserts only: safe to repeat."""
    markers = db[MARKERS]
    await markers.create_index("event_key", name=MARKERS_BY_EVENT_KEY)
    await markers.create_index("event_id", name=MARKERS_BY_EVENT_ID)
    named = [d["_id"] for d in await db[AGGREGATES].find({}, {"_id": 1}).to_list(None)]
    for name in dict.fromkeys([*aggregates, *named]):
        found = db[name].find(
            {APPLIED: {"$exists": True, "$ne": []}}, {APPLIED: 1, "updated_at": 1}
        )
        for document in await found.to_list(None):
            for key in document[APPLIED]:
                consumer, _, event_key = key.partition("|")
                at = document.get("updated_at") or datetime.now(UTC)
                await markers.update_one(
                    {"_id": key},
                    {"$setOnInsert": marker_document(key, consumer, event_key, at)},
                    upsert=True,
                )
    for document in await markers.find({"event_id": {"$exists": False}}).to_list(None):
        event_id = document["event_key"].partition("#")[2]
        await markers.update_one({"_id": document["_id"]}, {"$set": {"event_id": event_id}})


async def repository_baseline(db: AsyncDatabase, repository: "MongoRepository") -> None:
    """Migration 1 of a consumer's component: its repository's indexes, and, for a collection
    of records saved with markers, the outbox's index and its name in `aggregates` (made on
    first use before versions were recorded; safe to repeat)."""
    await repository.create_indexes()
    if keeps_records(type(repository)):
        name = repository.collection
        await db[name].create_index(f"{OUTBOX}.marker", name=BY_OUTBOX)
        # `markers_in` for an older release's event log, which looked for markers there.
        named = {"$set": {"markers_in": APPLIED}}
        await db[AGGREGATES].update_one({"_id": name}, named, upsert=True)


# Every query the runtime's part of the store makes, by collection: the fields it filters on →
# the index that serves it (`_id_`: MongoDB's own). RECORD_QUERIES apply to every collection of
# records saved with markers, besides its repository's own `queries`. Checked against what the
# store does by test_mongo_query_plans.py (and `explain()` on a real server).
QUERY_INDEXES: dict[str, dict[tuple[str, ...], str]] = {
    MARKERS: {
        ("_id",): "_id_",
        ("event_id",): MARKERS_BY_EVENT_ID,  # migration 2's backfill of older markers
    },
    HEALTH: {("_id",): "_id_"},
    schema.TABLE: {(): SCAN, ("_id",): "_id_"},  # one document per component
    AGGREGATES: {(): SCAN, ("_id",): "_id_"},  # one document per record collection
}
RECORD_QUERIES: dict[tuple[str, ...], str] = {
    ("_id",): "_id_",
    (f"{OUTBOX}.marker",): BY_OUTBOX,
    (APPLIED,): SCAN,  # migration 2, once
}
# The runtime's numbered migrations (`hookhub.schema`), each called with the database and safe to
# repeat: 1, the baseline, is the collections and indexes as they were when versions began to be
# recorded (#27); 2 puts every marker in `markers`. Append; never edit or reorder one that
# shipped. (The store binds 2 to the collections of its records: see `_migrations`.)
MIGRATIONS: tuple[Any, ...] = (schema.baseline, markers_store_wide)


def utc(at: datetime) -> datetime:
    """A time read back from MongoDB, tz-aware in UTC (BSON keeps UTC milliseconds; a client
    without tz_aware hands them back naive)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class MongoRepository(Repository):
    """A consumer's records in the store's database: its `collection`, the record field that is
    a document's _id (`key`), its indexes (`create_indexes`), and its reads, on `self.db`."""

    collection: ClassVar[str]
    key: ClassVar[str] = ""
    # Numbered migrations after the baseline (version 1, `create_indexes`): coroutine functions
    # of the database, safe to repeat; version 2 first. Append; never edit or reorder one that
    # shipped. An index is made by a migration: a changed one gets a new name in a new one.
    migrations: ClassVar[Sequence[Any]] = ()
    # Every query its reads make on `collection`: the fields filtered on (sorted) → the index
    # that serves it ("_id_" MongoDB's own); checked by test_mongo_query_plans.py.
    queries: ClassVar[Mapping[tuple[str, ...], str]] = {("_id",): "_id_"}

    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db

    async def create_indexes(self) -> None:
        """Its own indexes (idempotent), made by its migration 1; the store makes those of the
        markers and the outbox."""

    def document(self, state: Record) -> dict[str, Any]:
        """The fields a save writes: all the record's but its key and version, as they are."""
        kept = (f.name for f in fields(state) if f.name not in (self.key, "version"))
        return {name: getattr(state, name) for name in kept}


def keeps_records(repository: type[Repository]) -> bool:
    """Whether the store saves records through this repository class, with markers and an
    outbox. (A `record` method, as the notifications' repository has, is no record type.)"""
    return isinstance(repository.record, type)


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
        self._migrated = False
        # The collections of records saved with markers (whose documents carry an outbox).
        self._aggregates = [
            r.collection for r in self._repositories.values() if keeps_records(type(r))
        ]

    @classmethod
    def from_url(
        cls, url: str, repositories: Mapping[str, type[MongoRepository]] | None = None
    ) -> "MongoStore":
        """`mongodb://host:port/dbname` (dbname defaults to "hookhub"); connects on first use."""
        client = connect(url)  # with the timeouts from the settings
        database = client.get_default_database(DEFAULT_DATABASE)
        return cls(database, client, repositories=repositories)

    async def open(self) -> None:
        await self._collection(MARKERS)

    async def _collection(self, name: str) -> AsyncCollection:
        if not self._migrated:
            # Once per process, at open: the schema_versions read, and the migrations (indexes
            # included) this database lacks. A database a newer release made is refused first.
            await schema.migrate_documents(self._db, self._migrations())
            self._migrated = True
        return self._db[name]

    def _migrations(self) -> dict[str, Sequence[Any]]:
        """Each component's numbered migrations, bound to this store's repositories."""
        aggregates = tuple(self._aggregates)

        async def store_wide(db: AsyncDatabase) -> None:
            await markers_store_wide(db, aggregates)

        found: dict[str, Sequence[Any]] = {
            COMPONENT: (*MIGRATIONS[:1], store_wide, *MIGRATIONS[2:])
        }
        for consumer, repository in self._repositories.items():

            async def baseline(db: AsyncDatabase, repository: MongoRepository = repository) -> None:
                await repository_baseline(db, repository)

            found[consumer] = (baseline, *type(repository).migrations)
        return found

    async def _marked(self, key: str) -> bool:
        markers = (await self._collection(MARKERS)).with_options(read_concern=MAJORITY_READ)
        return await markers.find_one({"_id": key}, {"_id": 1}) is not None

    async def write(self, writes: Sequence[Write]) -> list[Written]:
        # Each write is atomic on its own (a transaction, or one insert: see the module's
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
        """Write the marker, then `state` at `version + 1` with the outbox, in one transaction:
        False if the marker exists (nothing written), ConcurrentUpdate if the version moved."""
        key = _key(marker)
        saved_at = datetime.now(UTC)
        entries = [{"marker": key, "event": event, "at": saved_at} for event in outbox]
        markers = await self._collection(MARKERS)
        collection = await self._collection(name)

        async def both(session: Any) -> None:
            document = marker_document(key, marker.consumer, marker.event_key, saved_at)
            await markers.insert_one(document, session=session)  # DuplicateKeyError: done
            if version == 0:
                created = {"_id": record_id, **state, "version": 1, OUTBOX: entries}
                try:
                    await collection.insert_one(created, session=session)
                    return
                except DuplicateKeyError:
                    pass
            else:
                result = await collection.update_one(
                    {"_id": record_id, "version": version},
                    {"$set": state, "$inc": {"version": 1}, "$push": {OUTBOX: {"$each": entries}}},
                    session=session,
                )
                if result.matched_count == 1:
                    return
            raise ConcurrentUpdate(  # the transaction is aborted: the marker goes too
                f"{name.removesuffix('s')} '{record_id}' was saved by someone else since "
                f"version {version}"
            )

        try:
            async with self._db.client.start_session() as session:
                await session.with_transaction(both, write_concern=MAJORITY_WRITE)
        except DuplicateKeyError:
            return False
        return True

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
        # A marker is unique store-wide (`markers`), so its outbox is in one record: update_one,
        # which retryable writes cover (update_many is not retried after a failover).
        for name in self._aggregates:
            await (await self._collection(name)).update_one(
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
        markers = (await self._collection(MARKERS)).with_options(write_concern=MAJORITY_WRITE)
        document = marker_document(key, marker.consumer, marker.event_key, datetime.now(UTC))
        try:
            await markers.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def check_writable(self) -> None:
        await (await self._collection(HEALTH)).update_one(
            {"_id": "readiness"}, {"$set": {"checked_at": datetime.now(UTC)}}, upsert=True
        )

    async def close(self) -> None:
        await self.flush()
        if self._client is not None:
            await self._client.close()
