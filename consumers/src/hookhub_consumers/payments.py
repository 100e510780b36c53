"""payments: keeps each order's payment state and turns providers' webhooks into payment events.

order.created              → the order's details (status pending, unless a payment came first)
<provider>.<type> webhooks → normalised (payment_providers) → payment.approved|declined|refunded
"""

from dataclasses import replace
from datetime import UTC, datetime

from hookhub import contracts
from hookhub.contracts import OrderCreated
from hookhub.events import Event
from hookhub.providers import PROVIDERS

from hookhub_consumers import payment_providers
from hookhub_consumers.contract import Context, Outcome, Steps, emitted, event_json
from hookhub_consumers.mercadopago import MercadoPagoClient, ProviderUnavailable
from hookhub_consumers.records import Order, PaymentStatus
from hookhub_consumers.retries import Permanent, Retry

# Which payment outcome may follow which state; anything else is stale or repeated and ignored.
TRANSITIONS: dict[PaymentStatus, set[str]] = {
    "pending": {"approved", "declined", "refunded"},
    # A refund is final from any state: one that overtook the approval of a second card must
    # still win over that approval when it arrives late.
    "declined": {"approved", "refunded"},
    "approved": {"refunded"},
    "refunded": set(),
}


def next_status(current: PaymentStatus, outcome: str) -> PaymentStatus | None:
    """The order's new payment status after `outcome`, or None when it changes nothing."""
    return outcome if outcome in TRANSITIONS[current] else None  # type: ignore[return-value]


async def order_created(event: Event, ctx: Context) -> Outcome:
    """Keep what the storefront says of the order."""
    try:
        created = contracts.parse(OrderCreated, event.type, event.data)
    except contracts.ContractViolation as exc:  # hub-api refuses it; a publisher went around
        raise Permanent(str(exc)) from None
    order = await ctx.store.get_order(created.order_id) or Order(created.order_id)
    # A payment may have arrived first: keep its status, add what the storefront knows.
    updated = replace(
        order,
        customer=created.customer,
        items=created.items,
        amount=created.amount,
        currency=created.currency,
        updated_at=datetime.now(UTC),
    )
    return Outcome(state=updated)


async def provider_webhook(event: Event, ctx: Context) -> Outcome:
    """Turn a payment provider's webhook into the order's payment outcome."""
    provider, _, provider_type = event.type.partition(".")
    payload = event_json(event)
    try:
        payment_id = payment_providers.needs_fetch(provider, payload)
        if payment_id is not None:
            resource = await _mercadopago(ctx).get_payment(payment_id)
            update = payment_providers.normalise_mercadopago_payment(resource)
        else:
            update = payment_providers.normalise(provider, provider_type, payload)
    except ProviderUnavailable as exc:
        raise Retry(str(exc)) from None
    except payment_providers.UnusablePayload as exc:
        raise Permanent(f"{event.type}: {exc}") from None
    if update is None:  # not about a payment outcome (e.g. payment_intent.created)
        return Outcome()
    order = await ctx.store.get_order(update.order_id) or Order(update.order_id)
    status = next_status(order.status, update.outcome)
    if status is None:
        return Outcome()
    paid = replace(
        order,
        status=status,
        provider=update.provider,
        payment_id=update.payment_id,
        amount=order.amount if order.amount is not None else update.amount,
        currency=order.currency or update.currency,
        updated_at=datetime.now(UTC),
    )
    payment_event = emitted(
        event,
        ctx.consumer,
        f"payment.{status}",
        {
            "order_id": paid.order_id,
            "provider": update.provider,
            "payment_id": update.payment_id,
            "amount": update.amount,
            "currency": update.currency,
            "customer": paid.customer,
            # The order's version once this is saved: notifications may arrive out of order
            # (retries, parallel deliveries), and a receiver keeps the highest.
            "version": order.version + 1,
        },
    )
    return Outcome(state=paid, emit=[payment_event])


def _mercadopago(ctx: Context) -> MercadoPagoClient:
    token = ctx.settings.mercadopago_access_token
    if token is None:
        raise Retry("HOOKHUB_MERCADOPAGO_ACCESS_TOKEN is not set: cannot fetch the payment")
    return MercadoPagoClient(
        ctx.settings.mercadopago_api_url,
        token.get_secret_value(),
        ctx.settings.notify_timeout_s,
        http=ctx.http,  # the process's one pooled client
    )


# One step per binding of the payments queue (topology.CONSUMER_BINDINGS, checked by a test).
STEPS: Steps = {
    "order.created": order_created,
    **{f"{p.name}.#": provider_webhook for p in PROVIDERS.values() if p.payment},
}
