"""Every query the MongoDB adapters make is served by an index they declare (issue 26).

The adapters declare, per collection, the fields each query filters on and the index that serves
it (`QUERY_INDEXES` of the runtime's store and of the event log, `RECORD_QUERIES` for every
collection of records, each repository's `queries`). Here a workload that makes every kind of
call runs on a stand-in that notes each query, and each one noted must be declared, its index
made (by the migrations, at open). On a real server (HOOKHUB_TEST_MONGODB_URL) the same workload
runs and each find is `explain()`ed: no collection scan but the declared ones.
"""

import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hookhub_consumers.notifications.records import Delivery, deliveries
from hookhub_consumers.payments.records import Order, orders
from hookhub_consumers.production.records import Ticket, tickets
from hookhub_consumers.store import Change, Marker
from hookhub_consumers.store.base import load_repositories
from hookhub_consumers.store.mongo import (
    QUERY_INDEXES,
    RECORD_QUERIES,
    SCAN,
    MongoStore,
    keeps_records,
)
from hookhub_eventlog.store import mongo as event_log_adapter
from hookhub_eventlog.store.base import EventQuery, LoggedEvent, Step
from hookhub_eventlog.store.mongo import MongoEventLog
from pymongo import AsyncMongoClient, monitoring

from tests.support.mongo_standin import Query, StandinClient

SOURCE = "/providers/stripe"
AT = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)


def declared() -> dict[str, dict[tuple[str, ...], str]]:
    """Collection → the queries declared on it → their index."""
    tables: dict[str, dict[tuple[str, ...], str]] = {}
    for table in (QUERY_INDEXES, event_log_adapter.QUERY_INDEXES):
        for collection, queries in table.items():
            tables.setdefault(collection, {}).update(queries)
    for repository in load_repositories("mongodb").values():
        queries: Mapping[tuple[str, ...], str] = repository.queries
        if keeps_records(repository):
            queries = {**RECORD_QUERIES, **queries}
        tables.setdefault(repository.collection, {}).update(queries)
    return tables


def fields_of(query: Query) -> tuple[str, ...]:
    """The fields a query's filter names (its operators aside), else those it sorts on."""
    named = {name for name in query.filter if not name.startswith("$")}
    if not named and query.sort:
        named = {query.sort[0][0]}
    return tuple(sorted(named))


def index_of(query: Query, tables: Mapping[str, Mapping[tuple[str, ...], str]]) -> str | None:
    """The declared index serving the query: the one declared for the most of its fields (a
    query on more fields than one index takes is still served by it); None: undeclared."""
    fields = set(fields_of(query))
    served = [
        (len(declared_fields), index)
        for declared_fields, index in tables.get(query.collection, {}).items()
        if set(declared_fields) <= fields and (declared_fields or not fields)
    ]
    return max(served)[1] if served else None


async def workload(database: Any) -> None:
    """Every kind of call the store, the repositories and the event log make."""
    store = MongoStore(database)
    log = MongoEventLog(database)
    first, second = Marker.of("payments", SOURCE, "evt-1"), Marker.of("payments", SOURCE, "evt-2")
    order = Order("ord-1", provider="stripe", payment_id="pi_1")
    await store.open()
    await log.open()
    await store.save(Change(first, order, ("payment.approved",)))
    await store.save(Change(second, order))
    await store.save(Change(Marker.of("production", SOURCE, "evt-1"), Ticket("ord-1")))
    await store.mark_processed(Marker.of("notifications", SOURCE, "evt-1"))
    await store.is_processed(first)
    await store.pending(first)
    await store.sent(first)
    await store.unsent("payments", datetime.now(UTC) + timedelta(seconds=1))
    await store.check_writable()
    await orders(store).get("ord-1")
    await orders(store).by_payment("stripe", "pi_1")
    await tickets(store).get("ord-1")
    delivery = Delivery("evt-1", "order.paid", "https://example.com/hook", 1, source=SOURCE)
    await deliveries(store).record(delivery)
    await deliveries(store).attempts("evt-1", SOURCE)

    events = [
        LoggedEvent(n, f"evt-{n}", SOURCE, "payment.approved", AT, "ord-1", "corr-1", "evt-0")
        for n in range(3)
    ]
    await log.index(events)
    await log.indexed_up_to()
    await log.last_indexed()
    for query in (
        EventQuery(id="evt-1"),
        EventQuery(type="payment.approved"),
        EventQuery(type="payment.#"),
        EventQuery(source=SOURCE),
        EventQuery(correlation_id="corr-1"),
        EventQuery(subject="ord-1"),
        EventQuery(causation_id="evt-0"),
        EventQuery(since=AT - timedelta(days=1), until=AT + timedelta(days=1)),
    ):
        await log.find_events(query)
    await log.record(Step("evt-1", "payments", "handled"))
    await log.steps("evt-1")
    await log.processed_by(SOURCE, "evt-1")
    await log.marked_sources("evt-1")
    await log.attempts("evt-1", SOURCE)
    # People: linking, a person's page, unlinking, forgetting.
    who = ("email:ana@example.com", "phone:+5511987654321")
    await log.index([LoggedEvent(10, "evt-10", SOURCE, "x.y", AT, identifiers=who)])
    person_id = await log.person_of(who[0]) or ""
    await log.person_of(person_id)
    await log.person(person_id)
    await log.people_at([10])
    await log.unlink(identifier=who[1])
    await log.unlink(event_id="evt-10")
    await log.forget(person_id)
    await log.forgotten("evt-10")
    await log.supersede()
    await store.close()
    await log.close()


async def test_every_query_the_adapters_make_is_declared_with_its_index():
    queries: list[Query] = []
    database = StandinClient(queries=queries)[f"hookhub_test_{uuid.uuid4().hex}"]

    await workload(database)

    tables = declared()
    undeclared = sorted(
        {(q.collection, fields_of(q)) for q in queries if index_of(q, tables) is None}
    )
    assert undeclared == []
    assert {q.collection for q in queries} >= {"markers", "orders", "events", "steps", "deliveries"}


async def test_every_declared_index_is_made_by_the_migrations():
    database = StandinClient()[f"hookhub_test_{uuid.uuid4().hex}"]

    await workload(database)

    missing = [
        (collection, index)
        for collection, queries in declared().items()
        for index in queries.values()
        if index not in (SCAN, "_id_")
        and index not in database[collection]._sync.index_information()
    ]
    assert missing == []


class Finds(monitoring.CommandListener):
    """The finds a client sends, as the server receives them."""

    def __init__(self) -> None:
        self.seen: list[Query] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            command = event.command
            sort = list((command.get("sort") or {}).items())
            self.seen.append(Query(command["find"], dict(command.get("filter", {})), sort))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None: ...

    def failed(self, event: monitoring.CommandFailedEvent) -> None: ...


def stages(plan: dict[str, Any]) -> set[str]:
    """Every stage of a winning plan (the slot-based engine's nests it in `queryPlan`)."""
    found = {plan.get("stage", "")}
    for child in (plan.get("queryPlan"), plan.get("inputStage"), *plan.get("inputStages", ())):
        if child:
            found |= stages(child)
    return found


async def test_on_a_real_server_no_find_scans_a_collection_it_did_not_declare_a_scan_of():
    url = os.environ.get("HOOKHUB_TEST_MONGODB_URL")
    if not url:
        pytest.skip("no MongoDB server: set HOOKHUB_TEST_MONGODB_URL=mongodb://host:port")
    finds = Finds()
    client: AsyncMongoClient = AsyncMongoClient(url, tz_aware=True, event_listeners=[finds])
    database = client[f"hookhub_test_{uuid.uuid4().hex}"]
    try:
        await workload(database)
        tables = declared()
        scans = []
        for find in finds.seen:
            if find.collection == "schema_versions" or index_of(find, tables) == SCAN:
                continue
            command = {"find": find.collection, "filter": find.filter}
            if find.sort:
                command["sort"] = dict(find.sort)
            explained = await database.command("explain", command)
            if "COLLSCAN" in stages(explained["queryPlanner"]["winningPlan"]):
                scans.append((find.collection, fields_of(find)))
        assert scans == []
    finally:
        await client.drop_database(database.name)
        await client.close()
