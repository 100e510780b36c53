"""The journey of an event the event log's index does not know (accepted before the archive
existed, or past its retention) but the consumers' store does: replayed or parked before the
archive, processed long ago. What the store recorded is shown, with a note that the event itself
is outside the archive; an event known to neither has no journey. On every adapter."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hookhub import specs
from hookhub_consumers.store import Change, Marker
from hookhub_eventlog.journey import OUTSIDE_THE_ARCHIVE, journey, not_in_the_event_log
from hookhub_eventlog.store import Step
from storages import ADAPTERS, Storage, storage

PARKED = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)  # before the archive existed
OLD_ID = "order-w-001"
SOURCE = "/events/storefront"


@pytest.fixture(params=ADAPTERS)
async def on_storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    async with storage(request.param, tmp_path, specs.installed()) as found:
        yield found


async def test_a_replayed_old_parked_event_has_its_steps_and_markers_with_the_note(
    on_storage: Storage,
):
    store, event_log = on_storage.store(), on_storage.event_log()
    await event_log.record(Step(OLD_ID, "notifications", "parked", "endpoint said 400", PARKED))
    later = PARKED + timedelta(days=3)
    await event_log.record(Step(OLD_ID, "notifications", "replayed", "by ana", later))
    await store.save(Change(Marker.of("notifications", SOURCE, OLD_ID)))

    found = await journey(event_log, OLD_ID)

    assert found is not None
    assert found.event is None
    assert found.note == OUTSIDE_THE_ARCHIVE
    assert [(where, what) for _, where, what, _ in found.timeline()] == [
        ("notifications", "parked"),
        ("notifications", "replayed"),
        ("notifications", "processed"),
    ]


async def test_the_markers_of_an_event_outside_the_archive_are_found_by_its_id_alone(
    on_storage: Storage,
):
    store, event_log = on_storage.store(), on_storage.event_log()
    await store.save(Change(Marker.of("payments", SOURCE, OLD_ID)))
    await store.save(Change(Marker.of("payments", SOURCE, "another-id")))

    assert await event_log.marked_sources(OLD_ID) == [SOURCE]
    assert [consumer for consumer, _ in (await journey(event_log, OLD_ID)).processed] == [
        "payments"
    ]


async def test_an_event_neither_the_archive_nor_the_store_knows_has_no_journey(
    on_storage: Storage,
):
    assert await journey(on_storage.event_log(), "never-seen") is None


def test_not_finding_an_event_says_what_the_archive_keeps():
    assert not_in_the_event_log("order-w-001") == (
        "no event with id 'order-w-001' in the event log: the event log keeps the events "
        "archived since the archive was enabled, for its retention (HOOKHUB_ARCHIVE_MAX_AGE); "
        "older events are outside it"
    )
