"""What became of an event, put together when it is asked for: the index (accepted, and the
follow-ups it caused), the consumers' processed-markers, the steps recorded (retried, parked,
replayed, reprocessed, purged) and the notification deliveries. And which events reached no
consumer at all."""

from dataclasses import dataclass, field
from datetime import datetime

from hookhub import specs, topology

from hookhub_eventlog.store import Attempt, EventLog, EventQuery, LoggedEvent, Step

Line = tuple[datetime, str, str, str]  # when, where, what, detail


@dataclass
class Journey:
    event: LoggedEvent
    processed: list[tuple[str, datetime]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    follow_ups: list[LoggedEvent] = field(default_factory=list)
    deliveries: list[Attempt] = field(default_factory=list)

    def timeline(self) -> list[Line]:
        """(when, where, what, detail), oldest first."""
        lines = [
            (self.event.time, "hub", "accepted", f"{self.event.type} from {self.event.source}")
        ]
        lines += [(at, consumer, "processed", "") for consumer, at in self.processed]
        lines += [(s.at, s.consumer, s.what, s.detail) for s in self.steps]
        lines += [(f.time, f.source, "caused", f"{f.type} {f.id}") for f in self.follow_ups]
        lines += [
            (d.at, "notifications", "delivered" if d.delivered else "delivery failed",
             f"{d.url} → {d.status_code or d.error or 'no answer yet'}")
            for d in self.deliveries
        ]  # fmt: skip
        return sorted(lines, key=lambda line: line[0])


async def journey(event_log: EventLog, event_id: str) -> Journey | None:
    """The journey of the event with this id; None when the index does not know it."""
    found = await event_log.find_events(EventQuery(id=event_id, limit=1))
    if not found:
        return None
    event = found[0]
    return Journey(
        event=event,
        processed=await event_log.processed_by(event.source, event.id),
        steps=await event_log.steps(event.id),
        follow_ups=await event_log.find_events(EventQuery(causation_id=event.id)),
        deliveries=await event_log.attempts(event.id),
    )


def unrouted(events: list[LoggedEvent]) -> list[LoggedEvent]:
    """The events no consumer binds: kept only by the archive."""
    bindings = [key for spec in specs.installed() for key in spec.bindings]
    return [e for e in events if not any(topology.binding_matches(k, e.type) for k in bindings)]
