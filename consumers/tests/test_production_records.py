"""The production consumer's repository contract (tickets), on each adapter."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hookhub_consumers.production.records import Ticket, tickets
from hookhub_consumers.production.spec import SPEC
from hookhub_consumers.store import Change, ConcurrentUpdate, Marker, Store
from storages import ADAPTERS, storage

A_TIME = datetime(2025, 3, 1, 15, 30, 12, 345000, tzinfo=UTC)  # millisecond precision, as stored


def marker(event_id: str = "evt-1") -> Marker:
    return Marker.of("production", "/consumers/payments", event_id)


@pytest.fixture(params=ADAPTERS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with storage(request.param, tmp_path, [SPEC]) as found:
        yield found.store()


async def test_a_ticket_round_trips_with_every_field(store: Store):
    ticket = Ticket("ord-1", status="ready", updated_at=A_TIME)
    assert await store.save(Change(marker(), ticket)) is True

    got = await tickets(store).get("ord-1")

    assert got == Ticket("ord-1", status="ready", version=1, updated_at=A_TIME)
    assert got.updated_at.utcoffset() == timedelta(0)


async def test_a_ticket_never_saved_is_none(store: Store):
    assert await tickets(store).get("nope") is None


async def test_a_second_ticket_for_one_order_is_refused_naming_it(store: Store):
    await store.save(Change(marker("evt-1"), Ticket("ord-1", status="queued")))

    with pytest.raises(ConcurrentUpdate, match=r"ticket 'ord-1' was saved by someone else"):
        await store.save(Change(marker("evt-2"), Ticket("ord-1", status="cancelled")))

    stored = await tickets(store).get("ord-1")
    assert (stored.status, stored.version) == ("queued", 1)
