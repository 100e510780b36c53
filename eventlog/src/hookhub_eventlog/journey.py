"""What became of an event, put together when it is asked for: the index (accepted, and the
follow-ups it caused), the consumers' processed-markers, the steps recorded (retried, parked,
replayed, reprocessed, purged) and the notification deliveries. And which events reached no
consumer at all.

The index knows the events archived since the archive was enabled, for its retention: an event
accepted before (or longer ago) is outside it. What the store keeps of such an event (its
markers, the steps recorded, its deliveries: one replayed or parked before the archive existed)
is still its journey, with a note that the event itself is outside the archive."""

from dataclasses import dataclass, field
from datetime import datetime

from hookhub import specs, topology
from hookhub.settings import get_settings

from hookhub_eventlog.people import ForgottenEvent
from hookhub_eventlog.store import Attempt, EventLog, EventQuery, LoggedEvent, Step

Line = tuple[datetime, str, str, str]  # when, where, what, detail
# How many indexed copies of one id are read to tell its sources apart (a provider's retry is
# indexed again under the same id and source).
MAX_COPIES_OF_AN_ID = 100
# What the event log holds, said wherever it has no such event.
ARCHIVE_HOLDS = (
    "the event log keeps the events archived since the archive was enabled, for its retention "
    "(HOOKHUB_ARCHIVE_MAX_AGE); older events are outside it"
)
OUTSIDE_THE_ARCHIVE = (
    "the event itself is outside the archive (accepted before it was enabled, or older than its "
    "retention, HOOKHUB_ARCHIVE_MAX_AGE): this is what the consumers' store recorded of it"
)


def not_in_the_event_log(event_id: str, source: str | None = None) -> str:
    """What the CLI and the API say of an event the event log does not know."""
    from_source = f" from {source}" if source else ""
    return f"no event with id '{event_id}'{from_source} in the event log: {ARCHIVE_HOLDS}"


class SharedId(LookupError):
    """Events from several sources have this id, and none was chosen: an id is unique only
    within its source (CloudEvents' (source, id)), so which one is for the caller to say."""

    def __init__(self, event_id: str, events: list[LoggedEvent]) -> None:
        sources = ", ".join(event.source for event in events)
        super().__init__(
            f"{len(events)} events have the id '{event_id}' (from {sources}): "
            "choose one by its source"
        )
        self.event_id = event_id
        self.events = events


async def the_event(
    event_log: EventLog, event_id: str, source: str | None = None
) -> LoggedEvent | None:
    """The event (`source`, `event_id`); with no source, the event with that id when only one
    source has it, else `SharedId` listing them. The newest copy when one was published more
    than once (a retried delivery). None when the index knows no such event."""
    query = EventQuery(id=event_id, source=source, limit=MAX_COPIES_OF_AN_ID)
    newest_by_source: dict[str, LoggedEvent] = {}
    for event in await event_log.find_events(query):  # newest first
        newest_by_source.setdefault(event.source, event)
    if len(newest_by_source) > 1:
        raise SharedId(event_id, list(newest_by_source.values()))
    if not newest_by_source:
        await refuse_forgotten(event_log, event_id, source)
    return next(iter(newest_by_source.values()), None)


async def refuse_forgotten(event_log: EventLog, event_id: str, source: str | None = None) -> None:
    """`ForgottenEvent` when the event was forgotten at its person's request (`hookhub people
    forget`): reads and replays of its archived message refuse it, saying until when."""
    for tombstone in await event_log.forgotten(event_id):
        if source is None or tombstone.source == source:
            raise ForgottenEvent(tombstone, get_settings().archive_max_age)


# The source a consumer's follow-ups carry (`hookhub_consumers.handler`): /consumers/<name>.
CONSUMER_SOURCE_PREFIX = "/consumers/"


def first_line(event: LoggedEvent) -> Line:
    """How an event came in: accepted by hub-api, or emitted by a consumer (a follow-up,
    which the hub never received over HTTP)."""
    if event.source.startswith(CONSUMER_SOURCE_PREFIX):
        consumer = event.source.removeprefix(CONSUMER_SOURCE_PREFIX)
        return (event.time, consumer, "emitted", f"{event.type} emitted by {consumer}")
    return (event.time, "hub", "accepted", f"{event.type} from {event.source}")


@dataclass
class Journey:
    event_id: str
    event: LoggedEvent | None  # None: outside the archive, known to the store only
    processed: list[tuple[str, datetime]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    follow_ups: list[LoggedEvent] = field(default_factory=list)
    deliveries: list[Attempt] = field(default_factory=list)

    @property
    def note(self) -> str | None:
        """What a reader must know to read the timeline: None for an event in the archive."""
        return OUTSIDE_THE_ARCHIVE if self.event is None else None

    def timeline(self) -> list[Line]:
        """(when, where, what, detail), oldest first."""
        lines: list[Line] = []
        if self.event is not None:
            event = self.event
            lines.append(first_line(event))
        lines += [(at, consumer, "processed", "") for consumer, at in self.processed]
        lines += [(s.at, s.consumer, s.what, s.detail) for s in self.steps]
        lines += [(f.time, f.source, "caused", f"{f.type} {f.id}") for f in self.follow_ups]
        lines += [
            (d.at, "notifications", "delivered" if d.delivered else "delivery failed",
             f"{d.url} → {d.status_code or d.error or 'no answer yet'}")
            for d in self.deliveries
        ]  # fmt: skip
        return sorted(lines, key=lambda line: line[0])


async def journey(event_log: EventLog, event_id: str, source: str | None = None) -> Journey | None:
    """The journey of the event (`source`, `event_id`), found as `the_event` finds it (so
    `SharedId` when several sources have the id and none was given). When the index does not
    know it, what the store recorded of it (`Journey.event` None); None when nothing did."""
    event = await the_event(event_log, event_id, source)
    if event is None:
        return await _outside_the_archive(event_log, event_id, source)
    return Journey(
        event_id=event.id,
        event=event,
        processed=await event_log.processed_by(event.source, event.id),
        steps=await event_log.steps(event.id),
        follow_ups=await event_log.find_events(EventQuery(causation_id=event.id)),
        deliveries=await event_log.attempts(event.id, event.source),
    )


async def _outside_the_archive(
    event_log: EventLog, event_id: str, source: str | None
) -> Journey | None:
    """The journey of an event the index lacks: its markers (under every source that has one
    for this id, unless `source` says which), its steps, follow-ups and deliveries."""
    sources = [source] if source else await event_log.marked_sources(event_id)
    processed = [marked for s in sources for marked in await event_log.processed_by(s, event_id)]
    found = Journey(
        event_id=event_id,
        event=None,
        processed=sorted(processed, key=lambda marked: marked[1]),
        steps=await event_log.steps(event_id),
        follow_ups=await event_log.find_events(EventQuery(causation_id=event_id)),
        deliveries=await event_log.attempts(event_id),
    )
    if not (found.processed or found.steps or found.follow_ups or found.deliveries):
        return None
    return found


def consumer_bindings() -> tuple[str, ...]:
    """The binding keys of the installed consumers: an event none of them matches is unrouted
    (`EventQuery(unbound_by=consumer_bindings())` finds those in the store, before its limit)."""
    return tuple(key for spec in specs.installed() for key in spec.bindings)


def unrouted(events: list[LoggedEvent]) -> list[LoggedEvent]:
    """The events no consumer binds: kept only by the archive."""
    bindings = consumer_bindings()
    return [e for e in events if not any(topology.binding_matches(k, e.type) for k in bindings)]
