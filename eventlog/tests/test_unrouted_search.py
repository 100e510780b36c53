"""`--unrouted` (the CLI, the operator's API and console) is a filter of the store's query, applied
before its limit: 29 unrouted events among many routed ones, `limit=5` gives 5, newest first, in
each adapter (SQLite, and MongoDB through the in-process stand-in)."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hookhub_eventlog.journey import consumer_bindings, unrouted
from hookhub_eventlog.store import EventLog, EventQuery, LoggedEvent
from hookhub_eventlog.store.mongo import MongoEventLog
from hookhub_eventlog.store.sqlite import SQLiteEventLog
from hookhub_operator.reads import Filters, find_events

from tests.support.mongo_standin import StandinClient

A_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
UNROUTED = 29
# Routed types: a literal binding and ones matched by patterns (`stripe.#`, `payment.*`...).
ROUTED_TYPES = ["order.created", "payment.approved", "stripe.charge.refunded", "ci.build"]
UNROUTED_TYPES = ["inventory.counted", "github.push"]


def _events() -> list[LoggedEvent]:
    """The 29 unrouted events are the oldest, each followed by 40 routed ones: a filter applied
    after the limit finds none of them in the newest 5, 20 or 50."""
    events, position = [], 0
    for n in range(UNROUTED):
        position += 1
        kind = UNROUTED_TYPES[n % len(UNROUTED_TYPES)]
        events.append(LoggedEvent(position, f"u-{n}", "/events/x", kind, A_TIME))
        for m in range(40):
            position += 1
            kind = ROUTED_TYPES[m % len(ROUTED_TYPES)]
            at = A_TIME + timedelta(seconds=position)
            events.append(LoggedEvent(position, f"r-{position}", "/events/x", kind, at))
    return events


@pytest.fixture(params=["sqlite", "mongodb-standin"])
async def event_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventLog]:
    if request.param == "sqlite":
        log: EventLog = SQLiteEventLog(tmp_path / "hookhub.db")
    else:
        log = MongoEventLog(StandinClient()[f"t_{uuid.uuid4().hex}"])  # type: ignore[arg-type]
    await log.index(_events())
    yield log
    await log.close()


def test_the_types_here_are_routed_and_unrouted_as_the_installed_consumers_bind_them():
    logged = [LoggedEvent(0, t, "/events/x", t, A_TIME) for t in ROUTED_TYPES + UNROUTED_TYPES]
    assert [e.type for e in unrouted(logged)] == UNROUTED_TYPES


@pytest.mark.parametrize("limit", [5, 20, 50, 500])
async def test_the_limit_counts_only_unrouted_events(event_log: EventLog, limit: int):
    query = EventQuery(unbound_by=consumer_bindings(), limit=limit)

    found = await event_log.find_events(query)

    assert len(found) == min(limit, UNROUTED)
    assert [e.id for e in found] == [f"u-{n}" for n in reversed(range(UNROUTED))][:limit]


async def test_unrouted_combines_with_a_type_pattern(event_log: EventLog):
    query = EventQuery(type="github.*", unbound_by=consumer_bindings(), limit=5)

    found = await event_log.find_events(query)

    assert [e.type for e in found] == ["github.push"] * 5


async def test_with_no_consumer_installed_every_event_is_unrouted(event_log: EventLog):
    found = await event_log.find_events(EventQuery(unbound_by=(), limit=5))

    assert len(found) == 5


async def test_the_operator_console_and_api_list_five_unrouted_for_limit_five(event_log):
    found = await find_events(event_log, Filters(unrouted=True, limit=5))

    assert [e.id for e in found] == ["u-28", "u-27", "u-26", "u-25", "u-24"]
