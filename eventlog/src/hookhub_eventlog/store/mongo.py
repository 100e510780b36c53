"""The event log in the MongoDB database the consumers' store uses too, on PyMongo's async API:
its own collections `events` (by archive position) and `steps`, and reads of the consumers'
markers and deliveries (`consumer_tables`).

As in SQLite, every read has a limit, an index that serves its filter (made on first use), and a
time budget: `maxTimeMS`, and `SEARCH_BUDGET_S` over a search's pages.
"""

import re
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hookhub import schema, topology
from hookhub.addresses import redact
from hookhub.providers import WEBHOOK_SOURCE_PREFIX
from hookhub.settings import Settings
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ExecutionTimeout

from hookhub_eventlog.people import (
    Forgotten,
    Link,
    is_person_id,
    links_of,
    people,
    survivors,
)
from hookhub_eventlog.store.base import (
    COMPONENT,
    MAX_JOURNEY_ROWS,
    MAX_PERSON_EVENTS,
    SEARCH_BUDGET_S,
    Attempt,
    BadPattern,
    EventLog,
    EventQuery,
    LoggedEvent,
    PaymentState,
    Person,
    SearchTooSlow,
    Step,
    pattern_problem,
)
from hookhub_eventlog.store.consumer_tables import (
    DELIVERIES,
    MARKERS,
    ORDERS,
    PAYMENT_FIELDS,
    event_key,
)

DEFAULT_DATABASE = "hookhub"  # when the URL names none
EVENTS, STEPS = "events", "steps"
# People (`hookhub_eventlog.people`): each identifier's person, the links, the tombstones.
IDENTIFIERS, LINKS, FORGOTTEN = "person_identifiers", "person_links", "forgotten"
# Where a move of the index below a new archive's positions (`supersede`) keeps its progress.
MOVING = "events_superseding"
# A pattern search reads newest first in pages of this many, matching each word by word.
PAGE = 1000
BUDGET_MS = int(SEARCH_BUDGET_S * 1000)
# Each filter's index, served newest first (`_id` is the archive position). An index is made by a
# migration, once per database: a changed one gets a new name in a new migration (which drops
# the old), never a changed definition under an old name.
EVENT_INDEXES = {
    "by_id": [("id", ASCENDING)],
    "by_type": [("type", ASCENDING), ("_id", DESCENDING)],
    "by_source": [("source", ASCENDING), ("_id", DESCENDING)],
    "by_correlation": [("correlation_id", ASCENDING), ("_id", DESCENDING)],
    "by_subject": [("subject", ASCENDING), ("_id", DESCENDING)],
    "by_order": [("order_id", ASCENDING), ("_id", DESCENDING)],
    "by_cause": [("causation_id", ASCENDING)],
    "by_time": [("time", ASCENDING)],
}
# An event's steps in the order recorded (`_id` grows with each insert); until migration 2 the
# index was unnamed and had no `_id`.
STEPS_IN_ORDER = [("event_id", ASCENDING), ("at", ASCENDING), ("_id", ASCENDING)]
OLD_STEPS_INDEX = "event_id_1_at_1"
# Every query this adapter makes, by collection: the fields it filters (or sorts) on → the index
# that serves it. `tests/.../test_mongo_query_plans.py` runs the adapters and checks each query
# it sees against this table, and on a real server against `explain()`.
QUERY_INDEXES: dict[str, dict[tuple[str, ...], str]] = {
    EVENTS: {
        ("_id",): "_id_",
        ("id",): "by_id",
        ("type",): "by_type",
        ("source",): "by_source",
        ("correlation_id",): "by_correlation",
        ("subject",): "by_subject",
        ("order_id",): "by_order",
        ("identifiers",): "by_identifier",
        ("causation_id",): "by_cause",
        ("time",): "by_time",
    },
    STEPS: {("event_id",): "steps_in_order"},
    IDENTIFIERS: {("_id",): "_id_", ("person_id",): "by_person"},
    LINKS: {("_id",): "_id_", ("a",): "by_a", ("b",): "by_b", ("event_id",): "by_event"},
    FORGOTTEN: {("_id",): "_id_", ("event_id",): "by_event"},
    MARKERS: {("event_key",): "markers_by_event_key", ("event_id",): "markers_by_event_id"},
    DELIVERIES: {("event_id",): "by_event"},
    MOVING: {("_id",): "_id_"},
}


async def create_event_indexes(db: AsyncDatabase) -> None:
    """Migration 1 (the baseline): the events' and the steps' indexes (made on first use before
    versions were recorded; safe to repeat)."""
    for name, keys in EVENT_INDEXES.items():
        await db[EVENTS].create_index(keys, name=name)
    await db[STEPS].create_index([("event_id", ASCENDING), ("at", ASCENDING)])


async def order_steps(db: AsyncDatabase) -> None:
    """Migration 2: steps in one millisecond in the order recorded, under a named index."""
    await db[STEPS].create_index(STEPS_IN_ORDER, name="steps_in_order")
    if OLD_STEPS_INDEX in await db[STEPS].index_information():
        await db[STEPS].drop_index(OLD_STEPS_INDEX)


# The event log's numbered migrations (`hookhub.schema`), each called with the database and safe
# to repeat: 1, the baseline, is the collections and indexes as they were when versions began to
# be recorded (#27). Append; never edit or reorder one that shipped.
async def index_orders(db: AsyncDatabase) -> None:
    """Migration 3: events indexed before `order_id` was kept get their subject (a follow-up's
    order), and the order's index. Safe to repeat."""
    await db[EVENTS].update_many(
        {"order_id": {"$exists": False}, "subject": {"$ne": None}},
        [{"$set": {"order_id": "$subject"}}],
    )
    await db[EVENTS].create_index(EVENT_INDEXES["by_order"], name="by_order")


async def index_people(db: AsyncDatabase) -> None:
    """Migration 4: people. An event's identifiers are in its document (`identifiers`, a
    multikey index: a person's events), each identifier's person in IDENTIFIERS (by person),
    the links in LINKS (by either end, by event), tombstones in FORGOTTEN. Safe to repeat."""
    await db[EVENTS].create_index(
        [("identifiers", ASCENDING), ("_id", DESCENDING)], name="by_identifier"
    )
    await db[IDENTIFIERS].create_index([("person_id", ASCENDING)], name="by_person")
    for end in ("a", "b", "event_id"):
        await db[LINKS].create_index([(end, ASCENDING)], name=f"by_{end}".replace("_id", ""))
    await db[FORGOTTEN].create_index([("event_id", ASCENDING)], name="by_event")


MIGRATIONS: tuple[Any, ...] = (create_event_indexes, order_steps, index_orders, index_people)


def connect(url: str, settings: Settings | None = None) -> AsyncMongoClient:
    """A client of the store's MongoDB, with its timeouts from the settings
    (HOOKHUB_STORE_SERVER_SELECTION_TIMEOUT_S, HOOKHUB_STORE_SOCKET_TIMEOUT_S) unless the URL
    names them; it connects on first use. (Not timeoutMS: it would replace each query's own
    maxTimeMS budget with what is left of it.)"""
    settings = settings or Settings()
    options = {
        "serverSelectionTimeoutMS": int(settings.store_server_selection_timeout_s * 1000),
        "socketTimeoutMS": int(settings.store_socket_timeout_s * 1000),
    }
    named = {name.lower() for name in parse_qs(urlsplit(url).query)}
    chosen = {name: value for name, value in options.items() if name.lower() not in named}
    return AsyncMongoClient(url, tz_aware=True, **chosen)


def _utc(at: datetime) -> datetime:
    # BSON keeps UTC milliseconds; a client without tz_aware hands them back naive.
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _event_filters(query: EventQuery) -> dict[str, Any]:
    """The filter of an event query; a type pattern by its literal head only: the rest is
    matched word by word afterwards."""
    filters: dict[str, Any] = {
        name: value
        for name in ("id", "source", "correlation_id", "subject", "causation_id", "order_id")
        if (value := getattr(query, name)) is not None
    }
    if query.type is not None:
        head = topology.literal_head(query.type)
        # A pattern by its literal head (on the index) and tail, one `.*` between: linear, and
        # every type the pattern matches matches it; word by word afterwards.
        tail = query.type.rsplit("#", 1)[-1].rsplit("*", 1)[-1].lstrip(".")
        regex = {"$regex": f"^{re.escape(head)}.*{re.escape(tail)}$"}
        filters["type"] = head if head == query.type else regex
    if query.unbound_by:
        # The literal keys here, on the server; patterns word by word afterwards (`_unbound`).
        literals = [key for key in query.unbound_by if topology.literal_head(key) == key]
        filters["$and"] = [{"type": {"$nin": literals}}]
    period = {k: v for k, v in (("$gte", query.since), ("$lt", query.until)) if v}
    if period:
        filters["time"] = period
    return filters


def _logged(document: dict[str, Any]) -> LoggedEvent:
    fields = {k: v for k, v in document.items() if k != "_id"}
    return LoggedEvent(
        position=document["_id"],
        **{
            **fields,
            "time": _utc(document["time"]),
            # Kept for the index's lookups, never read back: as in SQLite, a person's
            # identifiers are read through `person` (and masked there for some readers).
            "identifiers": (),
        },
    )


def _link_of(document: dict[str, Any]) -> Link:
    undone = document.get("undone_at")
    return Link(
        document["a"],
        document["b"],
        document["event_id"],
        document["source"],
        _utc(document["at"]),
        _utc(undone) if undone else None,
    )


def _forgotten_of(document: dict[str, Any]) -> Forgotten:
    return Forgotten(
        document["event_id"],
        document["source"],
        _utc(document["time"]),
        _utc(document["forgotten_at"]),
    )


def _matches(query: EventQuery, type: str) -> bool:
    """Whether an event of this type, found by `_event_filters`, is one the query asks for:
    its type pattern and its bindings, word by word."""
    if query.type is not None and not topology.binding_matches(query.type, type):
        return False
    return not any(topology.binding_matches(key, type) for key in query.unbound_by or ())


class MongoEventLog(EventLog):
    """The event log in one MongoDB database: `MongoEventLog.from_url(url)`, or
    `MongoEventLog(database)` with a database object you built (then closing it leaves its
    client open)."""

    def __init__(self, database: AsyncDatabase, client: AsyncMongoClient | None = None):
        self._db = database
        self._client = client  # owned: closed by close()
        self._indexed = False

    @classmethod
    def from_url(cls, url: str) -> "MongoEventLog":
        """`mongodb://host:port/dbname` (dbname defaults to "hookhub"); connects on first use."""
        client = connect(url)
        return cls(client.get_default_database(DEFAULT_DATABASE), client)

    async def index(self, events: Sequence[LoggedEvent]) -> None:
        await self._ensure_indexes()
        ids = sorted({event.id for event in events})
        tombstones = await self._db[FORGOTTEN].find({"event_id": {"$in": ids}}).to_list(None)
        gone = {(t["event_id"], t["source"]) for t in tombstones}
        events = [event for event in events if (event.id, event.source) not in gone]
        # One unordered bulk write, one round trip for the batch; each an upsert, so indexing
        # the same position twice (a batch retried after a crash) is harmless.
        upserts = [
            UpdateOne(
                {"_id": event.position},
                {"$setOnInsert": {k: v for k, v in asdict(event).items() if k != "position"}},
                upsert=True,
            )
            for event in events
        ]
        if upserts:
            await self._db[EVENTS].bulk_write(upserts, ordered=False)
        for event in events:
            if event.identifiers:
                await self._link(event)
        for event in events:
            if event.causation_id and event.order_id:  # a notification's order, by its follow-up
                await self._db[EVENTS].update_many(
                    {"id": event.causation_id, "order_id": None,
                     "source": {"$regex": f"^{re.escape(WEBHOOK_SOURCE_PREFIX)}"}},
                    {"$set": {"order_id": event.order_id}},
                )  # fmt: skip

    async def _link(self, event: LoggedEvent) -> None:
        """The links an event makes, and the persons they merge (the indexer is one process:
        one event's writes in turn, each safe to repeat)."""
        ids = event.identifiers
        undone: set[tuple[str, str]] = set()
        for a, b in links_of(ids):
            link = {"a": a, "b": b, "event_id": event.id, "source": event.source}
            await self._db[LINKS].update_one(
                {"_id": f"{a}\n{b}"},
                {"$setOnInsert": {**link, "at": event.time, "undone_at": None}},
                upsert=True,
            )
            found = await self._db[LINKS].find_one({"_id": f"{a}\n{b}"})
            if found and found.get("undone_at") is not None:
                undone.add((a, b))
        cursor = self._db[IDENTIFIERS].find({"_id": {"$in": list(ids)}}, max_time_ms=BUDGET_MS)
        known = {d["_id"]: d["person_id"] for d in await cursor.to_list(None)}
        now = survivors(ids, known, undone)
        for one in ids:
            first = {"first_event": event.id, "first_seen": event.time}
            await self._db[IDENTIFIERS].update_one(
                {"_id": one}, {"$setOnInsert": {"person_id": now[one], **first}}, upsert=True
            )
        for one, before in known.items():
            if before != now[one]:  # a merge: the smaller id survives
                await self._db[IDENTIFIERS].update_many(
                    {"person_id": before}, {"$set": {"person_id": now[one]}}
                )

    async def person_of(self, key: str) -> str | None:
        await self._ensure_indexes()
        field = "person_id" if is_person_id(key) else "_id"
        found = await self._db[IDENTIFIERS].find_one({field: key})
        return found["person_id"] if found else None

    async def _identifiers_of(self, person_id: str) -> list[str]:
        cursor = self._db[IDENTIFIERS].find({"person_id": person_id}, max_time_ms=BUDGET_MS)
        return sorted(d["_id"] for d in await cursor.to_list(None))

    async def _links_of(self, identifiers: list[str]) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for end in ("a", "b"):
            cursor = self._db[LINKS].find({end: {"$in": identifiers}}, max_time_ms=BUDGET_MS)
            found |= {d["_id"]: d for d in await cursor.to_list(None)}
        return list(found.values())

    async def person(self, person_id: str, limit: int = MAX_PERSON_EVENTS) -> Person | None:
        await self._ensure_indexes()
        identifiers = await self._identifiers_of(person_id)
        if not identifiers:
            return None
        cursor = self._db[EVENTS].find(
            {"identifiers": {"$in": identifiers}}, limit=limit, max_time_ms=BUDGET_MS
        )
        events = await cursor.sort([("_id", DESCENDING)]).to_list(limit)
        links = sorted(map(_link_of, await self._links_of(identifiers)), key=lambda k: k.at)
        return Person(person_id, identifiers, links, [_logged(d) for d in events])

    async def people_at(self, positions: Sequence[int]) -> dict[int, str]:
        await self._ensure_indexes()
        cursor = self._db[EVENTS].find(
            {"_id": {"$in": list(positions)}}, {"identifiers": 1}, max_time_ms=BUDGET_MS
        )
        first = {d["_id"]: d["identifiers"][0] for d in await cursor.to_list(None)
                 if d.get("identifiers")}  # fmt: skip
        if not first:
            return {}
        found = self._db[IDENTIFIERS].find(
            {"_id": {"$in": sorted(set(first.values()))}}, max_time_ms=BUDGET_MS
        )
        person = {d["_id"]: d["person_id"] for d in await found.to_list(None)}
        return {at: person[one] for at, one in first.items() if one in person}

    async def unlink(self, *, identifier: str = "", event_id: str = "") -> list[str]:
        await self._ensure_indexes()
        if identifier:
            links = await self._links_of([identifier])
        else:
            cursor = self._db[LINKS].find({"event_id": event_id}, max_time_ms=BUDGET_MS)
            links = await cursor.to_list(None)
        links = [link for link in links if link.get("undone_at") is None]
        now = datetime.now(UTC)
        for link in links:
            await self._db[LINKS].update_one({"_id": link["_id"]}, {"$set": {"undone_at": now}})
        persons = {await self.person_of(one) for link in links for one in (link["a"], link["b"])}
        after: set[str] = set()
        for person in persons - {None}:
            ids = await self._identifiers_of(str(person))
            kept = [
                (link["a"], link["b"])
                for link in await self._links_of(ids)
                if link.get("undone_at") is None
            ]
            regrouped = people(ids, kept)
            for one, group in regrouped.items():
                await self._db[IDENTIFIERS].update_one({"_id": one}, {"$set": {"person_id": group}})
            after |= set(regrouped.values())
        return sorted(after)

    async def forget(self, person_id: str) -> list[Forgotten]:
        await self._ensure_indexes()
        identifiers = await self._identifiers_of(person_id)
        if not identifiers:
            return []
        cursor = self._db[EVENTS].find(
            {"identifiers": {"$in": identifiers}}, {"id": 1, "source": 1, "time": 1}
        )
        events = await cursor.to_list(None)
        now = datetime.now(UTC)
        gone = [Forgotten(d["id"], d["source"], _utc(d["time"]), now) for d in events]
        for one in gone:
            await self._db[FORGOTTEN].update_one(
                {"_id": f"{one.source}#{one.event_id}"},
                {"$setOnInsert": {**asdict(one)}},
                upsert=True,
            )
        # Tombstones first: a forget cut short leaves events refused, never shown.
        await self._db[EVENTS].delete_many({"_id": {"$in": [d["_id"] for d in events]}})
        for end in ("a", "b"):
            await self._db[LINKS].delete_many({end: {"$in": identifiers}})
        await self._db[IDENTIFIERS].delete_many({"person_id": person_id})
        return gone

    async def forgotten(self, event_id: str) -> list[Forgotten]:
        await self._ensure_indexes()
        cursor = self._db[FORGOTTEN].find({"event_id": event_id}, max_time_ms=BUDGET_MS)
        found = await cursor.to_list(MAX_JOURNEY_ROWS)
        return sorted(map(_forgotten_of, found), key=lambda f: f.source)

    async def indexed_up_to(self) -> int | None:
        newest = self._db[EVENTS].find({}, {"_id": 1}, limit=1, max_time_ms=BUDGET_MS)
        found = await newest.sort([("_id", DESCENDING)]).to_list(1)
        return found[0]["_id"] if found else None

    async def open(self) -> None:
        await self._ensure_indexes()

    async def last_indexed(self) -> LoggedEvent | None:
        newest = self._db[EVENTS].find({}, limit=1, max_time_ms=BUDGET_MS)
        found = await newest.sort([("_id", DESCENDING)]).to_list(1)
        return _logged(found[0]) if found else None

    async def supersede(self) -> None:
        # `_id` cannot change: each event is written again under its new one, then deleted,
        # lowest first (so none lands on one not moved yet), the move's progress kept in
        # MOVING so that a move cut short is finished, not done twice. Rare (an archive
        # recreated) and one write per event: a million events take minutes.
        while move := await self._db[MOVING].find_one({"_id": MOVING}) or await self._plan():
            page = (
                await self._db[EVENTS]
                .find({"_id": {"$gte": move["next"], "$lte": move["high"]}}, limit=PAGE)
                .sort([("_id", ASCENDING)])
                .to_list(PAGE)
            )
            if not page:
                await self._db[MOVING].delete_many({"_id": MOVING})
                continue
            for document in page:
                # One at a time, progress after each: an event moved lands below `next`, so a
                # move resumed from there never takes it for one still to move.
                at = document.pop("_id")
                await self._db[EVENTS].update_one(
                    {"_id": at + move["shift"]}, {"$setOnInsert": document}, upsert=True
                )
                await self._db[EVENTS].delete_many({"_id": at})
                await self._db[MOVING].update_one({"_id": MOVING}, {"$set": {"next": at + 1}})

    async def _plan(self) -> dict[str, Any] | None:
        """The move `supersede` starts: every event down by the highest position + 1; None when
        nothing is at 0 or above (the new stream has nothing indexed yet)."""
        ends = [
            await self._db[EVENTS]
            .find({}, {"_id": 1}, limit=1, max_time_ms=BUDGET_MS)
            .sort([("_id", way)])
            .to_list(1)
            for way in (ASCENDING, DESCENDING)
        ]
        if not ends[1] or ends[1][0]["_id"] < 0:
            return None
        low, high = ends[0][0]["_id"], ends[1][0]["_id"]
        move = {"_id": MOVING, "shift": -(high + 1), "next": low, "high": high}
        await self._db[MOVING].insert_one(dict(move))
        return move

    async def _ensure_indexes(self) -> None:
        if not self._indexed:
            # First: a database a newer release made is refused before anything is created.
            # Indexes included: made once per database, by the migration that declares them.
            await schema.migrate_documents(self._db, {COMPONENT: MIGRATIONS})
            self._indexed = True

    async def find_events(self, query: EventQuery) -> list[LoggedEvent]:
        if query.type is not None and (problem := pattern_problem(query.type)):
            raise BadPattern(problem)
        await self._ensure_indexes()
        if query.limit <= 0:  # as SQLite's LIMIT 0 (a server takes limit=0 as no limit)
            return []
        filters = _event_filters(query)
        page = query.limit if query.matched_by_the_store else PAGE
        deadline = time.monotonic() + SEARCH_BUDGET_S
        found: list[LoggedEvent] = []
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                raise SearchTooSlow
            cursor = self._db[EVENTS].find(filters, limit=page, max_time_ms=left_ms)
            try:
                documents = await cursor.sort([("_id", DESCENDING)]).to_list(page)
            except ExecutionTimeout:
                raise SearchTooSlow from None
            for document in documents:
                if _matches(query, document["type"]):
                    found.append(_logged(document))
                    if len(found) == query.limit:
                        return found
            if len(documents) < page:
                return found
            filters = {**filters, "_id": {"$lt": documents[-1]["_id"]}}

    async def record(self, step: Step) -> None:
        await self._db[STEPS].insert_one(asdict(step))

    async def steps(self, event_id: str) -> list[Step]:
        await self._ensure_indexes()
        cursor = self._db[STEPS].find(
            {"event_id": event_id}, {"_id": 0}, limit=MAX_JOURNEY_ROWS, max_time_ms=BUDGET_MS
        )
        # Steps in one millisecond in the order recorded: _id grows with each insert.
        documents = await cursor.sort([("at", ASCENDING), ("_id", ASCENDING)]).to_list(
            MAX_JOURNEY_ROWS
        )
        return [Step(**{**d, "at": _utc(d["at"])}) for d in documents]

    async def processed_by(self, source: str, event_id: str) -> list[tuple[str, datetime]]:
        try:
            return await self._processed_by(source, event_id)
        except ExecutionTimeout:
            raise SearchTooSlow from None

    async def _processed_by(self, source: str, event_id: str) -> list[tuple[str, datetime]]:
        # Every marker is in `markers` (store migration 2), on the index by event key.
        markers = self._db[MARKERS].find(
            {"event_key": event_key(source, event_id)},
            {"consumer": 1, "processed_at": 1},
            limit=MAX_JOURNEY_ROWS,
            max_time_ms=BUDGET_MS,
        )
        found = [
            (document["consumer"], _utc(document["processed_at"]))
            for document in await markers.to_list(MAX_JOURNEY_ROWS)
        ]
        return sorted(found, key=lambda one: (one[1], one[0]))

    async def marked_sources(self, event_id: str) -> list[str]:
        try:
            return await self._marked_sources(event_id)
        except ExecutionTimeout:
            raise SearchTooSlow from None

    async def _marked_sources(self, event_id: str) -> list[str]:
        # On the index by event id, which store migration 2 gives every marker.
        markers = self._db[MARKERS].find(
            {"event_id": event_id}, {"event_key": 1}, limit=MAX_JOURNEY_ROWS, max_time_ms=BUDGET_MS
        )
        keys = [document["event_key"] for document in await markers.to_list(MAX_JOURNEY_ROWS)]
        suffix = f"#{event_id}"
        return sorted({k.removesuffix(suffix) for k in keys if k.endswith(suffix)})

    async def payment_state(self, order_id: str) -> PaymentState | None:
        found = await self._db[ORDERS].find_one({"_id": order_id})
        if found is None:
            return None
        # Fields added after the first release: a document saved before lacks them.
        fields = {name: found.get(name) for name in PAYMENT_FIELDS}
        return PaymentState(
            order_id=order_id,
            **{
                **fields,
                "refunded_amount": fields["refunded_amount"] or 0,
                "updated_at": _utc(fields["updated_at"]),
            },
        )

    async def attempts(self, event_id: str, source: str | None = None) -> list[Attempt]:
        query: dict[str, Any] = {"event_id": event_id}
        if source is not None:  # None also matches a document with no source: an older one
            query["source"] = {"$in": [source, None]}
        # `at` is kept to the millisecond, so attempts in one millisecond fall back to _id,
        # which grows with each insert from one process.
        cursor = self._db[DELIVERIES].find(query, limit=MAX_JOURNEY_ROWS, max_time_ms=BUDGET_MS)
        documents = await cursor.sort([("at", ASCENDING), ("_id", ASCENDING)]).to_list(
            MAX_JOURNEY_ROWS
        )
        return [
            Attempt(redact(d["url"]), d["delivered"], _utc(d["at"]), d["status_code"], d["error"])
            for d in documents
        ]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
