"""The consumers' domain records: an order's payment state, a production ticket, a delivery.

Plain data; the store keeps them (`store/`), the handlers decide how they change.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

# The order's place in the saga (payments.TRANSITIONS moves it): waiting for its money
# (pending, declined), money waiting for its order (held, order_missing), settled (approved),
# stopped (mismatched, expired) or compensated (refunded, charged_back).
PaymentStatus = Literal[
    "pending",
    "declined",
    "held",
    "order_missing",
    "approved",
    "mismatched",
    "expired",
    "refunded",
    "charged_back",
]
TicketStatus = Literal["queued", "overdue", "ready", "cancelled"]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Order:
    """An order's payment state, kept by the payments consumer."""

    order_id: str
    status: PaymentStatus = "pending"
    amount: int | None = None  # minor units; the order's, as order.created says it (None before)
    currency: str | None = None
    customer: dict[str, Any] | None = None
    items: list[Any] = field(default_factory=list)
    provider: str | None = None
    payment_id: str | None = None
    paid_amount: int | None = None  # minor units the provider approved, in paid_currency
    paid_currency: str | None = None
    refunded_amount: int = 0  # minor units refunded so far, in paid_currency
    version: int = 0  # managed by the store: the version this copy was read at
    updated_at: datetime = field(default_factory=_now)


@dataclass(slots=True)
class Ticket:
    """A production ticket, kept by the production consumer."""

    order_id: str
    status: TicketStatus = "queued"
    version: int = 0
    updated_at: datetime = field(default_factory=_now)


@dataclass(slots=True)
class Delivery:
    """One attempt of the notifications consumer to deliver one event to one endpoint."""

    event_id: str
    event_type: str
    url: str
    attempt: int
    status_code: int | None = None
    error: str | None = None
    delivered: bool = False
    at: datetime = field(default_factory=_now)
