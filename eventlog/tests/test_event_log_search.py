"""Searches with a budget: every query has a LIMIT and an index that serves it, a topic pattern
is matched exactly in the store (so LIMIT applies), a pattern past the complexity cap is refused,
and a search that runs past its time is stopped rather than holding the process."""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hookhub.topology import binding_matches
from hookhub_eventlog.store import EventQuery, LoggedEvent
from hookhub_eventlog.store import sqlite as sqlite_store
from hookhub_eventlog.store.base import BadPattern, SearchTooSlow
from hookhub_eventlog.store.mongo import MongoEventLog
from hookhub_eventlog.store.sqlite import SQLiteEventLog, _event_filters
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.mongo_standin import StandinClient

A_TIME = datetime(2026, 1, 1, tzinfo=UTC)
TYPES = ["stripe.charge.succeeded", "stripe.charge.refunded", "payment.approved", "ci.build",
         "github.push", "stripe.refunded", "a.b.c.d.e"]  # fmt: skip


def _events(types: list[str], start: int = 0) -> list[LoggedEvent]:
    return [
        LoggedEvent(
            position=start + n,
            id=f"e{start + n}",
            source=f"/webhooks/{t.split('.')[0]}",
            type=t,
            time=A_TIME + timedelta(seconds=start + n),
            subject=f"order-{n % 7}",
            order_id=f"order-{n % 7}",
            correlation_id=f"c{n % 11}",
            causation_id=f"e{n - 1}",
        )
        for n, t in enumerate(types)
    ]


@pytest.fixture
async def sqlite_log(tmp_path: Path):
    log = SQLiteEventLog(tmp_path / "hookhub.db")
    await log.index(_events(TYPES * 3))
    yield log
    await log.close()


@pytest.fixture(params=["sqlite", "mongodb-standin"])
async def event_log(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        log = SQLiteEventLog(tmp_path / "hookhub.db")
    else:
        log = MongoEventLog(StandinClient()[f"t_{uuid.uuid4().hex}"])  # type: ignore[arg-type]
    await log.index(_events(TYPES * 3))
    yield log
    await log.close()


FILTERS = {
    "id": EventQuery(id="e3"),
    "type": EventQuery(type="ci.build"),
    "type pattern with a head": EventQuery(type="stripe.#"),
    "source": EventQuery(source="/webhooks/stripe"),
    "correlation id": EventQuery(correlation_id="c1"),
    "subject": EventQuery(subject="order-1"),
    "order id": EventQuery(order_id="order-1"),
    "cause": EventQuery(causation_id="e2"),
    "time range": EventQuery(since=A_TIME, until=A_TIME + timedelta(minutes=1)),
    "nothing": EventQuery(),
}


@pytest.mark.parametrize("name", FILTERS)
async def test_every_search_has_a_limit_and_an_index_that_serves_it(sqlite_log, name):
    where, parameters = _event_filters(FILTERS[name])
    sql = f"SELECT * FROM events {where} ORDER BY position DESC LIMIT ?"
    plan = await sqlite_log.search(f"EXPLAIN QUERY PLAN {sql}", (*parameters, 10))
    details = " | ".join(row["detail"] for row in plan)

    if name in ("nothing", "type pattern with a head"):
        # Newest first along the primary key, stopping at LIMIT: no sort of a whole range.
        assert details == "SCAN events", details
    else:
        assert "USING INDEX" in details or "USING INTEGER PRIMARY KEY" in details, details
        # A time range is sorted newest first: only the rows inside it.
        assert "TEMP B-TREE" not in details or name == "time range", details


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    # At most four `#`: past that a pattern is refused (BadPattern, tested on its own).
    st.lists(st.sampled_from(["stripe", "charge", "refunded", "a", "b", "*", "#"]), min_size=1,
             max_size=5).filter(lambda words: words.count("#") <= 4).map(".".join),
    st.integers(min_value=1, max_value=5),
)  # fmt: skip
async def test_a_pattern_finds_exactly_what_the_broker_would_route_newest_first(
    event_log, pattern, limit
):
    everything = _events(TYPES * 3)
    expected = [e.position for e in reversed(everything) if binding_matches(pattern, e.type)]

    found = await event_log.find_events(EventQuery(type=pattern, limit=limit))

    assert [e.position for e in found] == expected[:limit]


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (".".join(["#"] * 900) + ".nomatch", "words"),
        ("#.#.#.#.#.nomatch", "'#'"),
        ("stripe.%", "letters, digits"),
        ("stripe..#", "letters, digits"),
    ],
)
async def test_a_pattern_past_the_complexity_cap_is_refused_saying_why(event_log, pattern, why):
    with pytest.raises(BadPattern, match=why):
        await event_log.find_events(EventQuery(type=pattern))


async def test_a_search_past_its_budget_is_stopped_not_left_running(tmp_path, monkeypatch):
    log = SQLiteEventLog(tmp_path / "hookhub.db")
    await log.index(_events(["x.y"] * 50_000))
    monkeypatch.setattr(sqlite_store, "SEARCH_BUDGET_S", 0.0)
    try:
        with pytest.raises(SearchTooSlow, match="narrow it"):
            await log.find_events(EventQuery(type="#.nomatch"))
        monkeypatch.setattr(sqlite_store, "SEARCH_BUDGET_S", 2.0)
        assert await log.find_events(EventQuery(id="e1"))  # the next search is served
    finally:
        await log.close()
