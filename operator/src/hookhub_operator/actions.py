"""What an operator changes: parked messages replayed or purged. Each change is recorded in the
journey of every event it touched, with who did it, and logged."""

from dataclasses import dataclass
from datetime import UTC, datetime

from aio_pika.abc import AbstractConnection
from hookhub import dlq
from hookhub.logs import log
from hookhub_eventlog.store import EventLog, Step
from prometheus_client import Counter

from hookhub_operator.auth import Operator

CHANGES = Counter(
    "hookhub_operator_changes_total",
    "Parked messages replayed or purged from the console",
    ["what"],
)
REPLAYED, PURGED = "replayed", "purged"


@dataclass(frozen=True, slots=True)
class Change:
    what: str  # REPLAYED or PURGED
    consumer: str
    asked: int  # how many the operator confirmed
    done: list[str]  # the ids replayed or purged (fewer when some had left the parking lot)


async def _record(event_log: EventLog, change: Change, operator: Operator, at: datetime) -> None:
    for event_id in dict.fromkeys(change.done):
        detail = f"by {operator.name} (console)"
        await event_log.record(Step(event_id, change.consumer, change.what, detail, at))
    CHANGES.labels(change.what).inc(len(change.done))
    log.info(
        f"operator.{change.what}",
        operator=operator.name,
        consumer=change.consumer,
        asked=change.asked,
        done=len(change.done),
    )


async def replay(
    connection: AbstractConnection,
    event_log: EventLog,
    operator: Operator,
    consumer: str,
    ids: set[str],
    timeout_s: float,
) -> Change:
    """Put the parked messages with these ids back on the consumer's work queue."""
    # Recorded as of before the replay: the consumer may process a copy (and record that)
    # before this returns, and the journey should read in the order things happened.
    at = datetime.now(UTC)
    done = await dlq.replay(connection, consumer, ids, timeout_s)
    change = Change(REPLAYED, consumer, len(ids), done)
    await _record(event_log, change, operator, at)
    return change


async def purge(
    connection: AbstractConnection,
    event_log: EventLog,
    operator: Operator,
    consumer: str,
    ids: set[str],
) -> Change:
    """Delete the parked messages with these ids: they cannot be replayed from the parking lot
    afterwards (the archive still has them, for `hookhub events replay`)."""
    at = datetime.now(UTC)
    done = await dlq.discard(connection, consumer, ids)
    change = Change(PURGED, consumer, len(ids), done)
    await _record(event_log, change, operator, at)
    return change
