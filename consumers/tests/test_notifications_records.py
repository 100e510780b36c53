"""The notifications consumer's repository contract (delivery attempts), on each adapter.

An attempt is written outside any marker, at once (before the POST, and again with its answer):
the repository's own write, not the runtime's. The event log reads the attempts too.
"""

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hookhub.settings import Settings
from hookhub_consumers.notifications.records import Delivery, deliveries
from hookhub_consumers.notifications.spec import SPEC
from hookhub_consumers.store import Store, open_store
from hookhub_endpoints.attempts import attempts_to
from hookhub_eventlog.store import Attempt, open_event_log
from hookhub_eventlog.store.consumer_tables import deliveries_file
from storages import ADAPTERS, Storage, storage

A_TIME = datetime(2025, 3, 1, 15, 30, 12, 345000, tzinfo=UTC)  # millisecond precision, as stored
URL = "https://a.example/hook"


@pytest.fixture(params=ADAPTERS)
async def on_storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with storage(request.param, tmp_path, [SPEC]) as found:
        yield found


@pytest.fixture
def store(on_storage: Storage) -> Store:
    return on_storage.store()


async def test_deliveries_come_back_oldest_first_with_every_field(store: Store):
    def attempt(n: int, after_s: int, **outcome) -> Delivery:
        at = A_TIME + timedelta(seconds=after_s)
        return Delivery("evt-1", "payment.approved", URL, n, at=at, **outcome)

    attempts = [
        attempt(1, 0, status_code=503, error="HTTP 503"),
        attempt(2, 30, error="timed out"),
        attempt(3, 90, status_code=200, delivered=True),
    ]
    for attempt in reversed(attempts):
        await deliveries(store).record(attempt)

    assert await deliveries(store).attempts() == attempts


async def test_deliveries_in_the_same_millisecond_keep_the_order_they_were_recorded_in(
    store: Store,
):
    attempts = [
        Delivery("evt-1", "ci.build", f"https://{n}.example/hook", 1, at=A_TIME) for n in range(3)
    ]
    for attempt in attempts:
        await deliveries(store).record(attempt)

    assert [d.url for d in await deliveries(store).attempts("evt-1")] == [a.url for a in attempts]


async def test_an_attempt_recorded_again_gets_its_outcome_and_stays_one_attempt(store: Store):
    await deliveries(store).record(Delivery("evt-1", "ci.build", URL, 1, at=A_TIME))
    done = Delivery("evt-1", "ci.build", URL, 1, status_code=200, delivered=True, at=A_TIME)
    await deliveries(store).record(done)

    assert await deliveries(store).attempts("evt-1") == [done]


async def test_deliveries_can_be_filtered_by_event(store: Store):
    for n, event_id in enumerate(["evt-1", "evt-2", "evt-1"]):
        at = A_TIME + timedelta(seconds=n)
        await deliveries(store).record(Delivery(event_id, "order.ready", URL, n + 1, at=at))

    assert [d.attempt for d in await deliveries(store).attempts("evt-1")] == [1, 3]
    assert [d.attempt for d in await deliveries(store).attempts("evt-2")] == [2]
    assert await deliveries(store).attempts("evt-unknown") == []


async def test_an_attempt_is_written_at_once_for_every_store_on_the_storage(on_storage: Storage):
    one, other = on_storage.store(), on_storage.store()

    await deliveries(one).record(Delivery("evt-1", "payment.approved", URL, 1, at=A_TIME))

    assert [d.attempt for d in await deliveries(other).attempts("evt-1")] == [1]


async def test_the_event_log_reads_an_events_delivery_attempts_oldest_first(on_storage: Storage):
    store, event_log = on_storage.store(), on_storage.event_log()
    await deliveries(store).record(
        Delivery("evt-1", "ci.build", URL, 2, error="timed out", at=A_TIME)
    )
    earlier = A_TIME - timedelta(seconds=5)
    await deliveries(store).record(
        Delivery("evt-1", "ci.build", URL, 1, status_code=503, at=earlier)
    )
    await deliveries(store).record(Delivery("evt-2", "ci.build", URL, 1, delivered=True, at=A_TIME))

    assert await event_log.attempts("evt-1") == [
        Attempt(URL, False, earlier, status_code=503),
        Attempt(URL, False, A_TIME, error="timed out"),
    ]
    assert await event_log.attempts("evt-3") == []


async def test_an_older_releases_attempts_in_the_store_file_stay_readable(tmp_path: Path):
    """SQLite: attempts now have a file of their own; those a previous release recorded in the
    store's file are read beside them (repository, endpoint stats, the event log's journey)."""
    url = f"sqlite:///{tmp_path}/hookhub.db"
    store = open_store(url, [SPEC])
    await store.open()
    db = sqlite3.connect(tmp_path / "hookhub.db")
    with db:  # as the previous release wrote it: in the store's file, no endpoint's name
        db.execute(
            "INSERT INTO deliveries (event_id, event_type, url, attempt, status_code, delivered,"
            " at, source) VALUES ('evt-1', 'ci.build', ?, 1, 503, 0, ?, '/s')",
            (URL, "2025-03-01T15:30:12.345+00:00"),
        )
    db.close()
    later = Delivery("evt-1", "ci.build", URL, 2, 200, None, True, A_TIME, "/s", 5.0, "ci")
    await deliveries(store).record(later)
    try:
        found = await deliveries(store).attempts("evt-1", "/s")
        assert [(d.attempt, d.delivered, d.endpoint) for d in found] == [
            (1, False, None),
            (2, True, "ci"),
        ]
        assert deliveries_file(tmp_path / "hookhub.db").exists()
        settings = Settings(store_url=url)
        seen = await attempts_to(settings, "ci", URL, A_TIME - timedelta(days=1))
        assert [a.delivered for a in seen] == [False, True]
        event_log = open_event_log(url)
        try:
            journey = await event_log.attempts("evt-1", "/s")
        finally:
            await event_log.close()
        assert [a.delivered for a in journey] == [False, True]
    finally:
        await store.close()
