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
from dataclasses import dataclass
from datetime import datetime

from hookhub_consumers.records import Delivery, Order, Ticket


@dataclass(frozen=True, slots=True)
class Marker:
    """The processed-marker of one event in one consumer."""

    consumer: str
    event_key: str  # the CloudEvents (source, id) pair, which is unique per event

    @classmethod
    def of(cls, consumer: str, source: str, event_id: str) -> "Marker":
        return cls(consumer, f"{source}#{event_id}")


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
    async def unsent(self, consumer: str, saved_before: datetime) -> list[Marker]:
        """The markers of `consumer` whose outbox was saved before `saved_before` and is not yet
        `sent`: follow-ups a publish failure or a crash left behind, for the outbox relay."""

    @abstractmethod
    async def record_delivery(self, delivery: Delivery) -> None:
        """Save one delivery attempt (every attempt is kept): a new one is appended; one with
        the event id, URL and attempt number of a saved one replaces it (its outcome, once
        known)."""

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
    async def check_writable(self) -> None:
        """A small real write, so that readiness proves the store takes writes (a full disk, a
        read-only file, an unreachable server raise)."""

    @abstractmethod
    async def close(self) -> None: ...
