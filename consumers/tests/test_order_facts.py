"""An order's facts are written once (issue 20): the payments steps, applied as the runtime
applies them, over a real SQLite store (the harness of `test_saga_steps`)."""

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from hookhub.events import Event
from hookhub_consumers.payments import steps as payments
from hookhub_consumers.payments.records import orders
from hookhub_consumers.production import steps as production
from hookhub_consumers.store import Store, open_store
from test_saga_steps import Saga, order, stripe


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:///{tmp_path}/hookhub.db")
    yield store
    await store.close()


@pytest.fixture
async def saga(store: Store) -> AsyncIterator[Saga]:
    async with httpx.AsyncClient() as http:
        yield Saga("payments", payments.STEPS, store, http)


def amended(amount: int, order_id: str = "ord-1", email: str = "ana@example.com") -> Event:
    customer = {"id": "c1", "email": email, "name": "Ana"}
    data = {"order_id": order_id, "customer": customer, "items": [], "amount": amount}
    body = json.dumps(data | {"currency": "BRL"}).encode()
    return Event(uuid.uuid4().hex, "/events/storefront", "order.amended", body)


async def test_order_created_with_other_details_is_refused_and_announced(saga, store):
    await saga.send(order(amount=499000))
    rewrite = order(amount=1)

    emitted = await saga.send(rewrite)

    assert emitted["order.conflict"] == {
        "order_id": "ord-1",
        "refused": {"id": rewrite.id, "source": "/events/storefront", "type": "order.created"},
        "reason": payments.OTHER_DETAILS,
        "status": "pending",
        "amount": 499000,
        "currency": "BRL",
    }
    assert (await orders(store).get("ord-1")).amount == 499000
    assert "payment.approved" not in await saga.send(stripe(amount=1))


async def test_the_same_order_created_again_is_a_no_op(saga, store):
    await saga.send(order())
    saved = await orders(store).get("ord-1")

    assert await saga.send(order(currency="brl")) == {}  # a currency's case is not news
    assert await orders(store).get("ord-1") == saved


async def test_an_order_created_after_its_payment_still_settles_it(saga, store):
    await saga.send(stripe())

    emitted = await saga.send(order())

    assert "payment.approved" in emitted


async def test_an_amendment_of_a_pending_order_applies_and_keeps_its_deadline(saga, store):
    await saga.send(order(amount=4990))

    assert await saga.send(amended(3990)) == {}  # no new deadline, nothing announced
    assert (await orders(store).get("ord-1")).amount == 3990
    assert "payment.approved" in await saga.send(stripe(amount=3990))


async def test_an_amendment_of_a_paid_order_is_refused_and_announced(saga, store):
    await saga.send(order(amount=4990))
    await saga.send(stripe(amount=4990))

    emitted = await saga.send(amended(1))

    conflict = emitted["order.conflict"]
    assert conflict["reason"] == "the order is approved: only an unpaid order can be amended"
    got = await orders(store).get("ord-1")
    assert (got.status, got.amount) == ("approved", 4990)


async def test_an_amendment_before_its_order_waits_for_it(saga):
    with pytest.raises(payments.Retry, match="has not been created yet"):
        await saga.send(amended(3990))


def test_production_keeps_its_facts_too():
    # What holds already: a second approval queues nothing, and only a queued or overdue ticket
    # becomes ready.
    assert production.TRANSITIONS["payment.approved"][0] == {None}
    assert production.TRANSITIONS["production.finished"][0] == {"queued", "overdue"}
