"""An index that learns its archive is a new stream (`EventLog.supersede`): the events indexed
from the old one move below every position the new one can have, in their order, still found;
the new stream's positions, from 0, are then indexed as new events."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hookhub_eventlog.store import EventLog, EventQuery, LoggedEvent
from hookhub_eventlog.store.mongo import MongoEventLog
from hookhub_eventlog.store.sqlite import SQLiteEventLog

from tests.support.mongo_standin import StandinClient

A_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def logged(position: int, id: str) -> LoggedEvent:
    at = A_TIME + timedelta(seconds=position)
    return LoggedEvent(position, id, "/tests", "inventory.counted", at)


@pytest.fixture(params=["sqlite", "mongodb-standin"])
async def event_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventLog]:
    if request.param == "sqlite":
        log: EventLog = SQLiteEventLog(tmp_path / "hookhub.db")
    else:
        log = MongoEventLog(StandinClient()[f"t_{uuid.uuid4().hex}"])  # type: ignore[arg-type]
    yield log
    await log.close()


def ids(found: list[LoggedEvent]) -> list[str]:
    return [e.id for e in found]


async def test_the_last_indexed_event_is_the_one_at_the_highest_position(event_log):
    assert await event_log.last_indexed() is None
    await event_log.index([logged(0, "a"), logged(2, "c"), logged(1, "b")])

    assert await event_log.last_indexed() == logged(2, "c")


async def test_a_new_streams_events_are_indexed_beside_the_old_ones_newest_first(event_log):
    await event_log.index([logged(n, f"old-{n}") for n in range(3)])

    await event_log.supersede()
    await event_log.index([logged(0, "new-0"), logged(1, "new-1")])

    found = await event_log.find_events(EventQuery())
    assert ids(found) == ["new-1", "new-0", "old-2", "old-1", "old-0"]
    assert [e.position for e in found] == [1, 0, -1, -2, -3]
    assert (await event_log.last_indexed()).id == "new-1"


async def test_a_second_new_stream_moves_both_older_ones_below_it_in_order(event_log):
    await event_log.index([logged(n, f"first-{n}") for n in range(2)])
    await event_log.supersede()
    await event_log.index([logged(n, f"second-{n}") for n in range(2)])

    await event_log.supersede()
    await event_log.supersede()  # nothing from the newest stream yet: nothing moves

    found = await event_log.find_events(EventQuery())
    assert ids(found) == ["second-1", "second-0", "first-1", "first-0"]
    assert [e.position for e in found] == [-1, -2, -3, -4]


async def test_a_mongodb_move_cut_short_is_finished_by_the_next_call():
    log = MongoEventLog(StandinClient()[f"t_{uuid.uuid4().hex}"])  # type: ignore[arg-type]
    await log.index([logged(n, f"old-{n}") for n in range(5)])
    # As a crash would leave it: the move planned, the lowest two moved already, the third
    # written again but not yet deleted.
    moving = log._db["events_superseding"]
    await moving.insert_one({"_id": "events_superseding", "shift": -5, "next": 2, "high": 4})
    await log._db["events"].delete_many({"_id": {"$in": [0, 1]}})
    await log.index([logged(-5, "old-0"), logged(-4, "old-1"), logged(-3, "old-2")])

    await log.supersede()

    found = await log.find_events(EventQuery())
    assert [(e.position, e.id) for e in found] == [(-1 - n, f"old-{4 - n}") for n in range(5)]
    assert await moving.find_one({"_id": "events_superseding"}) is None
    await log.close()
