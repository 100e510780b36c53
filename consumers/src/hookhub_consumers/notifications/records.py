"""The notifications consumer's records: every attempt to deliver an event, and their reads.

An attempt is recorded outside any marker, before the POST and again with its answer (see
`steps.deliver`), so its repository writes it itself, at once: a store that refuses writes stops
the consumer before the receiver hears anything. The event log reads these records too
(`hookhub_eventlog.store.consumer_tables`).
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from hookhub_consumers.store import Store


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Delivery:
    """One attempt of the notifications consumer to deliver one event to one endpoint (its URL
    kept with any password redacted, `user:***@`)."""

    event_id: str
    event_type: str
    url: str
    attempt: int
    status_code: int | None = None
    error: str | None = None
    delivered: bool = False
    at: datetime = field(default_factory=_now)
    # The event's CloudEvents source: an event is its (source, id), and two sources may share an
    # id. None on an attempt recorded before sources were (an older release's).
    source: str | None = None
    # How long the POST took to answer (or fail), in ms; None before its outcome (and on an
    # older release's attempt).
    latency_ms: float | None = None
    # The endpoint's name (two endpoints may share a URL): what stats, resends and the
    # "delivered once" check match by. None on an older release's attempt: matched by URL.
    endpoint: str | None = None

    def is_to(self, endpoint: str, url: str) -> bool:
        """Whether this attempt was to the endpoint named `endpoint` at `url` (redacted)."""
        return self.endpoint == endpoint if self.endpoint is not None else self.url == url


class Deliveries(Protocol):
    async def record(self, delivery: Delivery) -> None:
        """Save one delivery attempt now, in a write of its own (every attempt is kept): a new
        one is appended; one with the event's source and id, the endpoint, the URL and the
        attempt number of a saved one replaces it (its outcome, once known)."""
        ...

    async def attempts(
        self, event_id: str | None = None, source: str | None = None
    ) -> list[Delivery]:
        """Delivery attempts, oldest first (by `at`, then in the order recorded), optionally of
        one event id, and of that id from one source (attempts recorded without a source, by an
        older release, are then not among them)."""
        ...


def deliveries(store: Store) -> Deliveries:
    """The delivery attempts in a store opened with the notifications consumer's spec."""
    return store.repository("notifications")
