"""The event log on MongoDB: every read bounded on the server, the indexer's batch one round
trip, indexes made once per database, steps in the order recorded (issue 26)."""

import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hookhub_eventlog.store.base import EventQuery, LoggedEvent, Step
from hookhub_eventlog.store.mongo import MongoEventLog

from tests.support.mongo_standin import Query, StandinClient, StandinCollection

SOURCE = "/providers/stripe"
AT = datetime(2025, 3, 1, 15, 30, tzinfo=UTC)


def standin(queries: list[Query] | None = None) -> Any:
    return StandinClient(queries=queries)[f"hookhub_test_{uuid.uuid4().hex}"]


def events(count: int) -> list[LoggedEvent]:
    return [
        LoggedEvent(n, f"evt-{n}", SOURCE, "payment.approved", AT, "ord-1") for n in range(count)
    ]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Counter[tuple[str, str]]:
    """(collection, method) → how many times the event log called it on the stand-in."""
    counted: Counter[tuple[str, str]] = Counter()
    for method in ("update_one", "bulk_write", "create_index", "insert_one"):
        original: Callable[..., Any] = getattr(StandinCollection, method)

        async def counting(self: StandinCollection, *args: Any, _m=method, _o=original, **kw: Any):
            counted[(self.name, _m)] += 1
            return await _o(self, *args, **kw)

        monkeypatch.setattr(StandinCollection, method, counting)
    return counted


async def test_a_batch_of_500_events_is_indexed_in_one_bulk_write(calls: Counter):
    event_log = MongoEventLog(standin())
    await event_log.open()

    await event_log.index(events(500))

    assert calls[("events", "bulk_write")] == 1
    assert calls[("events", "update_one")] == 0
    assert await event_log.indexed_up_to() == 499


async def test_a_batch_indexed_twice_is_kept_once():
    database = standin()
    event_log = MongoEventLog(database)

    await event_log.index(events(3))
    await event_log.index(events(3))

    assert database["events"]._sync.count_documents({}) == 3


async def test_indexes_are_made_once_per_database_not_once_per_process(calls: Counter):
    database = standin()
    await MongoEventLog(database).open()
    made = sum(n for (_, method), n in calls.items() if method == "create_index")

    await MongoEventLog(database).open()  # another process, later

    assert made > 0
    assert sum(n for (_, method), n in calls.items() if method == "create_index") == made


async def test_every_read_of_the_event_log_has_a_limit_and_a_time_budget_on_the_server():
    queries: list[Query] = []
    database = standin(queries)
    event_log = MongoEventLog(database)
    await event_log.open()
    await event_log.index(events(3))
    del queries[:]  # the migrations' and the batch's, which are not reads

    await event_log.indexed_up_to()
    await event_log.last_indexed()
    await event_log.find_events(EventQuery(id="evt-1", limit=1))
    await event_log.find_events(EventQuery(type="payment.#"))
    await event_log.find_events(EventQuery(since=AT - timedelta(days=1)))
    await event_log.steps("evt-1")
    await event_log.processed_by(SOURCE, "evt-1")
    await event_log.marked_sources("evt-1")
    await event_log.attempts("evt-1", SOURCE)

    unbounded = [
        (q.collection, q.filter)
        for q in queries
        if not (0 < q.options.get("limit", 0) and "max_time_ms" in q.options)
    ]
    assert unbounded == []
    assert [q.options["limit"] for q in queries if q.filter == {"id": "evt-1"}] == [1]


async def test_a_search_for_no_events_finds_none():
    event_log = MongoEventLog(standin())
    await event_log.index(events(3))

    assert await event_log.find_events(EventQuery(limit=0)) == []


async def test_steps_in_one_millisecond_come_back_in_the_order_recorded():
    event_log = MongoEventLog(standin())
    for what in ("received", "handled", "published", "acked"):
        await event_log.record(Step("evt-1", "payments", what, at=AT))

    assert [s.what for s in await event_log.steps("evt-1")] == [
        "received",
        "handled",
        "published",
        "acked",
    ]
