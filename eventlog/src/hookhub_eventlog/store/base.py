"""The event log's storage, behind one interface: the index of archived events and the steps of
their journeys, which it owns, and a read-only view of what the consumers keep about an event.

Two adapters implement it: SQLite (`sqlite:///path`) and MongoDB (`mongodb://...`), in the same
file or database as the consumers' store. One contract suite runs against both.

Times come back tz-aware in UTC, to the millisecond (MongoDB's precision; SQLite keeps the same).
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One archived event as the event log's index knows it; `position` is its offset in the
    archive stream, where its whole message (body, headers) is kept."""

    position: int
    id: str
    source: str
    type: str
    time: datetime
    subject: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None


@dataclass(frozen=True, slots=True)
class EventQuery:
    """What to find in the event log; every field given must match. `type` is a topic pattern
    (`stripe.#`, `payment.*`); `source` a whole source (`/webhooks/stripe`)."""

    id: str | None = None
    type: str | None = None
    source: str | None = None
    correlation_id: str | None = None
    subject: str | None = None
    causation_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100

    @property
    def matched_by_the_store(self) -> bool:
        """Whether the store's own filters match exactly (no topic pattern to match word by
        word afterwards), so that it can stop at `limit` by itself."""
        return self.type is None or not {"*", "#"} & set(self.type)


@dataclass(frozen=True, slots=True)
class Step:
    """Something that happened to an event in a consumer, for its journey: `retried` or `parked`
    (with the reason), `replayed` or `reprocessed` (by an operator), `purged` (from its parking
    lot, by an operator)."""

    event_id: str
    consumer: str
    what: str
    detail: str = ""
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of the notifications consumer to deliver an event, as its journey shows it."""

    url: str
    delivered: bool
    at: datetime
    status_code: int | None = None
    error: str | None = None


class EventLog(ABC):
    # The index: written by the indexer in batches, off every consumer's path.

    @abstractmethod
    async def index(self, events: Sequence[LoggedEvent]) -> None:
        """Add archived events to the index (one already there is left as it is)."""

    @abstractmethod
    async def indexed_up_to(self) -> int | None:
        """The highest archive position indexed so far; None before the first."""

    @abstractmethod
    async def find_events(self, query: EventQuery) -> list[LoggedEvent]:
        """Indexed events matching the query, newest first, at most `query.limit`."""

    # Journeys: the steps consumers and operators record.

    @abstractmethod
    async def record(self, step: Step) -> None:
        """Add a step to an event's journey."""

    @abstractmethod
    async def steps(self, event_id: str) -> list[Step]:
        """The steps recorded for an event, oldest first."""

    # What the consumers keep about an event, read and never written (`consumer_tables`).

    @abstractmethod
    async def processed_by(self, source: str, event_id: str) -> list[tuple[str, datetime]]:
        """The consumers that hold a processed-marker for this event, with when they wrote it,
        oldest first."""

    @abstractmethod
    async def attempts(self, event_id: str) -> list[Attempt]:
        """The notifications consumer's attempts to deliver this event, oldest first."""

    @abstractmethod
    async def close(self) -> None: ...
