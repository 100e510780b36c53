"""The payments consumer's records: each order's payment state, and how its steps read them.

Plain data; its repository keeps them (`store_sqlite`, `store_mongo`, registered in its spec),
its steps decide how they change.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from hookhub_consumers.store import Store

# The order's place in the saga (steps.TRANSITIONS moves it): waiting for its money
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


class Orders(Protocol):
    """The orders, as the payments steps read them (`ctx.records`); an order's changes are
    saved by the runtime, with the event's marker (`Outcome.state`)."""

    async def get(self, order_id: str) -> Order | None: ...

    async def by_payment(self, provider: str, payment_id: str) -> Order | None:
        """The order whose recorded payment this is (a dispute names only the payment)."""
        ...


def orders(store: Store) -> Orders:
    """The orders in a store opened with the payments consumer's spec (for tools and tests)."""
    return store.repository("payments")
