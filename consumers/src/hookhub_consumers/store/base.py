"""The consumers' state, behind one small repository interface with domain-level methods.

Two adapters implement it: SQLite (the embedded default, `sqlite:///path`) and MongoDB through
PyMongo's async API (`mongodb://...`). One contract test suite runs against both.

Exactly-once in effect: every state change is saved together with a processed-marker for the
(consumer, event) that caused it and the events it emits (its outbox), atomically. Saving again
with a marker that already exists writes nothing and returns False, so a redelivered event has
the effect of one; its outbox is published after the commit and forgotten once confirmed.

Group commit: the changes of the messages a consumer has in hand are written together. `save`
queues a change and waits; whatever was queued while one write was running goes in the next
(`write`, one transaction on SQLite), each change still atomic and independent of its
neighbours: one that fails fails alone.

Times come back tz-aware in UTC, to the millisecond (MongoDB's precision; SQLite keeps the same).

The event log (`hookhub_eventlog`) keeps its index and journeys in the same file or database, in
tables of its own, and reads the markers and the delivery attempts kept here: their shape is
`hookhub_eventlog.store.consumer_tables`'s, and the contract suite checks that it reads them.
"""

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from hookhub_eventlog.store.consumer_tables import event_key

from hookhub_consumers.records import Delivery, Order, Ticket


@dataclass(frozen=True, slots=True)
class Marker:
    """The processed-marker of one event in one consumer."""

    consumer: str
    event_key: str  # the CloudEvents (source, id) pair, which is unique per event

    @classmethod
    def of(cls, consumer: str, source: str, event_id: str) -> "Marker":
        return cls(consumer, event_key(source, event_id))


class ConcurrentUpdate(Exception):
    """Someone saved the aggregate since it was read; handle the event again (retryable)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One event's effect: its marker, the aggregate's new state (none: the marker alone), and
    the follow-up events it emits (serialized), which need a state to ride with."""

    marker: Marker
    state: Order | Ticket | None = None
    outbox: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.outbox and self.state is None:
            raise ValueError("follow-ups are saved with a state change, not with a marker alone")


@dataclass(frozen=True, slots=True)
class Sent:
    """Forget a marker's outbox: its events were published."""

    marker: Marker


Write = Change | Sent
# A write's result: True saved (or forgotten), False a Change whose marker existed (nothing
# written), or the exception that change alone raised (ConcurrentUpdate).
Written = bool | Exception
# The most writes one transaction takes; more wait for the next.
MAX_GROUP = 256


class GroupCommit:
    """Queues writes and hands them to `write` in groups: whatever arrived while the previous
    group was being written goes in the next one, so no write waits for a timer."""

    def __init__(self, write: Callable[[Sequence[Write]], Awaitable[list[Written]]]) -> None:
        self._write = write
        self._queued: list[tuple[Write, asyncio.Future[Written]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def submit(self, write: Write) -> bool:
        future: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        self._queued.append((write, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain(), name="group-commit")
        result = await future
        if isinstance(result, Exception):
            raise result
        return result

    async def _drain(self) -> None:
        while self._queued:
            group, self._queued = self._queued[:MAX_GROUP], self._queued[MAX_GROUP:]
            try:
                results = await self._write([write for write, _ in group])
            except Exception as error:  # the whole group failed (the store is down): every
                results = [error] * len(group)  # write of it fails, and is retried on its own
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():  # its waiter may have been cancelled
                    future.set_result(result)


class Store(ABC):
    def __init__(self) -> None:
        self._group_commit = GroupCommit(self.write)

    async def save(self, change: Change) -> bool:
        """Write the change atomically, in the next group: False (nothing written) if its marker
        exists; ConcurrentUpdate if the stored version is not `change.state.version`. On success
        the stored version is one more, and so is `change.state.version`."""
        saved = await self._group_commit.submit(change)
        if saved and change.state is not None:
            change.state.version += 1
        return saved

    async def save_order(self, order: Order, marker: Marker, outbox: Sequence[str] = ()) -> bool:
        """`save` of an order's new state."""
        return await self.save(Change(marker, order, tuple(outbox)))

    async def save_ticket(self, ticket: Ticket, marker: Marker, outbox: Sequence[str] = ()) -> bool:
        """`save` of a ticket's new state."""
        return await self.save(Change(marker, ticket, tuple(outbox)))

    async def mark_processed(self, marker: Marker) -> bool:
        """Write a marker alone (for effects outside the store); False if it existed."""
        return await self.save(Change(marker))

    async def sent(self, marker: Marker) -> None:
        """Forget the marker's outbox: its events were published (in the next group)."""
        await self._group_commit.submit(Sent(marker))

    @abstractmethod
    async def write(self, writes: Sequence[Write]) -> list[Written]:
        """Apply the writes, each atomically and independently of the others (one that raises
        fails alone, and its result is the exception); raise only when none could be applied.
        On SQLite one transaction, so one sync to disk for the whole group."""

    @abstractmethod
    async def get_order(self, order_id: str) -> Order | None: ...

    @abstractmethod
    async def order_of_payment(self, provider: str, payment_id: str) -> Order | None:
        """The order whose recorded payment this is (a dispute names only the payment)."""

    @abstractmethod
    async def get_ticket(self, order_id: str) -> Ticket | None: ...

    @abstractmethod
    async def pending(self, marker: Marker) -> list[str]:
        """The outbox saved with this marker and not yet `sent`, in the order given."""

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
    async def check_writable(self) -> None:
        """A small real write, so that readiness proves the store takes writes (a full disk, a
        read-only file, an unreachable server raise)."""

    @abstractmethod
    async def close(self) -> None: ...
