"""The notifications consumer's repository contract (delivery attempts), on each adapter.

An attempt is written outside any marker, at once (before the POST, and again with its answer):
the repository's own write, not the runtime's. The event log reads the attempts too.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hookhub_consumers.notifications.records import Delivery, deliveries
from hookhub_consumers.notifications.spec import SPEC
from hookhub_consumers.store import Store
from hookhub_eventlog.store import Attempt
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
