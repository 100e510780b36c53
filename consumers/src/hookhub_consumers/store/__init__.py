"""The consumers' state, behind one small repository interface with domain-level methods.

Two adapters implement it: SQLite (the embedded default, `sqlite:///path`) and MongoDB through
PyMongo's async API (`mongodb://...`). One contract test suite runs against both.

Exactly-once in effect: every state change is saved together with a processed-marker for the
(consumer, event) that caused it and the events it emits (its outbox), atomically. Saving again
with a marker that already exists writes nothing and returns False, so a redelivered event has
the effect of one; its outbox is published after the commit and forgotten once confirmed.

Times come back tz-aware in UTC, to the millisecond (MongoDB's precision; SQLite keeps the same).
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

PaymentStatus = Literal["pending", "approved", "declined", "refunded"]
TicketStatus = Literal["queued", "ready", "cancelled"]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Marker:
    """The processed-marker of one event in one consumer."""

    consumer: str
    event_key: str  # the CloudEvents (source, id) pair, which is unique per event

    @classmethod
    def of(cls, consumer: str, source: str, event_id: str) -> "Marker":
        return cls(consumer, f"{source}#{event_id}")


@dataclass(slots=True)
class Order:
    """An order's payment state, kept by the payments consumer."""

    order_id: str
    status: PaymentStatus = "pending"
    amount: int | None = None  # minor units
    currency: str | None = None
    customer: dict[str, Any] | None = None
    items: list[Any] = field(default_factory=list)
    provider: str | None = None
    payment_id: str | None = None
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


class ConcurrentUpdate(Exception):
    """Someone saved the aggregate since it was read; handle the event again (retryable)."""


class Store(ABC):
    @abstractmethod
    async def get_order(self, order_id: str) -> Order | None: ...

    @abstractmethod
    async def save_order(self, order: Order, marker: Marker, outbox: Sequence[str] = ()) -> bool:
        """Write the order, the marker and the outbox atomically; False (nothing written) if the
        marker exists; ConcurrentUpdate if the stored version is not `order.version`. On success
        the stored version is `order.version + 1` (and `order.version` is updated to it).

        `outbox`: the events (serialized) this change emits; kept, under the marker, until
        `sent`, so a crash between saving and publishing cannot lose them."""

    @abstractmethod
    async def get_ticket(self, order_id: str) -> Ticket | None: ...

    @abstractmethod
    async def save_ticket(self, ticket: Ticket, marker: Marker, outbox: Sequence[str] = ()) -> bool:
        """As save_order, for tickets."""

    @abstractmethod
    async def pending(self, marker: Marker) -> list[str]:
        """The outbox saved with this marker and not yet `sent`, in the order given."""

    @abstractmethod
    async def sent(self, marker: Marker) -> None:
        """Forget the marker's outbox: its events were published."""

    @abstractmethod
    async def record_delivery(self, delivery: Delivery) -> None:
        """Append one delivery attempt (every attempt is kept)."""

    @abstractmethod
    async def deliveries(self, event_id: str | None = None) -> list[Delivery]:
        """Delivery attempts, oldest first (by `at`, then in the order recorded), optionally of
        one event."""

    @abstractmethod
    async def is_processed(self, marker: Marker) -> bool: ...

    @abstractmethod
    async def mark_processed(self, marker: Marker) -> bool:
        """Write a marker alone (for effects outside the store); False if it existed."""

    @abstractmethod
    async def close(self) -> None: ...


def open_store(url: str) -> Store:
    """The adapter for a URL: `sqlite:///relative/or//absolute/path` or `mongodb://...`."""
    if url.startswith("sqlite:"):
        from hookhub_consumers.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from hookhub_consumers.store.mongo import MongoStore

        return MongoStore.from_url(url)
    # The scheme only: the rest of the URL may hold a password.
    raise ValueError(
        f"unsupported HOOKHUB_STORE_URL scheme '{url.partition(':')[0]}': "
        "use sqlite:///path or mongodb://host/db"
    )
