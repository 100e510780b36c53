"""The failure protocol: what a failed message carries, and the copies that move it.

When a consumer fails on a message, it publishes a copy to a retry queue or to the dead-letter
queue (the parking lot) and acks the original. The copy is the same message (body, properties)
with headers saying why: the consumers write them (`failed_copy`), the operator tools read them
(`reading`), and a replay strips them again (`replay_copy`). Nothing else spells these names.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

PREFIX = "x-hookhub-"
ATTEMPTS_HEADER = f"{PREFIX}attempts"
REASON_HEADER = f"{PREFIX}reason"
FAILED_AT_HEADER = f"{PREFIX}failed-at"
FAILED_IN_HEADER = f"{PREFIX}consumer"
# A copy goes to a retry queue through the default exchange, keyed by the queue's name: the
# event's own routing key would be lost without this.
ROUTING_KEY_HEADER = f"{PREFIX}routing-key"
# On a replayed copy: when it was replayed; and, for a deliberate reprocessing of an event a
# consumer already processed, the replay's id (the consumer then processes it again, once).
REPLAYED_HEADER = f"{PREFIX}replayed"
REPROCESS_HEADER = f"{PREFIX}reprocess"
# What the broker writes when it dead-letters a message (prefixes), or reads it from a stream.
BROKER_DEATH_HEADERS = ("x-death", "x-first-death-", "x-last-death-")
STREAM_OFFSET_HEADER = "x-stream-offset"
MAX_REASON_CHARS = 1000


def attempts_so_far(headers: dict[str, Any] | None) -> int:
    """How many times this message has failed before (0 on its first delivery)."""
    value = (headers or {}).get(ATTEMPTS_HEADER, 0)
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else 0


def original_routing_key(message: AbstractIncomingMessage) -> str | None:
    """The routing key the message was first published with, also after a trip through a retry
    queue (which delivers it keyed by the work queue's name)."""
    kept = (message.headers or {}).get(ROUTING_KEY_HEADER)
    if kept:
        return kept.decode() if isinstance(kept, bytes) else str(kept)
    return message.routing_key


def failure_headers(
    headers: dict[str, Any] | None, *, consumer: str, attempts: int, reason: str, routing_key: str
) -> dict[str, Any]:
    """The message's headers plus what an operator needs to see why it failed.

    The broker's own dead-letter history (`x-death`, ...) is dropped: from here on it records
    only what the broker does after this failure, so a message the broker parks later (the
    delivery limit) says so, instead of showing this older reason. So is a stream's offset: the
    copy is a queue's message, not the archive's."""
    broker_s = (*BROKER_DEATH_HEADERS, STREAM_OFFSET_HEADER)  # a backfill's, read from a stream
    kept = {k: v for k, v in (headers or {}).items() if not k.startswith(broker_s)}
    return {
        **kept,
        ATTEMPTS_HEADER: attempts,
        REASON_HEADER: reason[:MAX_REASON_CHARS],
        FAILED_AT_HEADER: datetime.now(UTC).isoformat(),
        FAILED_IN_HEADER: consumer,
        ROUTING_KEY_HEADER: kept.get(ROUTING_KEY_HEADER) or routing_key,
    }


def _copy(
    message: AbstractIncomingMessage, headers: dict[str, Any], expiration_s: float | None = None
) -> aio_pika.Message:
    """The same message, body and properties, with other headers (and a TTL of its own, or
    none: the one it was delivered with, a deadline's, is spent)."""
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        expiration=expiration_s,
    )


def failed_copy(
    message: AbstractIncomingMessage,
    *,
    consumer: str,
    attempts: int,
    reason: str,
    expiration_s: float | None = None,
) -> aio_pika.Message:
    """What goes to a retry queue or the dead-letter queue after the `attempts`-th failure;
    with `expiration_s`, a retry that waits less than its queue's TTL (`retries`)."""
    headers = failure_headers(
        dict(message.headers or {}),
        consumer=consumer,
        attempts=attempts,
        reason=reason,
        routing_key=message.routing_key or "",
    )
    return _copy(message, headers, expiration_s)


def replay_copy(
    message: AbstractIncomingMessage, *, reprocess: str | None = None
) -> aio_pika.Message:
    """The message as it was first delivered, marked as replayed: failure bookkeeping removed,
    attempts reset. With `reprocess` (a replay's id), consumers process it again even though
    they already did."""
    headers = {
        k: v
        for k, v in (message.headers or {}).items()
        if k not in ("x-death", STREAM_OFFSET_HEADER)
        and (not k.startswith(PREFIX) or k == ROUTING_KEY_HEADER)
    }
    headers[REPLAYED_HEADER] = datetime.now(UTC).isoformat()
    if reprocess is not None:
        headers[REPROCESS_HEADER] = reprocess
    from_archive = STREAM_OFFSET_HEADER in (message.headers or {})
    if from_archive and message.routing_key and ROUTING_KEY_HEADER not in headers:
        # It goes to a queue by the queue's name: keep the key it was published with.
        headers[ROUTING_KEY_HEADER] = message.routing_key
    return _copy(message, headers)


def replay_of(headers: dict[str, Any] | None) -> tuple[bool, str | None]:
    """Whether a delivered message is a replayed copy, and the reprocessing id if it is one."""
    headers = headers or {}
    reprocess = headers.get(REPROCESS_HEADER)
    return REPLAYED_HEADER in headers, _text(reprocess) if reprocess else None


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """Why a parked message is parked, as its headers tell it."""

    reason: str
    attempts: int
    failed_at: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def reading(headers: dict[str, Any]) -> FailureRecord:
    """The failure a parked message's headers record: the consumer's, or the broker's when the
    broker parked it after the consumer's last recorded failure."""
    reason, failed_at = headers.get(REASON_HEADER), headers.get(FAILED_AT_HEADER, "")
    # The consumer drops x-death whenever it records a failure, so a delivery_limit death here
    # came after the last one it recorded: the broker parked a message that crashed its consumer.
    deaths = headers.get("x-death") or [{}]
    if _text(deaths[0].get("reason", "")) == "delivery_limit" or (reason is None and deaths[0]):
        death = deaths[0]
        reason = f"broker: {_text(death.get('reason'))} on {_text(death.get('queue'))}"
        failed_at = death["time"].isoformat() if "time" in death else ""
    return FailureRecord(
        reason=_text(reason or "unknown"),
        attempts=attempts_so_far(headers),
        failed_at=_text(failed_at),
    )
