"""The saga's handler steps, applied as the runtime applies them but without a broker: the step,
then its state, marker and follow-ups saved together in a real (SQLite) store. What a step
emitted is what the runtime would publish."""

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hookhub.events import Event
from hookhub.settings import Settings
from hookhub.topology import binding_matches
from hookhub_consumers.handler import Context, Steps
from hookhub_consumers.outbox import time_left_s
from hookhub_consumers.payments import steps as payments
from hookhub_consumers.payments.records import orders
from hookhub_consumers.production import steps as production
from hookhub_consumers.production.records import tickets
from hookhub_consumers.retries import Permanent
from hookhub_consumers.store import Change, Marker, Store, open_store
from prometheus_client import REGISTRY

ORDER_PAYMENT_TIMEOUT_S = 60.0
PAYMENT_ORDER_TIMEOUT_S = 30.0
PRODUCTION_TIMEOUT_S = 90.0


class Saga:
    """One consumer's steps over one store."""

    def __init__(self, name: str, steps: Steps, store: Store, http: httpx.AsyncClient) -> None:
        settings = Settings(
            order_payment_timeout_s=ORDER_PAYMENT_TIMEOUT_S,
            payment_order_timeout_s=PAYMENT_ORDER_TIMEOUT_S,
            production_timeout_s=PRODUCTION_TIMEOUT_S,
        )
        self.steps = steps
        self.context = Context(settings, store, http, name)

    async def send(self, event: Event) -> dict[str, dict[str, Any]]:
        """Handle `event`; the events it emitted (saved, so published), by type, with their data
        (a deadline's delay as `delay_s` in it)."""
        step = next(s for key, s in self.steps.items() if binding_matches(key, event.type))
        outcome = await step(event, self.context)
        marker = Marker.of(self.context.consumer, event.source, event.id)
        outbox = tuple(e.to_json() for e in outcome.emit)
        if not await self.context.store.save(Change(marker, outcome.state, outbox)):
            return {}
        if outcome.on_saved is not None:
            outcome.on_saved()
        return {
            e.type: json.loads(e.data) | ({"delay_s": e.delay_s} if e.delay_s else {})
            for e in outcome.emit
        }


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:///{tmp_path}/hookhub.db")
    yield store
    await store.close()


@pytest.fixture
async def saga(store: Store) -> AsyncIterator[Saga]:
    async with httpx.AsyncClient() as http:
        yield Saga("payments", payments.STEPS, store, http)


@pytest.fixture
async def workshop(store: Store) -> AsyncIterator[Saga]:
    async with httpx.AsyncClient() as http:
        yield Saga("production", production.STEPS, store, http)


def event(type: str, data: dict, source: str = "/tests") -> Event:
    return Event(uuid.uuid4().hex, source, type, json.dumps(data).encode())


def order(order_id: str = "ord-1", amount: int = 4990, currency: str = "BRL") -> Event:
    customer = {"id": "c1", "email": "ana@example.com", "name": "Ana"}
    data = {"order_id": order_id, "customer": customer, "items": [], "amount": amount}
    return event("order.created", data | {"currency": currency}, "/events/storefront")


def stripe(
    type: str = "payment_intent.succeeded",
    order_id: str | None = "ord-1",
    amount: int = 4990,
    currency: str = "brl",
    **fields: Any,
) -> Event:
    metadata = {"order_id": order_id} if order_id else {}
    obj = {"id": "pi_1", "amount": amount, "amount_received": amount, "currency": currency}
    if type == "charge.refunded":
        obj = {"id": "ch_1", "payment_intent": "pi_1", "amount_refunded": amount, **obj}
    if type.startswith("charge.dispute."):
        obj = {"id": "dp_1", "charge": "ch_1", "payment_intent": "pi_1", "amount": amount}
    body = {"type": type, "data": {"object": {**obj, "metadata": metadata, **fields}}}
    return event(f"stripe.{type}", body, "/webhooks/stripe")


def due(deadline_type: str, order_id: str = "ord-1") -> Event:
    return event(deadline_type, {"order_id": order_id}, "/consumers/payments")


# Reconciliation


async def test_the_exact_amount_approves_the_order_with_nothing_overpaid(saga, store):
    await saga.send(order())

    emitted = await saga.send(stripe())

    assert emitted["payment.approved"] | {"customer": None} == {
        "order_id": "ord-1",
        "provider": "stripe",
        "payment_id": "pi_1",
        "amount": 4990,
        "currency": "BRL",
        "customer": None,
        "version": 2,
        "overpaid": 0,
    }
    got = await orders(store).get("ord-1")
    assert (got.status, got.paid_amount, got.paid_currency) == ("approved", 4990, "BRL")


async def test_overpayment_approves_and_says_by_how_much(saga):
    await saga.send(order(amount=4990))

    emitted = await saga.send(stripe(amount=5500))

    assert emitted["payment.approved"]["overpaid"] == 510


async def test_a_short_amount_is_mismatched_with_both_amounts_and_never_approved(saga, store):
    await saga.send(order(amount=4990))

    emitted = await saga.send(stripe(amount=1))

    assert list(emitted) == ["payment.mismatched"]
    assert {
        k: emitted["payment.mismatched"][k]
        for k in ("amount", "currency", "order_amount", "order_currency", "reason")
    } == {
        "amount": 1,
        "currency": "BRL",
        "order_amount": 4990,
        "order_currency": "BRL",
        "reason": "paid 1, the order is 4990 (BRL minor units)",
    }
    assert (await orders(store).get("ord-1")).status == "mismatched"


async def test_another_currency_is_mismatched_whatever_the_amount(saga):
    await saga.send(order(amount=4990, currency="BRL"))

    emitted = await saga.send(stripe(amount=1_000_000, currency="usd"))

    assert emitted["payment.mismatched"]["reason"] == "paid in USD, the order is in BRL"


async def test_a_mismatch_stays_one_when_the_right_money_comes_later(saga):
    await saga.send(order())
    await saga.send(stripe(amount=1))

    assert await saga.send(stripe(amount=4990)) == {}


# Payment before order


async def test_a_payment_before_its_order_is_held_silently_and_waits_for_it(saga, store):
    emitted = await saga.send(stripe())

    assert emitted == {
        "deadline.payment_order": {"order_id": "ord-1", "delay_s": PAYMENT_ORDER_TIMEOUT_S}
    }
    held = await orders(store).get("ord-1")
    assert (held.status, held.amount, held.paid_amount) == ("held", None, 4990)


async def test_payment_then_order_ends_as_order_then_payment_does(saga, store):
    await saga.send(stripe(order_id="early"))
    early = await saga.send(order("early"))
    await saga.send(order("late"))
    late = await saga.send(stripe(order_id="late"))

    assert list(early) == list(late) == ["payment.approved"]
    first, second = await orders(store).get("early"), await orders(store).get("late")
    for field in ("status", "amount", "currency", "paid_amount", "paid_currency", "version"):
        assert getattr(first, field) == getattr(second, field), field


async def test_a_short_payment_before_its_order_is_mismatched_when_the_order_comes(saga):
    await saga.send(stripe(amount=100))

    emitted = await saga.send(order(amount=4990))

    assert emitted["payment.mismatched"]["order_amount"] == 4990


async def test_a_held_payment_whose_order_never_comes_is_surfaced_once(saga, store):
    await saga.send(stripe())
    before = _order_missing_count()

    emitted = await saga.send(due("deadline.payment_order"))

    assert emitted["payment.order_missing"]["amount"] == 4990
    assert (await orders(store).get("ord-1")).status == "order_missing"
    assert _order_missing_count() == before + 1
    assert await saga.send(due("deadline.payment_order")) == {}  # another firing: nothing


async def test_an_order_that_comes_after_its_payment_was_surfaced_is_still_approved(saga):
    await saga.send(stripe())
    await saga.send(due("deadline.payment_order"))

    assert "payment.approved" in await saga.send(order())


async def test_the_held_payments_deadline_after_its_order_came_does_nothing(saga, store):
    await saga.send(stripe())
    await saga.send(order())

    assert await saga.send(due("deadline.payment_order")) == {}
    assert (await orders(store).get("ord-1")).status == "approved"


# Deadlines


async def test_a_new_order_sets_its_payment_deadline(saga):
    emitted = await saga.send(order())

    assert emitted == {
        "deadline.order_payment": {"order_id": "ord-1", "delay_s": ORDER_PAYMENT_TIMEOUT_S}
    }


async def test_an_unpaid_order_expires_when_its_deadline_comes(saga, store):
    await saga.send(order())

    emitted = await saga.send(due("deadline.order_payment"))

    assert emitted["order.expired"] | {"customer": None} == {
        "order_id": "ord-1",
        "amount": 4990,
        "currency": "BRL",
        "customer": None,
        "version": 2,
    }
    assert (await orders(store).get("ord-1")).status == "expired"


async def test_a_declined_order_expires_too(saga):
    await saga.send(order())
    await saga.send(stripe("payment_intent.payment_failed"))

    assert "order.expired" in await saga.send(due("deadline.order_payment"))


async def test_the_payment_deadline_of_a_paid_order_does_nothing(saga, store):
    await saga.send(order())
    await saga.send(stripe())

    assert await saga.send(due("deadline.order_payment")) == {}
    assert (await orders(store).get("ord-1")).status == "approved"


async def test_money_for_an_expired_order_is_mismatched_and_says_why(saga):
    await saga.send(order())
    await saga.send(due("deadline.order_payment"))

    emitted = await saga.send(stripe())

    assert emitted["payment.mismatched"]["reason"] == "the order had expired"


# Duplicates, reordering and compensation


async def test_a_second_approval_of_the_same_payment_changes_nothing(saga, store):
    await saga.send(order())
    await saga.send(stripe("payment_intent.succeeded"))

    again = stripe("checkout.session.completed", amount_total=4990, payment_status="paid")
    assert await saga.send(again) == {}
    assert (await orders(store).get("ord-1")).version == 2


async def test_another_card_after_a_decline_approves(saga):
    await saga.send(order())
    assert "payment.declined" in await saga.send(stripe("payment_intent.payment_failed"))

    assert "payment.approved" in await saga.send(stripe())


async def test_a_refund_that_overtook_its_approval_wins(saga, store):
    await saga.send(order())
    await saga.send(stripe("charge.refunded"))

    assert await saga.send(stripe()) == {}
    assert (await orders(store).get("ord-1")).status == "refunded"


async def test_a_partial_refund_is_announced_and_the_order_stays_approved(saga, store):
    await saga.send(order())
    await saga.send(stripe())

    emitted = await saga.send(stripe("charge.refunded", amount=1000, refunded=False))

    assert list(emitted) == ["payment.partially_refunded"]
    assert emitted["payment.partially_refunded"]["refunded_amount"] == 1000
    got = await orders(store).get("ord-1")
    assert (got.status, got.refunded_amount) == ("approved", 1000)


async def test_refunds_that_add_up_to_the_payment_are_a_full_refund(saga, store):
    await saga.send(order())
    await saga.send(stripe())
    await saga.send(stripe("charge.refunded", amount=1000, refunded=False))

    emitted = await saga.send(stripe("charge.refunded", amount=4990, refunded=True))

    assert emitted["payment.refunded"]["refunded_amount"] == 4990
    assert (await orders(store).get("ord-1")).status == "refunded"


async def test_a_dispute_finds_its_order_by_the_payment_and_charges_it_back(saga, store):
    await saga.send(order())
    await saga.send(stripe())

    emitted = await saga.send(stripe("charge.dispute.created", order_id=None))

    assert emitted["payment.charged_back"]["order_id"] == "ord-1"
    assert (await orders(store).get("ord-1")).status == "charged_back"
    assert await saga.send(stripe("charge.dispute.funds_withdrawn", order_id=None)) == {}


async def test_a_dispute_of_a_payment_no_order_had_is_permanent_and_says_so(saga):
    with pytest.raises(Permanent, match="no order was paid by stripe payment pi_1"):
        await saga.send(stripe("charge.dispute.created", order_id=None))


# Production


async def test_a_queued_ticket_sets_its_deadline_and_becomes_overdue_when_it_comes(workshop):
    emitted = await workshop.send(event("payment.approved", {"order_id": "ord-1"}))

    assert emitted["deadline.production"] == {"order_id": "ord-1", "delay_s": PRODUCTION_TIMEOUT_S}
    overdue = await workshop.send(due("deadline.production"))
    assert overdue == {"production.overdue": {"order_id": "ord-1"}}
    assert "order.ready" in await workshop.send(event("production.finished", {"order_id": "ord-1"}))


async def test_the_production_deadline_of_a_finished_ticket_does_nothing(workshop, store):
    await workshop.send(event("payment.approved", {"order_id": "ord-1"}))
    await workshop.send(event("production.finished", {"order_id": "ord-1"}))

    assert await workshop.send(due("deadline.production")) == {}
    assert (await tickets(store).get("ord-1")).status == "ready"


async def test_a_chargeback_cancels_a_ready_ticket_and_says_why(workshop):
    await workshop.send(event("payment.approved", {"order_id": "ord-1"}))
    await workshop.send(event("production.finished", {"order_id": "ord-1"}))

    emitted = await workshop.send(event("payment.charged_back", {"order_id": "ord-1"}))

    assert emitted == {
        "production.cancelled": {"order_id": "ord-1", "reason": "payment charged back"}
    }


def _order_missing_count() -> float:
    return REGISTRY.get_sample_value("hookhub_payments_order_missing_total") or 0.0


# A deadline published late


def test_a_deadline_published_late_waits_only_what_is_left_of_it():
    set_at = datetime(2026, 1, 1, tzinfo=UTC)
    deadline = Event(
        "d", "/consumers/payments", "deadline.order_payment", b"{}", time=set_at, delay_s=60
    )

    assert time_left_s(deadline, set_at + timedelta(seconds=15)) == 45
    assert time_left_s(deadline, set_at + timedelta(hours=1)) == 0  # overdue: due at once
