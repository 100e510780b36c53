"""The retry policy, in one place: what happens to a message whose handling failed.

Business code asks for a retry by raising `Retry` (or any unexpected exception), optionally with
the least it should wait (`Retry("rate limited", delay_s=60)`), and gives up by raising
`Permanent`. `decide` (pure) turns the error, the attempt count and the `Policy` (the settings'
delays and jitter) into the next step; `retry_or_park` carries it out: a copy of the message
(`hookhub.failures`) to a retry queue or the parking lot, confirmed, and only then the original
acked. Attempts travel with the message, so every retry counts, a requested delay's too.

Waits ride on the fixed retry queues (`topology.retry_queue`, one per configured delay, the delay
being the queue's TTL), never on one shared queue of per-message TTLs: RabbitMQ expires a message
only at the head of its queue, so a short wait queued behind a long one would wait the long one
out. Within the queue of delay `d` a copy may carry a shorter TTL of its own, drawn from a narrow
band, `[(1 - jitter_ratio) * d, d]`: retries of a burst of failures spread over the band instead of
all coming back in the same second. A copy queued at `t` leaves by `t + d` whatever is ahead of it
(those were queued earlier, with TTLs of at most `d`), so its wait stays within its band. A
requested delay goes to the shortest retry queue at least that long and waits there no less than
requested (the band's floor raised to it); one longer than every queue waits the longest.
"""

import random
from dataclasses import dataclass
from typing import Literal

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from hookhub import failures, topology
from hookhub.broker import (
    Broker,
    BrokerUnavailable,
    MessageTooLarge,
    check_size,
)
from hookhub.events import CE_PREFIX
from hookhub.logs import log
from hookhub.settings import Settings
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_any,
    wait_exponential,
)

from hookhub_consumers import acks, backfill


class Retry(Exception):
    """A failure that may pass: retry with backoff, then dead-letter. With `delay_s`, the next
    attempt comes no sooner than that (at most the longest configured delay)."""

    def __init__(self, *args: object, delay_s: float | None = None) -> None:
        super().__init__(*args)
        self.delay_s = delay_s


class Permanent(Exception):
    """A failure that retrying cannot fix: dead-letter at once with this reason."""


class Hold(Exception):
    """A message this release cannot handle but a newer one can (a type it does not know, on its
    own work queue: only a newer release binds or sends it there). Held, never parked: it waits
    the longest retry delay and comes back, its attempts not counted, until a release that
    handles it takes it (during a rolling upgrade, the new processes beside the old)."""


# Errors that the same message raises again however often it is retried: a number too large for
# the store (OverflowError), JSON nested past Python's limit (RecursionError), a value of the
# wrong type in a header or payload (TypeError), a follow-up too large to publish
# (MessageTooLarge). Parked at once, with the reason.
NEVER_PASS = (Permanent, OverflowError, RecursionError, TypeError, MessageTooLarge)
# What a copy too large to move keeps whatever else it must drop: the failure headers and the
# event's identity, enough for `hookhub dlq list` and a replay.
KEPT_WHEN_TOO_LARGE = frozenset(
    f"{CE_PREFIX}{name}" for name in ("specversion", "id", "source", "type", "time")
)
MAX_NAMED_DROPPED = 3  # headers a too-large copy's reason names; the rest are counted

# A failed message whose copy the broker will not take (a refusing channel, a retry queue being
# re-declared) is kept in hand and the copy tried again with backoff, for up to this long, before
# it is given back: given back at once, it would burn through the delivery limit in a second and
# be parked by the broker. Within the 30 s that `Consumer.stop` waits for the messages in hand.
MOVE_BACKOFF_MAX_S = 5.0
MOVE_GIVE_UP_S = 25.0


def worth_retrying(http_status: int) -> bool:
    """An HTTP answer that may change later: every 5xx, a request timeout, rate limiting."""
    return http_status >= 500 or http_status in (408, 429)


@dataclass(frozen=True, slots=True)
class Policy:
    """The n-th failure waits `delays_s[n - 1]` (one retry queue per delay), less up to
    `jitter_ratio` of it; the failure after the last delay is parked."""

    delays_s: tuple[float, ...]
    jitter_ratio: float = 0.0

    @classmethod
    def of(cls, settings: Settings) -> "Policy":
        return cls(settings.retry_delays_s, settings.retry_jitter_ratio)

    def queue_delay_s(self, requested_s: float) -> float:
        """The retry queue that serves a requested wait: the shortest delay that is at least as
        long, or the longest of all when none is."""
        longer = [delay_s for delay_s in self.delays_s if delay_s >= requested_s]
        return min(longer) if longer else max(self.delays_s)


@dataclass(frozen=True, slots=True)
class RetryLater:
    delay_s: float  # the retry queue's (its TTL): `topology.retry_queue(consumer, delay_s)`
    wait_s: float  # the copy's own TTL, at most `delay_s`


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str


def decide(
    error: BaseException, attempts: int, policy: Policy, draw: float = 1.0
) -> RetryLater | DeadLetter:
    """The next step after the `attempts`-th failure (1-based) ended in `error`. `draw` (in
    [0, 1], random in the runtime) picks the wait within the jitter band: 1.0 the queue's full
    delay, 0.0 the shortest wait the band (and a requested delay) allows."""
    reason = f"{type(error).__name__}: {error}"
    if isinstance(error, Hold):
        longest_s = max(policy.delays_s)
        return RetryLater(longest_s, longest_s)
    if isinstance(error, Permanent):
        return DeadLetter(f"permanent failure: {error}")
    if isinstance(error, NEVER_PASS):
        return DeadLetter(f"permanent failure: {reason}")
    if attempts > len(policy.delays_s):
        return DeadLetter(f"gave up after {attempts} attempts; last error {reason}")
    requested_s = error.delay_s if isinstance(error, Retry) else None
    if requested_s is None:
        delay_s, at_least_s = policy.delays_s[attempts - 1], 0.0
    else:
        delay_s, at_least_s = policy.queue_delay_s(requested_s), requested_s
    shortest_s = min(delay_s, max(at_least_s, delay_s * (1 - policy.jitter_ratio)))
    return RetryLater(delay_s, shortest_s + (delay_s - shortest_s) * draw)


# --- carrying it out ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Moved:
    outcome: Literal["retried", "dead_lettered"]
    reason: str


async def retry_or_park(
    message: AbstractIncomingMessage,
    error: Exception,
    consumer: str,
    policy: Policy,
    broker: Broker,
) -> Moved | None:
    """Move a failed message to a retry queue or the parking lot, as `decide` says, and ack the
    original once its copy is confirmed. None when the message is back with the broker instead
    (its channel closed, or no copy could be made): the broker delivers it again."""
    if acks.taken_back(message):
        # The connection dropped while this was in hand: the broker has taken the message
        # back and redelivers it. A copy parked now would make it two events.
        log.warning("event.unsettled", error=f"{type(error).__name__}: {error}")
        return None
    held = isinstance(error, Hold)
    attempts = failures.attempts_so_far(message.headers) + (0 if held else 1)
    step = decide(error, attempts, policy, random.random())
    if isinstance(step, RetryLater):
        moved = Moved("retried", f"{'held' if held else type(error).__name__}: {error}")
        target = topology.retry_queue(consumer, step.delay_s)
        # The queue's TTL is the full delay: a copy carries its own only when shorter.
        expiration_s = step.wait_s if step.wait_s < step.delay_s else None
    else:
        moved = Moved("dead_lettered", step.reason)
        target, expiration_s = topology.dead_letter_queue(consumer), None
    copy = failures.failed_copy(
        message,
        consumer=consumer,
        attempts=attempts,
        reason=moved.reason,
        expiration_s=expiration_s,
    )
    try:
        taken = await _move(message, copy, target, broker)
    except MessageTooLarge as error:
        # Its own headers and ours take more than a publish may carry: no queue could ever take
        # this copy, and given back it would come round forever. Parked without its largest
        # headers instead, the reason naming them.
        log.error("event.too_large", largest=error.largest, size_bytes=error.size_bytes)
        copy = fitting(copy, moved.reason)
        moved = Moved("dead_lettered", str(copy.headers[failures.REASON_HEADER]))
        target, expiration_s = topology.dead_letter_queue(consumer), None
        copy.expiration = None
        taken = await _move(message, copy, target, broker)
    if not taken:
        return None
    log_method = log.warning if moved.outcome == "retried" else log.error
    waited = {} if expiration_s is None else {"wait_s": round(expiration_s, 3)}
    log_method(
        f"event.{moved.outcome}", attempts=attempts, reason=moved.reason, queue=target, **waited
    )
    await acks.settle(message.ack())
    return moved


async def _move(
    message: AbstractIncomingMessage, copy: aio_pika.Message, target: str, broker: Broker
) -> bool:
    """Publish the failed message's copy to `target`, trying again with backoff while the
    broker will not take it; False when it gave the message back (or the broker has)."""
    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(BrokerUnavailable),
            wait=wait_exponential(multiplier=0.2, max=MOVE_BACKOFF_MAX_S),
            stop=stop_any(stop_after_delay(MOVE_GIVE_UP_S), lambda _: acks.taken_back(message)),
            before_sleep=lambda state: log.warning(
                "event.move_retrying", queue=target, attempt=state.attempt_number
            ),
            reraise=True,
        ):
            with attempt:
                await broker.publish_to_queue(copy, target)
    except MessageTooLarge:  # no queue will ever take this copy: the caller's to shrink
        raise
    except Exception as error:  # still refused, or a copy the broker cannot take at all
        if acks.taken_back(message):  # the broker took the original back: nothing to settle
            log.warning("event.unsettled", error=f"{type(error).__name__}: {error}")
            return False
        if acks.from_archive(message):
            # A backfill's: a stream takes no nack (the broker would close the connection).
            raise backfill.ReadAgain(f"could not move {message.message_id!r}") from error
        # The copy may not exist: leave the original with the broker, which counts this
        # delivery towards the limit that finally parks it.
        log.warning("event.requeued", queue=target, error=f"could not move it: {error}")
        await acks.settle(message.nack(requeue=True))
        return False
    return True


def fitting(copy: aio_pika.Message, reason: str) -> aio_pika.Message:
    """`copy` without its largest headers, dropped one by one until it can be published (the
    event's identity and the failure headers last of all), its reason `reason` and a short
    account of what was dropped."""
    headers = dict(copy.headers or {})
    ours = {name for name in headers if name.startswith(failures.PREFIX)}

    def droppable_first(name: str) -> tuple[bool, bool, int]:
        return (name in ours, name in KEPT_WHEN_TOO_LARGE, -len(str(headers[name])))

    candidates = sorted(set(headers) - {failures.REASON_HEADER}, key=droppable_first)
    dropped: list[str] = []
    while True:
        named = ", ".join(name[:64] for name in dropped[:MAX_NAMED_DROPPED])
        more = len(dropped) - MAX_NAMED_DROPPED
        account = f"{named}{f' and {more} more' if more > 0 else ''}"
        # The account first: the reason it is put before may be cut at MAX_REASON_CHARS.
        said = f"too large to move, dropped header(s) {account}: {reason}"
        headers[failures.REASON_HEADER] = said[: failures.MAX_REASON_CHARS]
        copy.headers = headers
        try:
            check_size(copy.properties)
            return copy
        except MessageTooLarge:
            if not candidates:
                raise
            dropped.append(name := candidates.pop(0))
            del headers[name]
