"""The payments consumer's repository contract (orders), on each adapter: what its steps read
and what the runtime saves through it."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hookhub_consumers.payments.records import Order, orders
from hookhub_consumers.payments.spec import SPEC
from hookhub_consumers.store import Change, ConcurrentUpdate, Marker, Store
from storages import ADAPTERS, storage

A_TIME = datetime(2025, 3, 1, 15, 30, 12, 345000, tzinfo=UTC)  # millisecond precision, as stored


def marker(event_id: str = "evt-1") -> Marker:
    return Marker.of("payments", "/providers/stripe", event_id)


async def save(store: Store, order: Order, event_id: str = "evt-1") -> bool:
    return await store.save(Change(marker(event_id), order))


@pytest.fixture(params=ADAPTERS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with storage(request.param, tmp_path, [SPEC]) as found:
        yield found.store()


def full_order() -> Order:
    return Order(
        order_id="ord-1",
        status="approved",
        amount=129_90,
        currency="BRL",
        customer={"name": "Ana Souza", "email": "ana@example.com", "address": {"city": "Recife"}},
        items=[{"sku": "MUG-01", "quantity": 2, "price": 4990}, {"sku": "TEE-M", "quantity": 1}],
        provider="mercadopago",
        payment_id="pay-123",
        paid_amount=130_00,
        paid_currency="BRL",
        refunded_amount=10,
        updated_at=A_TIME,
    )


async def test_an_order_round_trips_with_every_field(store: Store):
    assert await save(store, full_order()) is True

    got = await orders(store).get("ord-1")

    expected = full_order()
    expected.version = 1
    assert got == expected
    assert got.updated_at.utcoffset() == timedelta(0)


async def test_an_order_never_saved_is_none(store: Store):
    assert await orders(store).get("nope") is None


async def test_an_order_is_found_by_the_payment_that_paid_it(store: Store):
    await save(store, full_order(), "evt-1")
    await save(store, Order("ord-2", provider="stripe", payment_id="pi_2"), "evt-2")

    assert await orders(store).by_payment("mercadopago", "pay-123") == await orders(store).get(
        "ord-1"
    )
    assert (await orders(store).by_payment("stripe", "pi_2")).order_id == "ord-2"


async def test_a_payment_id_of_another_provider_or_none_saved_finds_no_order(store: Store):
    await save(store, full_order())

    assert await orders(store).by_payment("stripe", "pay-123") is None
    assert await orders(store).by_payment("mercadopago", "pay-999") is None


async def test_an_order_without_a_payment_yet_keeps_its_payment_fields_empty(store: Store):
    await save(store, Order("ord-1", amount=4990, currency="BRL"))

    got = await orders(store).get("ord-1")

    assert (got.paid_amount, got.paid_currency, got.refunded_amount) == (None, None, 0)


async def test_times_come_back_in_utc_to_the_millisecond(store: Store):
    sao_paulo = timezone(timedelta(hours=-3))
    order = Order("ord-1", updated_at=datetime(2025, 3, 1, 12, 30, 12, 345678, tzinfo=sao_paulo))
    await save(store, order)

    got = await orders(store).get("ord-1")

    assert got.updated_at == datetime(2025, 3, 1, 15, 30, 12, 345000, tzinfo=UTC)
    assert got.updated_at.utcoffset() == timedelta(0)


async def test_a_stale_order_is_refused_naming_it(store: Store):
    await save(store, Order("ord-1"), "evt-1")
    first, second = await orders(store).get("ord-1"), await orders(store).get("ord-1")
    first.status = "approved"
    await save(store, first, "evt-2")

    second.status = "declined"
    with pytest.raises(ConcurrentUpdate, match=r"order 'ord-1' was saved by someone else"):
        await save(store, second, "evt-3")

    assert (await orders(store).get("ord-1")).status == "approved"
