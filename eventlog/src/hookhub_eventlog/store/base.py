"""The event log's storage, behind one interface: the index of archived events and the steps of
their journeys, which it owns, and a read-only view of what the consumers keep about an event.

Two adapters implement it: SQLite (`sqlite:///path`) and MongoDB (`mongodb://...`), in the same
file or database as the consumers' store. One contract suite runs against both.

Times come back tz-aware in UTC, to the millisecond (MongoDB's precision; SQLite keeps the same).
"""

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hookhub_eventlog.people import Forgotten, Link

# Every read has a budget, so that one search cannot stall the process that serves it (the
# operator's console, its /livez): a search that has not finished within it is stopped.
SEARCH_BUDGET_S = 2.0
# At most this many rows come back from any read of one event's journey (steps, markers,
# delivery attempts): a journey longer than that is a runaway, not something to page through.
MAX_JOURNEY_ROWS = 1000
MAX_PERSON_EVENTS = 500  # a person's events read for their page, newest first
COMPONENT = "eventlog"  # its tables', in schema_versions (`hookhub.schema`)
# A topic pattern's complexity: types are at most 255 characters (128 words), and matching costs
# its words times a type's; more than a few `#` say nothing more than one does.
MAX_PATTERN_WORDS = 32
MAX_PATTERN_HASHES = 4
PATTERN_WORD = re.compile(r"[A-Za-z0-9_-]+|\*|#")


class SearchTooSlow(Exception):
    """The search did not finish within `SEARCH_BUDGET_S`; narrow it."""

    def __init__(self) -> None:
        super().__init__(
            f"the search took longer than {SEARCH_BUDGET_S:g} s and was stopped: narrow it with "
            "a type that starts with a word (stripe.#), a time range, a source or an id"
        )


class BadPattern(ValueError):
    """A type pattern that cannot be searched for; the message says why and what would do."""


def pattern_problem(pattern: str) -> str | None:
    """Why a topic pattern cannot be searched for, if it cannot: words of a type's characters,
    `*` or `#`, at most `MAX_PATTERN_WORDS` of them and `MAX_PATTERN_HASHES` `#`."""
    words = pattern.split(".")
    if len(words) > MAX_PATTERN_WORDS:
        return f"type pattern has {len(words)} words; at most {MAX_PATTERN_WORDS} are searched"
    if words.count("#") > MAX_PATTERN_HASHES:
        return f"type pattern has more than {MAX_PATTERN_HASHES} '#'; one says as much"
    if not all(PATTERN_WORD.fullmatch(word) for word in words):
        return (
            "type pattern must be dot-separated words of letters, digits, '_' or '-', "
            "'*' (one word) or '#' (any words)"
        )
    return None


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
    # The order it concerns: its subject, or for an inbound event the order id its payload
    # keeps (`archive.order_of`); None for events indexed before the index kept it, which
    # carry their subject only (the store's migration 2 copies that here).
    order_id: str | None = None
    # Who it is about (`hookhub.identities`: `email:...`, `phone:+55...`, `stripe:cus_...`),
    # normalised; identifiers seen together in one event link into one person (`people.py`).
    # Given to `index`; reads leave it empty (a person's identifiers: `EventLog.person`).
    identifiers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PaymentState:
    """An order as the payments consumer keeps it (`consumer_tables.ORDERS`), read only.
    Amounts in minor units: the order's (`amount`, as order.created said it), what the provider
    approved (`paid_amount`, in `paid_currency`) and what was refunded of it so far."""

    order_id: str
    status: str
    amount: int | None
    currency: str | None
    provider: str | None
    payment_id: str | None
    paid_amount: int | None
    paid_currency: str | None
    refunded_amount: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class EventQuery:
    """What to find in the event log; every field given must match. `type` is a topic pattern
    (`stripe.#`, `payment.*`); `source` a whole source (`/webhooks/stripe`); `order_id` the
    order an event concerns (`LoggedEvent.order_id`), inbound or follow-up; `unbound_by`, when
    given, keeps only the events none of these binding keys matches (the unrouted ones, given
    the installed consumers' bindings), in the query itself, so that `limit` counts only them."""

    id: str | None = None
    type: str | None = None
    source: str | None = None
    correlation_id: str | None = None
    subject: str | None = None
    causation_id: str | None = None
    order_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    unbound_by: tuple[str, ...] | None = None
    limit: int = 100

    @property
    def matched_by_the_store(self) -> bool:
        """Whether the store's own filters match exactly (no topic pattern to match word by
        word afterwards, no bindings to match), so that it can stop at `limit` by itself."""
        pattern = self.type is not None and bool({"*", "#"} & set(self.type))
        return not pattern and self.unbound_by is None


@dataclass(frozen=True, slots=True)
class Person:
    """One person as the index knows them: their identifiers (normalised), the links that made
    them one (each with its event; undone ones too, with when), and their events, newest
    first."""

    id: str
    identifiers: list[str]
    links: list[Link]
    events: list[LoggedEvent]


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
    @abstractmethod
    async def open(self) -> None:
        """Make the tables and apply the migrations they lack now, rather than on the first
        call (`hookhub.schema`); NewerSchema when a newer release's schema made the store."""

    # The index: written by the indexer in batches, off every consumer's path.

    @abstractmethod
    async def index(self, events: Sequence[LoggedEvent]) -> None:
        """Add archived events to the index (one already there is left as it is). A follow-up
        that names an order gives it to the webhook that caused it when that one named none (a
        Mercado Pago notification: only the payment fetched afterwards names the order)."""

    @abstractmethod
    async def indexed_up_to(self) -> int | None:
        """The highest archive position indexed so far; None before the first."""

    # Which stream the index follows (an archive deleted and declared again starts at 0).

    @abstractmethod
    async def last_indexed(self) -> LoggedEvent | None:
        """The event at the highest position indexed: the witness that the archive is still the
        stream the index follows (its message there is this event). None before the first."""

    @abstractmethod
    async def supersede(self) -> None:
        """The archive is a new stream: move every event indexed (from the old stream, and the
        ones before it) down by the highest position + 1, below any position the new stream can
        have, in the same order, so that the new stream is indexed from its start. They are
        still found (`find_events`); their messages are gone. A move cut short (a crash) is
        finished by the next call."""

    @abstractmethod
    async def find_events(self, query: EventQuery) -> list[LoggedEvent]:
        """Indexed events matching the query, newest first, at most `query.limit`; within
        `SEARCH_BUDGET_S` (else `SearchTooSlow`), and off the caller's event loop where the
        store's driver would block it. `BadPattern` for a type pattern `pattern_problem`
        refuses."""

    # Journeys: the steps consumers and operators record.

    @abstractmethod
    async def record(self, step: Step) -> None:
        """Add a step to an event's journey."""

    @abstractmethod
    async def steps(self, event_id: str) -> list[Step]:
        """The steps recorded for an event, oldest first (the first `MAX_JOURNEY_ROWS`)."""

    # What the consumers keep about an event, read and never written (`consumer_tables`).

    @abstractmethod
    async def processed_by(self, source: str, event_id: str) -> list[tuple[str, datetime]]:
        """The consumers that hold a processed-marker for this event, with when they wrote it,
        oldest first."""

    @abstractmethod
    async def marked_sources(self, event_id: str) -> list[str]:
        """The sources of the events with this id that some consumer holds a processed-marker
        for: how the journey of an event the index lacks (accepted before the archive existed)
        finds its markers. At most `MAX_JOURNEY_ROWS`."""

    @abstractmethod
    async def attempts(self, event_id: str, source: str | None = None) -> list[Attempt]:
        """The notifications consumer's attempts to deliver this event id, oldest first; with
        `source`, only that source's event's, and those recorded before sources were (an older
        release's: they may be its), never another source's. URLs come with any password
        redacted, whatever an older release stored."""

    @abstractmethod
    async def payment_state(self, order_id: str) -> PaymentState | None:
        """The order's payment state as the payments consumer keeps it; None when it keeps
        none (no such order yet, or no payments consumer on this store)."""

    # People: who the events are about (`hookhub_eventlog.people`), kept by `index`.

    @abstractmethod
    async def person_of(self, key: str) -> str | None:
        """The id of the person a normalised identifier (or a person id) is; None for one the
        index has not seen."""

    @abstractmethod
    async def person(self, person_id: str, limit: int = MAX_PERSON_EVENTS) -> Person | None:
        """A person: identifiers, links and events (newest first, at most `limit`); one
        indexed lookup per part. None for an id no identifier has."""

    @abstractmethod
    async def people_at(self, positions: Sequence[int]) -> dict[int, str]:
        """The person each of these events is about (position → person id), for those about
        one: how the event and order pages link to the person page."""

    @abstractmethod
    async def unlink(self, *, identifier: str = "", event_id: str = "") -> list[str]:
        """Undo links: every link of `identifier` (it is not this person), or every link
        `event_id` made (that event was misleading). The persons they joined split again where
        nothing else joins them; an undone link is not made again by a later event. The ids of
        the persons concerned now."""

    @abstractmethod
    async def forget(self, person_id: str) -> list[Forgotten]:
        """The person's index rows, identifiers and links removed, and their events recorded as
        forgotten (the tombstones reads and replays refuse by, and the index skips if it reads
        them again); what was forgotten."""

    @abstractmethod
    async def forgotten(self, event_id: str) -> list[Forgotten]:
        """The tombstones of the events with this id (one per source)."""

    @abstractmethod
    async def close(self) -> None: ...
