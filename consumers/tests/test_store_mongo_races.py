"""Races on the MongoDB store, on the interleaving stand-in: every call suspends a random number
of times (from a seed), so two processes' writes of one marker overlap in as many orders as there
are seeds. A marker is unique across the whole store, as SQLite's primary key makes it: of two
writes of one marker, in any interleaving, exactly one wins.
"""

import asyncio
import uuid

import pytest
from hookhub_consumers.payments.records import Order
from hookhub_consumers.payments.store_mongo import MongoOrders
from hookhub_consumers.production.records import Ticket
from hookhub_consumers.production.store_mongo import MongoTickets
from hookhub_consumers.store import Change, Marker, Store
from hookhub_consumers.store.mongo import MongoStore

from tests.support.mongo_standin import StandinClient

SEEDS = range(100)  # each a different order of the two writes' calls
MARKER = Marker.of("payments", "/providers/stripe", "evt-1")
REPOSITORIES = {"payments": MongoOrders, "production": MongoTickets}


def two_stores(seed: int) -> tuple[Store, Store]:
    database = StandinClient(seed)[f"hookhub_test_{uuid.uuid4().hex}"]
    # Two stores on one database, as two processes; the stand-in's duck type for AsyncDatabase.
    return (
        MongoStore(database, repositories=REPOSITORIES),  # type: ignore[arg-type]
        MongoStore(database, repositories=REPOSITORIES),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_save_and_a_mark_of_one_marker_at_once_let_exactly_one_win(seed: int):
    one, other = two_stores(seed)

    results = await asyncio.gather(
        one.save(Change(MARKER, Order("ord-1"))), other.mark_processed(MARKER)
    )

    assert sorted(results) == [False, True]


@pytest.mark.parametrize("seed", SEEDS)
async def test_two_saves_of_one_marker_to_two_records_at_once_let_exactly_one_win(seed: int):
    one, other = two_stores(seed)

    results = await asyncio.gather(
        one.save(Change(MARKER, Order("ord-1"))), other.save(Change(MARKER, Ticket("ord-1")))
    )

    assert sorted(results) == [False, True]


@pytest.mark.parametrize("seed", SEEDS)
async def test_two_marks_of_one_marker_at_once_let_exactly_one_win(seed: int):
    one, other = two_stores(seed)

    results = await asyncio.gather(one.mark_processed(MARKER), other.mark_processed(MARKER))

    assert sorted(results) == [False, True]
