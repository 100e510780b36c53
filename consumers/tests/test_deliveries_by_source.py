"""Delivery attempts belong to one event, its (source, id): two sources' events sharing an id are
two events to deliver (issue 20). On each adapter, and on a SQLite file an older release made."""

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hookhub_consumers.notifications.records import Delivery, deliveries
from hookhub_consumers.notifications.spec import SPEC
from hookhub_consumers.store import Store
from hookhub_eventlog.store import Attempt
from storages import ADAPTERS, Storage, storage

A_TIME = datetime(2025, 3, 1, 15, 30, 12, 345000, tzinfo=UTC)
URL = "https://a.example/hook"
JENKINS, BUILDBOT = "/events/jenkins", "/events/buildbot"


@pytest.fixture(params=ADAPTERS)
async def on_storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with storage(request.param, tmp_path, [SPEC]) as found:
        yield found


@pytest.fixture
def store(on_storage: Storage) -> Store:
    return on_storage.store()


def delivered(source: str | None, attempt: int = 1) -> Delivery:
    return Delivery("build-7", "ci.build", URL, attempt, 200, None, True, A_TIME, source)


async def test_one_sources_delivery_is_not_another_sources_with_the_same_id(store: Store):
    await deliveries(store).record(delivered(JENKINS))

    assert await deliveries(store).attempts("build-7", JENKINS) == [delivered(JENKINS)]
    assert await deliveries(store).attempts("build-7", BUILDBOT) == []


async def test_the_same_attempt_of_two_sources_is_kept_twice(store: Store):
    await deliveries(store).record(delivered(JENKINS))
    await deliveries(store).record(delivered(BUILDBOT))

    assert await deliveries(store).attempts("build-7") == [delivered(JENKINS), delivered(BUILDBOT)]


async def test_the_event_logs_journey_reads_its_sources_attempts_and_the_unattributed_ones(
    on_storage: Storage,
):
    store, event_log = on_storage.store(), on_storage.event_log()
    for source in (JENKINS, BUILDBOT, None):
        await deliveries(store).record(delivered(source))

    # One of each: jenkins' own and the one an older release recorded without its source.
    assert await event_log.attempts("build-7", JENKINS) == [Attempt(URL, True, A_TIME, 200)] * 2
    assert len(await event_log.attempts("build-7")) == 3


async def test_an_older_files_deliveries_gain_a_source_and_match_no_events_but_show_redacted(
    tmp_path: Path,
):
    path = tmp_path / "hookhub.db"
    with sqlite3.connect(path) as db:  # the table as the release before sources made it
        db.execute(
            "CREATE TABLE deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL,"
            " event_type TEXT NOT NULL, url TEXT NOT NULL, attempt INTEGER NOT NULL,"
            " status_code INTEGER, error TEXT, delivered INTEGER NOT NULL, at TEXT NOT NULL)"
        )
        db.execute(
            "INSERT INTO deliveries (event_id, event_type, url, attempt, status_code, delivered,"
            " at) VALUES ('build-7', 'ci.build', 'https://u:old-pw@a.example/hook', 1, 200, 1,"
            " '2025-03-01T15:30:12.345000+00:00')"
        )
    async with storage("sqlite", tmp_path, [SPEC]) as on_storage:
        store, event_log = on_storage.store(), on_storage.event_log()

        # Not known to be jenkins': delivering jenkins' build-7 again beats never delivering it.
        assert await deliveries(store).attempts("build-7", JENKINS) == []
        [old] = await deliveries(store).attempts("build-7")
        assert old.source is None
        assert await event_log.attempts("build-7", JENKINS) == [
            Attempt("https://u:***@a.example/hook", True, A_TIME, 200)
        ]
