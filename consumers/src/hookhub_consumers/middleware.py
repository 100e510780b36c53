"""Middleware: the runtime's hook for cross-cutting work around handling one message.

A middleware is an async callable `(handling, call_next)`. It may act before it awaits
`call_next(handling)`, after (reading what became of the message: `handling.outcome`,
`handling.error`), or around it (a span, a timer). The runtime chains a consumer's middlewares
once, outermost first, around its own last step, which handles the event and settles the message:
acked after its effects, or moved to a retry queue or the parking lot. So a middleware never acks,
retries or parks, and cannot lose a message: one that raises before the runtime's step ran, or
never calls on, has the message retried like a handler's failure; one that raises after it is
logged and changes nothing.

    Consumer(..., middlewares=(*middleware.DEFAULT, my_middleware))

`DEFAULT` is what every consumer runs: a trace span (`traced`), then the metrics (`measured`).
The queue depths, read at scrape time rather than per message, are here too (`count_queues`),
so that every consumer metric is in this module.
"""

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from hookhub import topology, tracing
from hookhub.events import Event
from hookhub.logs import log
from hookhub.settings import Settings
from hookhub.specs import ConsumerSpec
from prometheus_client import Counter, Gauge, Histogram

# What became of a message: acked (processed, or a duplicate of one processed), moved to a retry
# queue or the parking lot, or given back to the broker, which delivers it again.
Settled = Literal["processed", "duplicate", "retried", "dead_lettered", "given_back"]


@dataclass(slots=True)
class Handling:
    """One message in hand, as the middlewares see it."""

    consumer: str
    queue: str  # the one it came from: the work queue, or the archive (a backfill's)
    message: AbstractIncomingMessage
    late: bool  # read from the archive by a backfill: old on purpose
    event: Event | None = None  # None: not a Hookhub event (the runtime parks it)
    outcome: Settled | None = None  # None until the runtime's step settled it
    error: Exception | None = None  # why handling failed (set before the chain when unreadable)


CallNext = Callable[[Handling], Awaitable[None]]
Middleware = Callable[[Handling, CallNext], Awaitable[None]]


def chain(middlewares: Sequence[Middleware], last: CallNext) -> CallNext:
    """`middlewares` around `last`, the first outermost. Built once per consumer; each link is a
    plain function handing back the middleware's coroutine, so a message pays one frame per
    middleware and nothing for the chain itself."""
    call = last
    for middleware in reversed(middlewares):
        call = _link(middleware, call)
    return call


def _link(middleware: Middleware, call_next: CallNext) -> CallNext:
    def call(handling: Handling) -> Awaitable[None]:
        return middleware(handling, call_next)

    return call


# --- tracing ------------------------------------------------------------------------------------


async def traced(handling: Handling, call_next: CallNext) -> None:
    """A CONSUMER span around the rest, continuing the trace the message carries (a backfill's:
    a trace of its own, linked to that one); marked failed when the message was not processed."""
    with tracing.processing(
        handling.consumer, handling.queue, handling.message, late=handling.late
    ):
        await call_next(handling)
        if handling.error is not None:
            tracing.failed(handling.error, handling.outcome or "given_back")


# --- metrics ------------------------------------------------------------------------------------

MESSAGES = Counter(
    "hookhub_consumer_messages_total",
    "Messages handled, by consumer and outcome (processed, duplicate, retried, dead_lettered)",
    ["consumer", "outcome"],
)
EVENT_AGE = Histogram(
    "hookhub_consumer_event_age_seconds",
    "How old an event is when its consumer is done with it (its lag)",
    ["consumer"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
HANDLE_SECONDS = Histogram(
    "hookhub_consumer_handle_seconds",
    "Time to handle one message, effects and settling included",
    ["consumer"],
)
QUEUE_MESSAGES = Gauge(
    "hookhub_queue_messages",
    "Messages waiting in each of a consumer's queues (work, retry, dead-letter), at scrape time",
    ["queue"],
)
DONE = ("processed", "duplicate")


# A labelled child looked up once: `labels()` checks and joins its labels under a lock on every
# call, a few per cent of a message's CPU for three metrics.
_handle_seconds = cache(HANDLE_SECONDS.labels)
_messages = cache(MESSAGES.labels)
_event_age = cache(EVENT_AGE.labels)


async def measured(handling: Handling, call_next: CallNext) -> None:
    """Time the rest, then count the outcome and, for an event done with, its age (its lag)."""
    started = time.perf_counter()
    try:
        await call_next(handling)
    finally:
        _handle_seconds(handling.consumer).observe(time.perf_counter() - started)
    outcome, event = handling.outcome, handling.event
    if outcome is None or outcome == "given_back":  # it comes again, and is counted then
        return
    _messages(handling.consumer, outcome).inc()
    # A backfill's events are old on purpose: they are not this consumer's lag.
    if outcome in DONE and event is not None and not handling.late:
        _event_age(handling.consumer).observe(max(0.0, time.time() - event.time.timestamp()))


DEFAULT: tuple[Middleware, ...] = (traced, measured)


async def count_queues(
    connection: AbstractRobustConnection | None, consumer: ConsumerSpec, settings: Settings
) -> None:
    """Set `hookhub_queue_messages` for a consumer's queues (passive declares: cheap)."""
    if connection is None or connection.is_closed:
        return
    try:
        async with connection.channel() as channel:
            for spec in topology.consumer_queues(
                consumer,
                settings.retry_delays_s,
                settings.delivery_limit,
                topology.deadline_durations(settings, (consumer,)),
            ):
                declared = await channel.declare_queue(spec.name, passive=True)
                QUEUE_MESSAGES.labels(spec.name).set(declared.declaration_result.message_count)
    except Exception as error:  # a missing queue, a dropped connection: the next scrape
        log.warning("metrics.queues_not_counted", error=f"{type(error).__name__}: {error}")
