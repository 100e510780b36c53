"""Payment providers' webhooks, normalised into the outcomes Hookhub's saga knows.

hub-api publishes each verified webhook as `<provider>.<provider's event type>` with the body
untouched. The payments consumer asks this module what such an event means for an order:

    needs_fetch(provider, payload)               a payment id to fetch first (Mercado Pago) or None
    normalise(provider, provider_type, payload)  a PaymentUpdate, or None when not an outcome
    normalise_mercadopago_payment(resource)      the same, for a payment fetched from Mercado Pago

All of it is pure and read from one table, `RULES`: per provider and event type (for Mercado Pago,
per payment status) the outcome, and where the payload keeps the storefront's order reference, the
provider's payment id, the amount and the currency. A payment event that lacks what the table says
it must carry raises `UnusablePayload`, which retrying cannot fix.

The amount of an approval is what was paid; of a refund, what has been refunded so far (the
payments consumer tells a partial refund from a full one by it).
"""

from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from babel.numbers import get_currency_precision
from hookhub.providers import PROVIDERS, first_at

Outcome = Literal["approved", "declined", "refunded", "charged_back"]


class UnusablePayload(ValueError):
    """A payment event without the order reference or another field its provider documents."""


# An order reference becomes the follow-ups' subject and the order's key: at most an AMQP short
# string, of visible ASCII (what any storefront's order id is). Anything else is no order of
# ours, and its follow-ups could not be published (`hookhub.broker.MessageTooLarge`).
MAX_ORDER_REFERENCE_BYTES = 255


@dataclass(frozen=True, slots=True)
class PaymentUpdate:
    """What a provider says happened to an order's payment."""

    order_id: str | None  # None: the payload names only the payment (see Fields.order_by_payment)
    outcome: Outcome
    provider: str
    payment_id: str
    amount: int | None  # minor units (cents), as Stripe counts them
    currency: str | None  # ISO 4217, upper case


@dataclass(frozen=True, slots=True)
class Fields:
    """Where a payload keeps a payment's facts: dotted paths, alternatives separated by `|`."""

    order_id: str
    payment_id: str
    amount: str
    currency: str
    amount_in: Literal["minor", "major"]  # minor: integer cents; major: a decimal such as 149.9
    # The currency when the payload names none (a provider that charges in one currency only).
    default_currency: str | None = None
    # The payload may lack the order reference (a Stripe dispute names only the payment): the
    # order is then the one this payment paid.
    order_by_payment: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    outcome: Outcome
    fields: Fields
    # (path, value) the payload must hold for the event to be this outcome yet, e.g. a Checkout
    # Session completed with a boleto is "unpaid" until async_payment_succeeded.
    only_if: tuple[str, Any] | None = None


# Where each provider keeps the storefront's order id is the provider table's (`order_id_at`): the
# event log's index finds an order's events by the same paths.
def _order_id_at(provider: str) -> str:
    return PROVIDERS[provider].order_id_at


# Stripe: the storefront sets metadata.order_id on the PaymentIntent (Stripe copies it to its
# Charges) or the Checkout Session. The payment id is always the PaymentIntent's, so every event
# of one payment names the same payment. Amounts are already integers in minor units.
_STRIPE_INTENT = Fields(
    order_id=_order_id_at("stripe"),
    payment_id="data.object.id",
    amount="data.object.amount",
    currency="data.object.currency",
    amount_in="minor",
)
_STRIPE_CHARGE = replace(
    _STRIPE_INTENT,
    payment_id="data.object.payment_intent|data.object.id",
    amount="data.object.amount_refunded",
)
# A dispute is Stripe's own object: it carries no metadata of the storefront's, only the charge and
# the PaymentIntent it disputes. Stripe takes the disputed amount back when the dispute opens.
_STRIPE_DISPUTE = replace(
    _STRIPE_INTENT,
    payment_id="data.object.payment_intent|data.object.charge",
    order_by_payment=True,
)
_STRIPE_SESSION = replace(
    _STRIPE_INTENT,
    payment_id="data.object.payment_intent|data.object.id",
    amount="data.object.amount_total",
)
# Hotmart (webhook v2.0.0): xcod is the "external code" a seller appends to its checkout link
# (?xcod=...) and gets back in purchase.origin; src and sck are campaign-tracking slots that
# tracking tools overwrite. The price is a decimal in the purchase's currency.
_HOTMART = Fields(
    order_id=_order_id_at("hotmart"),
    payment_id="data.purchase.transaction",
    amount="data.purchase.price.value",
    currency="data.purchase.price.currency_value",
    amount_in="major",
)
# Kiwify: s1 is a free sub-id the seller appends to its checkout link (?s1=...) and gets back in
# TrackingParameters; src, sck and utm_* belong to tracking tools. charge_amount is in cents.
_KIWIFY = Fields(
    order_id=_order_id_at("kiwify"),
    payment_id="order_id",
    amount="Commissions.charge_amount",
    currency="Commissions.currency|Commissions.product_base_price_currency",
    amount_in="minor",
)
# Asaas (API v3): externalReference is the storefront's order id, set when it created the charge.
# Asaas charges only in reais and its payloads name no currency; value is a decimal.
_ASAAS = Fields(
    order_id=_order_id_at("asaas"),
    payment_id="payment.id",
    amount="payment.value",
    currency="payment.currency",
    amount_in="major",
    default_currency="BRL",
)
# Pagar.me (API v5): code is the storefront's order code, given when it created the order; an
# order event carries the order (its charge under charges), a charge event the charge (its order
# under order). The payment id is the charge's either way. Amounts are integer cents.
_PAGARME = Fields(
    order_id=_order_id_at("pagarme"),
    payment_id="data.charges.0.id|data.id",
    amount="data.amount",
    currency="data.currency",
    amount_in="minor",
)
# Mercado Pago: a fetched payment (GET /v1/payments/{id}); external_reference is the storefront's
# order id, set when it created the preference or payment. transaction_amount is a decimal.
_MERCADOPAGO = Fields(
    order_id=_order_id_at("mercadopago"),
    payment_id="id",
    amount="transaction_amount",
    currency="currency_id",
    amount_in="major",
)

# A chargeback takes the money back like a refund does, and the saga compensates the same way; it
# has an outcome of its own so that people are told which it was.
RULES: dict[str, dict[str, Rule]] = {
    "stripe": {
        "payment_intent.succeeded": Rule(
            "approved", replace(_STRIPE_INTENT, amount="data.object.amount_received")
        ),
        "payment_intent.payment_failed": Rule("declined", _STRIPE_INTENT),
        # Fired for partial refunds too: amount_refunded is the total refunded so far.
        "charge.refunded": Rule("refunded", _STRIPE_CHARGE),
        "charge.dispute.created": Rule("charged_back", _STRIPE_DISPUTE),
        # Repeats the dispute's news for payments whose funds leave later: a no-op after it.
        "charge.dispute.funds_withdrawn": Rule("charged_back", _STRIPE_DISPUTE),
        "checkout.session.completed": Rule(
            "approved", _STRIPE_SESSION, only_if=("data.object.payment_status", "paid")
        ),
        "checkout.session.async_payment_succeeded": Rule("approved", _STRIPE_SESSION),
        "checkout.session.async_payment_failed": Rule("declined", _STRIPE_SESSION),
    },
    "hotmart": {
        "PURCHASE_APPROVED": Rule("approved", _HOTMART),
        "PURCHASE_COMPLETE": Rule("approved", _HOTMART),  # warranty over: approved again, a no-op
        "PURCHASE_CANCELED": Rule("declined", _HOTMART),
        "PURCHASE_EXPIRED": Rule("declined", _HOTMART),
        "PURCHASE_REFUNDED": Rule("refunded", _HOTMART),
        "PURCHASE_CHARGEBACK": Rule("charged_back", _HOTMART),
    },
    # hub-api takes Kiwify's type from webhook_event_type, else order_status: both are listed.
    "kiwify": {
        "order_approved": Rule("approved", _KIWIFY),
        "order_rejected": Rule("declined", _KIWIFY),
        "order_refunded": Rule("refunded", _KIWIFY),
        "chargeback": Rule("charged_back", _KIWIFY),
        "paid": Rule("approved", _KIWIFY),
        "refused": Rule("declined", _KIWIFY),
        "refunded": Rule("refunded", _KIWIFY),
        "chargedback": Rule("charged_back", _KIWIFY),
    },
    # PAYMENT_OVERDUE is left out: a boleto past its due date may still be paid.
    "asaas": {
        "PAYMENT_CONFIRMED": Rule("approved", _ASAAS),  # a card payment, settled later
        "PAYMENT_RECEIVED": Rule("approved", _ASAAS),  # the money arrived (Pix, boleto, card)
        "PAYMENT_REPROVED_BY_RISK_ANALYSIS": Rule("declined", _ASAAS),
        "PAYMENT_CREDIT_CARD_CAPTURE_REFUSED": Rule("declined", _ASAAS),
        "PAYMENT_DELETED": Rule("declined", _ASAAS),
        "PAYMENT_REFUNDED": Rule("refunded", _ASAAS),
        "PAYMENT_CHARGEBACK_REQUESTED": Rule("charged_back", _ASAAS),
    },
    "pagarme": {
        "order.paid": Rule("approved", _PAGARME),
        "order.payment_failed": Rule("declined", _PAGARME),
        "order.canceled": Rule("declined", _PAGARME),
        "charge.paid": Rule("approved", _PAGARME),
        "charge.payment_failed": Rule("declined", _PAGARME),
        "charge.refunded": Rule("refunded", _PAGARME),
        "charge.chargedback": Rule("charged_back", _PAGARME),
    },
    # Keyed by the fetched payment's status: Mercado Pago's notifications carry no outcome.
    "mercadopago": {
        "approved": Rule("approved", _MERCADOPAGO),
        "rejected": Rule("declined", _MERCADOPAGO),
        "cancelled": Rule("declined", _MERCADOPAGO),
        "refunded": Rule("refunded", _MERCADOPAGO),
        "charged_back": Rule("charged_back", _MERCADOPAGO),
    },
}
FETCHED_PROVIDERS = frozenset({"mercadopago"})


def needs_fetch(provider: str, payload: Any) -> str | None:
    """The id of the payment to fetch before normalising this event, or None if it needs none.

    Mercado Pago notifies `{"type": "payment", "action": "payment.updated", "data": {"id": ...}}`;
    the payment itself (status, amount, external_reference) comes from GET /v1/payments/{id}.
    """
    if provider not in FETCHED_PROVIDERS or not isinstance(payload, dict):
        return None
    topic = payload.get("type") or str(payload.get("action") or "").partition(".")[0]
    if topic != "payment":
        return None
    payment_id = _text(_at(payload, "data.id"))
    if payment_id is None:
        raise UnusablePayload(f"{provider} payment notification: no payment id at data.id")
    # The id becomes part of the API's URL path: only Mercado Pago's numeric ids go there.
    if not (payment_id.isascii() and payment_id.isdigit()):
        raise UnusablePayload(
            f"{provider} payment notification: data.id {payment_id!r} is not a payment id"
        )
    return payment_id


def normalise(provider: str, provider_type: str, payload: Any) -> PaymentUpdate | None:
    """The payment update a provider's webhook stands for, or None if it is not a payment outcome.

    Raises `UnusablePayload` when a payment outcome lacks its order reference or payment id.
    """
    if needs_fetch(provider, payload) is not None:
        raise ValueError(
            f"{provider}.{provider_type} carries only a payment id: fetch the payment and call "
            "normalise_mercadopago_payment"
        )
    if provider in FETCHED_PROVIDERS:
        return None
    rule = RULES.get(provider, {}).get(provider_type)
    if rule is None:
        return None
    return _apply(provider, provider_type, rule, payload)


def normalise_mercadopago_payment(resource: Any) -> PaymentUpdate | None:
    """The update a payment fetched from Mercado Pago stands for, or None while it is pending."""
    if not isinstance(resource, dict):
        raise UnusablePayload("mercadopago payment: not a JSON object")
    status = resource.get("status")
    rule = RULES["mercadopago"].get(status) if isinstance(status, str) else None
    if rule is None:
        return None  # pending, authorized, in_process, in_mediation: no outcome yet
    return _apply("mercadopago", f"payment status {status}", rule, resource)


def _apply(provider: str, what: str, rule: Rule, payload: Any) -> PaymentUpdate | None:
    if not isinstance(payload, dict):
        raise UnusablePayload(f"{provider} {what}: the body is not a JSON object")
    if rule.only_if is not None:
        path, expected = rule.only_if
        if _at(payload, path) != expected:
            return None
    fields = rule.fields
    order_id = _text(_at(payload, fields.order_id))
    if order_id is None and not fields.order_by_payment:
        raise UnusablePayload(
            f"{provider} {what}: no order reference at {_paths(fields.order_id)} "
            "(the storefront must put its order id there)"
        )
    if order_id is not None and (problem := _reference_problem(order_id)):
        raise UnusablePayload(
            f"{provider} {what}: the order reference at {_paths(fields.order_id)} {problem}"
        )
    payment_id = _text(_at(payload, fields.payment_id))
    if payment_id is None:
        raise UnusablePayload(f"{provider} {what}: no payment id at {_paths(fields.payment_id)}")
    currency = _currency(provider, what, fields, payload)
    return PaymentUpdate(
        order_id=order_id,
        outcome=rule.outcome,
        provider=provider,
        payment_id=payment_id,
        amount=_minor_units(provider, what, fields, currency, payload),
        currency=currency,
    )


def _currency(provider: str, what: str, fields: Fields, payload: dict[str, Any]) -> str | None:
    value = _at(payload, fields.currency)
    if value is None:
        return fields.default_currency
    if not (isinstance(value, str) and len(value) == 3 and value.isascii() and value.isalpha()):
        raise UnusablePayload(
            f"{provider} {what}: {_paths(fields.currency)} = {value!r} is not a currency code"
        )
    return value.upper()


def _minor_units(
    provider: str, what: str, fields: Fields, currency: str | None, payload: dict[str, Any]
) -> int | None:
    value = _at(payload, fields.amount)
    if value is None:
        return None
    where = f"{provider} {what}: {_paths(fields.amount)} = {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise UnusablePayload(f"{where} is not an amount")
    try:
        # str() first: a float parsed from JSON prints back exactly as it was sent (149.9, not
        # 149.900000000000005684...), so no binary rounding reaches the money.
        amount = Decimal(str(value))
    except InvalidOperation:
        raise UnusablePayload(f"{where} is not an amount") from None
    if not amount.is_finite() or amount < 0:
        raise UnusablePayload(f"{where} is not an amount")
    if fields.amount_in == "major":
        if currency is None:
            raise UnusablePayload(
                f"{where} needs a currency at {_paths(fields.currency)} to count its minor units"
            )
        amount = amount.scaleb(get_currency_precision(currency))
    if amount != amount.to_integral_value():
        raise UnusablePayload(f"{where} has more decimals than {currency or 'minor units'} allow")
    return int(amount)


_at = first_at


def _text(value: Any) -> str | None:
    # Ids arrive as strings or numbers (Mercado Pago's are integers); anything else is no id.
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _reference_problem(order_id: str) -> str | None:
    """Why an order reference cannot be an order's (None when it can); short, never the value."""
    size_bytes = len(order_id.encode())
    if size_bytes > MAX_ORDER_REFERENCE_BYTES:
        return f"is {size_bytes} bytes, over the {MAX_ORDER_REFERENCE_BYTES} an order id may have"
    if not all("!" <= char <= "~" for char in order_id):
        return (
            "is not visible ASCII (letters, digits, punctuation; no spaces or control characters)"
        )
    return None


def _paths(paths: str) -> str:
    return " or ".join(paths.split("|"))
