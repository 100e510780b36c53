"""payments: each order's payment state, from the storefront's orders and the providers' webhooks.

order.created              → the order is pending (its payment deadline set), or the payment
                             held for it is reconciled now; an order's facts are written once: the
                             same order sent again changes nothing, one with other details is
                             refused and announced → order.conflict
order.amended              → a pending (or declined) order's new details, reconciled again with
                             any payment it has; refused for an order past that → order.conflict
<provider>.<type> webhooks → normalised (payment_providers), reconciled with the order
                             (reconciliation) → payment.approved | mismatched | declined | refunded
                             | partially_refunded | charged_back; held when the order is not known
deadline.order_payment     → an order still unpaid expires → order.expired
deadline.payment_order     → a payment still without its order is surfaced → payment.order_missing

Where the saga can go is one table, TRANSITIONS; the steps below turn an event into what happened
to the order, ask the table, and say what to save, announce and wait for.
"""

from dataclasses import replace
from datetime import UTC, datetime
from typing import Literal, TypeVar

from hookhub import contracts
from hookhub.contracts import Contract, OrderAmended, OrderCreated
from hookhub.events import Event
from hookhub.providers import PROVIDERS
from prometheus_client import Counter

from hookhub_consumers.handler import (
    Context,
    Outcome,
    Steps,
    deadline,
    emitted,
    event_json,
    order_id_of,
)
from hookhub_consumers.payments import providers as payment_providers
from hookhub_consumers.payments.mercadopago import MercadoPagoClient, ProviderUnavailable
from hookhub_consumers.payments.providers import PaymentUpdate
from hookhub_consumers.payments.reconciliation import Verdict, reconcile, refund_is_partial
from hookhub_consumers.payments.records import Order, Orders, PaymentStatus
from hookhub_consumers.payments.spec import SPEC
from hookhub_consumers.retries import Permanent, Retry

C = TypeVar("C", bound=Contract)

ORDER_MISSING = Counter(
    "hookhub_payments_order_missing_total",
    "Payments held for an order that had not arrived within HOOKHUB_PAYMENT_ORDER_TIMEOUT_S",
)

# What happened to an order: the table's inputs.
Happening = Literal[
    "order",  # order.created, and no payment is waiting for it
    "amended",  # order.amended: the storefront changed an order nobody has paid yet
    "paid",  # money that settles the order (reconciliation.reconcile)
    "mismatch",  # money that does not: short, or in another currency
    "paid_early",  # money approved for an order not created yet: held until it is
    "declined",
    "refunded",  # refunds now add up to the whole payment (or the provider did not say how much)
    "partly_refunded",  # refunds so far leave part of the payment with the merchant
    "charged_back",  # a dispute or chargeback took the money back
    "payment_due",  # deadline.order_payment: the order's time to be paid is up
    "order_due",  # deadline.payment_order: a held payment's time to meet its order is up
]

# (the order's status, what happened) → (its new status, the event that announces it, if any).
# None is an order not saved yet. Whatever is not here changes nothing: a repeat, a stale or
# reordered event, a deadline that fires after the order moved on.
TRANSITIONS: dict[tuple[PaymentStatus | None, Happening], tuple[PaymentStatus, str | None]] = {
    (None, "order"): ("pending", None),
    ("pending", "paid"): ("approved", "payment.approved"),
    ("pending", "mismatch"): ("mismatched", "payment.mismatched"),
    ("pending", "declined"): ("declined", "payment.declined"),
    ("pending", "payment_due"): ("expired", "order.expired"),
    # The storefront may change an order while no money settled it (order.amended); its
    # deadline stays. Past that, an amendment is refused (order_amended).
    ("pending", "amended"): ("pending", None),
    ("declined", "amended"): ("declined", None),
    # The customer may pay with another card until the deadline.
    ("declined", "paid"): ("approved", "payment.approved"),
    ("declined", "mismatch"): ("mismatched", "payment.mismatched"),
    ("declined", "payment_due"): ("expired", "order.expired"),
    # Money for an order that expired settles nothing: a person refunds it or revives the order.
    ("expired", "paid"): ("mismatched", "payment.mismatched"),
    ("expired", "mismatch"): ("mismatched", "payment.mismatched"),
    # A payment before its order is held, said nothing of, and reconciled once the order comes.
    (None, "paid_early"): ("held", None),
    ("held", "paid"): ("approved", "payment.approved"),
    ("held", "mismatch"): ("mismatched", "payment.mismatched"),
    ("held", "order_due"): ("order_missing", "payment.order_missing"),
    ("order_missing", "paid"): ("approved", "payment.approved"),
    ("order_missing", "mismatch"): ("mismatched", "payment.mismatched"),
    # Compensation: production cancels on payment.refunded and payment.charged_back. A partial
    # refund is announced, and production goes on: the customer keeps the goods.
    ("approved", "refunded"): ("refunded", "payment.refunded"),
    ("approved", "partly_refunded"): ("approved", "payment.partially_refunded"),
    ("approved", "charged_back"): ("charged_back", "payment.charged_back"),
    ("mismatched", "refunded"): ("refunded", "payment.refunded"),
    ("mismatched", "partly_refunded"): ("mismatched", "payment.partially_refunded"),
    ("mismatched", "charged_back"): ("charged_back", "payment.charged_back"),
    ("order_missing", "refunded"): ("refunded", "payment.refunded"),
    ("order_missing", "charged_back"): ("charged_back", "payment.charged_back"),
    # A refund or chargeback is final from any state: one that overtook the approval (of a second
    # card, say) must still win over that approval when it arrives late. Before the order is
    # known there is nothing to announce or undo.
    ("pending", "refunded"): ("refunded", "payment.refunded"),
    ("pending", "charged_back"): ("charged_back", "payment.charged_back"),
    ("declined", "refunded"): ("refunded", "payment.refunded"),
    ("declined", "charged_back"): ("charged_back", "payment.charged_back"),
    (None, "refunded"): ("refunded", None),
    (None, "charged_back"): ("charged_back", None),
    ("held", "refunded"): ("refunded", None),
    ("held", "charged_back"): ("charged_back", None),
}
# Entering a status sets its deadline (the setting holding its delay is the spec's).
DEADLINES: dict[PaymentStatus, str] = {
    "pending": "deadline.order_payment",
    "held": "deadline.payment_order",
}
# What a deadline, once due, says happened.
DEADLINE_HAPPENINGS: dict[str, Happening] = {
    "deadline.order_payment": "payment_due",
    "deadline.payment_order": "order_due",
}
EXPIRED_REASON = "the order had expired"
# What payments announces when it refuses to rewrite an order.
CONFLICT = "order.conflict"
OTHER_DETAILS = (
    "the order exists with other details; an order's facts are not rewritten: send "
    "order.amended to change an unpaid order"
)


def next_status(
    current: PaymentStatus | None, happening: Happening
) -> tuple[PaymentStatus, str | None] | None:
    """The order's new status and the event announcing it, or None when nothing changes."""
    return TRANSITIONS.get((current, happening))


def settling(order: Order) -> tuple[Happening, Verdict]:
    """What the payment recorded on a known order amounts to, and the reconciliation's verdict."""
    assert order.amount is not None and order.currency is not None
    verdict = reconcile(order.amount, order.currency, order.paid_amount, order.paid_currency)
    return ("paid" if verdict.settles else "mismatch"), verdict


async def order_created(event: Event, ctx: Context) -> Outcome:
    """Keep what the storefront says of the order; settle a payment that came first. An order's
    facts are written once: the same order again changes nothing, other details are refused
    (order.conflict)."""
    created = _contract(OrderCreated, event)
    orders: Orders = ctx.records
    saved = await orders.get(created.order_id)
    if saved is not None and saved.amount is not None:  # its order.created was applied
        if _details(saved) == _details(created):
            return Outcome()  # the same order sent again (a resend, a new event id)
        return _conflict(event, ctx, saved, OTHER_DETAILS)
    order = _with_details(saved or Order(created.order_id), created)
    current = saved.status if saved else None
    if current in ("held", "order_missing"):
        happening, verdict = settling(order)
        return _move(event, ctx, current, order, happening, verdict)
    # Saved even when its status stays (one whose payment was refunded before it came): the
    # storefront's details are news.
    return _move(event, ctx, current, order, "order") or Outcome(state=order)


async def order_amended(event: Event, ctx: Context) -> Outcome:
    """Change an unpaid order's details, as the storefront says, and reconcile it again with any
    payment it has; refused (order.conflict) once the order is past unpaid."""
    amended = _contract(OrderAmended, event)
    orders: Orders = ctx.records
    saved = await orders.get(amended.order_id)
    if saved is None or saved.amount is None:
        # Sent after its order.created, but a retry of that may still be on its way.
        raise Retry(f"order.amended: order {amended.order_id} has not been created yet")
    if _details(saved) == _details(amended):
        return Outcome()  # already so: a repeat
    if next_status(saved.status, "amended") is None:
        reason = f"the order is {saved.status}: only an unpaid order can be amended"
        return _conflict(event, ctx, saved, reason)
    order = _with_details(saved, amended)
    if order.paid_amount is not None:  # money already recorded may settle the new amount
        happening, verdict = settling(order)
        moved = _move(event, ctx, saved.status, order, happening, verdict)
        if moved is not None:
            return moved
    return _move(event, ctx, saved.status, order, "amended") or Outcome()


def _contract(contract: type[C], event: Event) -> C:
    try:
        return contracts.parse(contract, event.type, event.data)
    except contracts.ContractViolation as exc:  # hub-api refuses it; a publisher went around
        raise Permanent(str(exc)) from None


def _details(order: Order | OrderCreated) -> tuple:
    """What the storefront says of an order, as payments keeps it."""
    currency = order.currency.upper() if order.currency is not None else None
    return (order.customer, order.items, order.amount, currency)


def _with_details(order: Order, sent: OrderCreated) -> Order:
    return replace(
        order,
        customer=sent.customer,
        items=sent.items,
        amount=sent.amount,
        currency=sent.currency.upper(),
        updated_at=datetime.now(UTC),
    )


def _conflict(cause: Event, ctx: Context, order: Order, reason: str) -> Outcome:
    """The refusal announced, naming the refused event and the order as it stays. The order's
    facts and status are saved as they were: the store keeps follow-ups only with a record's
    change (the outbox rides on the order), so only its version moves."""
    data = {
        "order_id": order.order_id,
        "refused": {"id": cause.id, "source": cause.source, "type": cause.type},
        "reason": reason,
        "status": order.status,
        "amount": order.amount,
        "currency": order.currency,
    }
    return Outcome(state=order, emit=[emitted(cause, ctx.consumer, CONFLICT, data)])


async def provider_webhook(event: Event, ctx: Context) -> Outcome:
    """Turn a payment provider's webhook into what happened to the order's payment."""
    update = await _payment_update(event, ctx)
    if update is None:  # not about a payment outcome (e.g. payment_intent.created)
        return Outcome()
    orders: Orders = ctx.records
    if update.order_id is not None:
        saved = await orders.get(update.order_id)
    else:
        saved = await orders.by_payment(update.provider, update.payment_id)
        if saved is None:
            raise Permanent(
                f"{event.type}: names no order, and no order was paid by {update.provider} "
                f"payment {update.payment_id}"
            )
    current = saved.status if saved else None
    order, happening, verdict = applying(saved or Order(str(update.order_id)), update)
    return _move(event, ctx, current, order, happening, verdict, update) or Outcome()


def applying(order: Order, update: PaymentUpdate) -> tuple[Order, Happening, Verdict | None]:
    """The order with the update's facts recorded, what the update amounts to for it, and the
    reconciliation's verdict when it is money to check against a known order."""
    order = replace(
        order,
        provider=update.provider,
        payment_id=update.payment_id,
        updated_at=datetime.now(UTC),
    )
    if update.outcome == "approved":
        order = replace(order, paid_amount=update.amount, paid_currency=update.currency)
        if order.amount is None:  # no order.created yet
            return order, "paid_early", None
        happening, verdict = settling(order)
        return order, happening, verdict
    if update.outcome == "refunded":
        refunded = order.paid_amount if update.amount is None else update.amount
        order = replace(order, refunded_amount=max(order.refunded_amount, refunded or 0))
        partial = refund_is_partial(order.paid_amount, update.amount)
        return order, ("partly_refunded" if partial else "refunded"), None
    return order, update.outcome, None


async def deadline_passed(event: Event, ctx: Context) -> Outcome:
    """A deadline set earlier is due: it moves the order only if the order is still waiting."""
    orders: Orders = ctx.records
    saved = await orders.get(order_id_of(event))
    if saved is None:
        return Outcome()
    order = replace(saved, updated_at=datetime.now(UTC))
    return _move(event, ctx, saved.status, order, DEADLINE_HAPPENINGS[event.type]) or Outcome()


def _move(
    cause: Event,
    ctx: Context,
    current: PaymentStatus | None,
    order: Order,
    happening: Happening,
    verdict: Verdict | None = None,
    update: PaymentUpdate | None = None,
) -> Outcome | None:
    """The outcome of the table's move for `happening`: `order` (its facts already updated) in
    its new status, the event announcing it, the deadline it starts; None when the table has no
    such move."""
    move = next_status(current, happening)
    if move is None:
        return None
    status, announced = move
    moved = replace(order, status=status)
    emit = []
    if announced is not None:
        data = _announcement(announced, moved, current, verdict, update)
        emit.append(emitted(cause, ctx.consumer, announced, data))
    if status != current and status in DEADLINES:
        deadline_type = DEADLINES[status]
        after_s = getattr(ctx.settings, SPEC.deadline_settings[deadline_type])
        emit.append(deadline(cause, ctx.consumer, deadline_type, moved.order_id, after_s))
    on_saved = ORDER_MISSING.inc if status == "order_missing" else None
    return Outcome(state=moved, emit=emit, on_saved=on_saved)


def _announcement(
    announced: str,
    order: Order,
    previous: PaymentStatus | None,
    verdict: Verdict | None,
    update: PaymentUpdate | None,
) -> dict:
    # The order's version once this is saved: notifications may arrive out of order (retries,
    # parallel deliveries), and a receiver keeps the highest.
    version = order.version + 1
    if announced == "order.expired":
        return {
            "order_id": order.order_id,
            "amount": order.amount,
            "currency": order.currency,
            "customer": order.customer,
            "version": version,
        }
    paid = order.paid_amount is not None
    data = {
        "order_id": order.order_id,
        "provider": order.provider,
        "payment_id": order.payment_id,
        # What was paid; for a decline, what was tried.
        "amount": order.paid_amount if paid or update is None else update.amount,
        "currency": order.paid_currency if paid or update is None else update.currency,
        "customer": order.customer,
        "version": version,
    }
    if announced == "payment.approved":
        data["overpaid"] = verdict.overpaid if verdict else 0
    elif announced == "payment.mismatched":
        reason = EXPIRED_REASON if previous == "expired" else verdict and verdict.reason
        data |= {"order_amount": order.amount, "order_currency": order.currency, "reason": reason}
    elif announced in ("payment.refunded", "payment.partially_refunded"):
        data["refunded_amount"] = order.refunded_amount
    return data


async def _payment_update(event: Event, ctx: Context) -> PaymentUpdate | None:
    """What the provider's webhook says of a payment (fetched first for Mercado Pago)."""
    provider, _, provider_type = event.type.partition(".")
    payload = event_json(event)
    try:
        payment_id = payment_providers.needs_fetch(provider, payload)
        if payment_id is None:
            return payment_providers.normalise(provider, provider_type, payload)
        resource = await _mercadopago(ctx).get_payment(payment_id)
        return payment_providers.normalise_mercadopago_payment(resource)
    except ProviderUnavailable as exc:
        raise Retry(str(exc)) from None
    except payment_providers.UnusablePayload as exc:
        raise Permanent(f"{event.type}: {exc}") from None


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


# One step per binding of the payments queue and per deadline it sets (its spec's, checked when
# the consumer starts).
STEPS: Steps = {
    "order.created": order_created,
    "order.amended": order_amended,
    **{f"{p.name}.#": provider_webhook for p in PROVIDERS.values() if p.payment},
    **dict.fromkeys(DEADLINE_HAPPENINGS, deadline_passed),
}
