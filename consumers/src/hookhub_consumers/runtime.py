"""The consumer runtime, written once for every consumer.

It is handed its consumers' specs (`run_consumers(settings, specs, ...)`) and loads the handler
steps each names: one step per binding of the consumer's work queue and per deadline, chosen by
the event's type; it never imports a handler module by name.

A message goes runtime → handler → store/publish. The handler computes; the runtime acts: it
saves the state change, the event's processed-marker and the follow-up events (the outbox) in
one atomic write, then publishes the follow-ups (waiting for the broker's confirms), and only
then acks. Any failure on the way sends the message to a retry queue or the dead-letter queue,
decided in one place (`_settle_failure`).
"""

import asyncio
import gc
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import datetime

import aio_pika
import httpx
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from hookhub import failures, topology, tracing
from hookhub.broker import ERRORS as BROKER_ERRORS
from hookhub.broker import Broker, BrokerUnavailable
from hookhub.events import Event
from hookhub.observability import log
from hookhub.settings import Settings
from hookhub.specs import ConsumerSpec
from hookhub_eventlog.store import EventLog, Step, open_event_log
from prometheus_client import Counter, Gauge, Histogram
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_any,
    wait_exponential,
)

from hookhub_consumers import backfill, retries
from hookhub_consumers.acks import Acks
from hookhub_consumers.contract import Context, Handler, Steps
from hookhub_consumers.outbox import Outbox
from hookhub_consumers.probes import StoreCheck, serving_probes
from hookhub_consumers.store import Change, ConcurrentUpdate, Marker, Store, open_store

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
QUEUE_MESSAGES = Gauge(
    "hookhub_queue_messages",
    "Messages waiting in each of a consumer's queues (work, retry, dead-letter), at scrape time",
    ["queue"],
)
HANDLE_SECONDS = Histogram(
    "hookhub_consumer_handle_seconds", "Time to handle one message, effects included", ["consumer"]
)
# Two events for the same order handled at once: one save loses the version race. Re-reading
# and handling again at once is cheaper than a trip through the retry queues.
CONFLICT_RETRIES = 3
# A failed message whose copy the broker will not take (a refusing channel, a retry queue being
# re-declared) is kept in hand and the copy tried again with backoff, for up to this long, before
# it is given back: given back at once, it would burn through the delivery limit in a second and
# be parked by the broker. Within the 30 s that `stop` waits for the messages in hand.
MOVE_BACKOFF_MAX_S = 5.0
MOVE_GIVE_UP_S = 25.0


class Consumer:
    """One consumer on its work queue: competing with its other processes, prefetch-bounded."""

    def __init__(
        self,
        spec: ConsumerSpec,
        steps: Steps,
        settings: Settings,
        store: Store,
        journal: EventLog,
        http: httpx.AsyncClient,
        backfill_from: datetime | None = None,
    ):
        name = spec.name
        if unserved := steps_disagreeing(spec, steps):
            raise ValueError(f"{name}: handler steps and bindings disagree on {unserved}")
        self.spec = spec
        self.name = name
        self.steps = steps
        self.settings = settings
        self.context = Context(settings, store, http, name)
        self.journal = journal  # where the steps of events' journeys are recorded
        self.broker = Broker(settings, on_connected=self._subscribe)
        self.outbox = Outbox(name, store, self.broker, settings.outbox_relay_interval_s)
        self._stopping = asyncio.Event()
        self._relay: asyncio.Task[None] | None = None
        self._in_hand: set[asyncio.Task[None]] = set()
        self._acks = Acks()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # event key → lock, its users
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._consumer_tag: str | None = None
        # With a backfill, the live queue is taken only once the archive is read to the seam.
        self._backfill_from = backfill_from
        self._live = backfill_from is None
        self._backfill: asyncio.Task[None] | None = None

    async def check(self) -> bool:
        """Ready: subscribed, and the broker takes and confirms our publishes (actively
        re-checked after a confirm stalled, so one slow confirm does not stick)."""
        return await self.broker.check() and self._consumer_tag is not None

    async def start(self) -> None:
        await self.broker.start()
        self._relay = asyncio.create_task(self.outbox.relay(self._stopping), name="outbox-relay")
        if self._backfill_from is not None:
            since = self._backfill_from
            going_live = self._backfill_then_go_live(since)
            self._backfill = asyncio.create_task(going_live, name="backfill")

    async def _backfill_then_go_live(self, since: datetime) -> None:
        """Read the archive from `since` to the seam, then subscribe to the live queue. The
        broker's start-up declared (and bound) the live queue before any of it."""
        progress = backfill.Backfill(since)
        # Events routed before the binding are in the stream within the publishers' confirm
        # timeout (see `backfill`); a second more for the clocks of the processes involved.
        margin_s = self.settings.publish_timeout_s + 1.0
        while not self._stopping.is_set():
            if (connection := self.broker.connection) is None or not self.broker.connected.is_set():
                await asyncio.sleep(0.5)  # the broker connects (or fails over) in the background
                continue
            try:
                await backfill.backfill(
                    self,
                    connection,
                    progress,
                    prefetch=self.settings.prefetch_count,
                    margin_s=margin_s,
                    stop=self._stopping,
                )
                break
            except (backfill.ReadAgain, *BROKER_ERRORS) as error:
                log.warning("backfill.reading_again", error=f"{type(error).__name__}: {error}")
                await asyncio.sleep(1)
            except Exception:  # a defect: said, and tried again rather than hanging unready
                log.exception("backfill.failed", consumer=self.name)
                await asyncio.sleep(5)
        self._live = True
        while not self._stopping.is_set() and self._consumer_tag is None:
            try:
                if (connection := self.broker.connection) is not None:
                    await self._subscribe(connection)
                    break
            except BROKER_ERRORS as error:  # a robust reconnect does not subscribe by itself
                log.warning("consumer.not_subscribed", error=f"{type(error).__name__}: {error}")
            await asyncio.sleep(1)

    async def _subscribe(self, connection: AbstractRobustConnection) -> None:
        if not self._live:
            return  # the backfill subscribes once it reaches the seam
        # A robust channel re-opens and re-subscribes by itself after a reconnect.
        self._channel = await connection.channel()
        await self._channel.set_qos(prefetch_count=self.settings.prefetch_count)
        # Declared (passively) through the robust channel, not fetched: only queues it declared
        # itself are re-subscribed after a reconnect.
        self._queue = await self._channel.declare_queue(
            topology.work_queue(self.name), passive=True
        )
        self._consumer_tag = await self._queue.consume(self._on_message)
        log.info("consumer.started", consumer=self.name, prefetch=self.settings.prefetch_count)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # aiormq cancels a channel's callback tasks when the connection drops. Stopped half-way,
        # a notification POSTed but not yet marked would be POSTed again on redelivery; so the
        # work runs in a task of its own that finishes its effects (the ack then fails, and the
        # redelivery finds the marker).
        await asyncio.shield(self.take(message))

    def take(self, message: AbstractIncomingMessage) -> asyncio.Task[None]:
        """Process the message in a task of its own, which settles it."""
        self._acks.received(message)
        task = asyncio.create_task(self.process(message))
        self._in_hand.add(task)
        task.add_done_callback(self._in_hand.discard)
        return task

    def skip(self, message: AbstractIncomingMessage) -> None:
        """Settle a message this consumer does not process (a backfill's other events)."""
        self._acks.received(message)
        self._acks.ack(message)

    async def process(self, message: AbstractIncomingMessage) -> None:
        """Handle one message; whatever happens, it ends acked, in a retry queue, in the DLQ, or
        (when even parking it fails) back with the broker. Traced: a process span, continuing
        the trace the message carries."""
        if _from_archive(message):  # a backfill's
            queue, late = topology.ARCHIVE_QUEUE, True
        else:
            queue, late = topology.work_queue(self.name), False
        with tracing.processing(self.name, queue, message, late=late):
            await self._process(message)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        try:
            event = Event.from_message(message)
        except Exception as error:  # headers no Hookhub publisher wrote: nothing to retry
            with structlog.contextvars.bound_contextvars(
                consumer=self.name,
                event_id=message.message_id,
                correlation_id=message.correlation_id,
            ):
                reason = f"not a Hookhub event: {error}"
                await self._settle_failure(message, retries.Permanent(reason))
                self._acks.settled(message)
            return
        replayed, reprocess = failures.replay_of(message.headers)
        original_id = event.id
        if reprocess is not None:
            # Reprocessing on purpose: as an event of its own id, so that its marker, its
            # follow-ups and its notification are new, and it is processed once more.
            event = replace(event, id=f"{event.id}#reprocess-{reprocess}")
        marker = Marker.of(self.name, event.source, event.id)
        with structlog.contextvars.bound_contextvars(
            consumer=self.name,
            event_id=event.id,
            correlation_id=event.correlation_id,
            type=event.type,
        ):
            started = time.perf_counter()
            try:
                outcome_name, published = await self._handle(event, marker)
            except Exception as error:  # every failure is settled here, none escapes
                await self._settle_failure(message, error)
                self._acks.settled(message)
                return
            finally:
                HANDLE_SECONDS.labels(self.name).observe(time.perf_counter() - started)
            MESSAGES.labels(self.name, outcome_name).inc()
            if not _from_archive(message):
                # A backfill's events are old on purpose: they are not this consumer's lag.
                EVENT_AGE.labels(self.name).observe(max(0.0, time.time() - event.time.timestamp()))
            log.info("event.processed", outcome=outcome_name)
            if replayed:
                what = "reprocessed" if reprocess else "replayed"
                await self._journey(Step(original_id, self.name, what, outcome_name))
            self._acks.ack(message)
            if published:  # after the ack: forgetting the outbox is not on the ack's path
                await self.outbox.forget(marker)

    async def _handle(self, event: Event, marker: Marker) -> tuple[str, bool]:
        # The events of one order (its subject) are applied one at a time, in the order they
        # arrived (asyncio's locks are fair), and so are two copies of one event in hand at once
        # (a provider's retry, a re-published follow-up): the second finds the first's marker.
        async with self._one_at_a_time(event.subject or marker.event_key):
            return await self._handle_once(event, marker)

    @asynccontextmanager
    async def _one_at_a_time(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def _handle_once(self, event: Event, marker: Marker) -> tuple[str, bool]:
        """The outcome's name, and whether follow-ups were published (their outbox then to be
        forgotten)."""
        store = self.context.store
        if await store.is_processed(marker):
            # What a crash after the commit (or another copy) left unsent.
            return "duplicate", await self.outbox.publish_pending(marker)
        step = self._step_for(event.type)
        for attempt in range(1, CONFLICT_RETRIES + 1):
            outcome = await step(event, self.context)
            # The follow-ups are saved with the state change (the outbox) and published only
            # after the commit: a decision that loses the race to another event's is never sent.
            # The save joins those of the other messages in hand (group commit).
            outbox = tuple(follow_up.to_json() for follow_up in outcome.emit)
            try:
                with tracing.internal("store.save", **{"messaging.consumer.group.name": self.name}):
                    saved = await store.save(Change(marker, outcome.state, outbox))
            except ConcurrentUpdate:
                if attempt == CONFLICT_RETRIES:
                    raise
                continue
            if not saved:  # another delivery of this event saved first: send what it left
                return "duplicate", await self.outbox.publish_pending(marker)
            if outcome.on_saved is not None:
                outcome.on_saved()
            # Saved, so done: follow-ups the broker does not confirm now are the relay's.
            return "processed", bool(outcome.emit) and await self.outbox.publish(outcome.emit)
        raise AssertionError("unreachable")

    def _step_for(self, event_type: str) -> Handler:
        for binding, step in self.steps.items():
            if topology.binding_matches(binding, event_type):
                return step
        # Only a message published straight to the work queue gets here.
        raise retries.Permanent(f"{self.name} does not handle {event_type}")

    async def _settle_failure(self, message: AbstractIncomingMessage, error: Exception) -> None:
        """Retry later or dead-letter; ack the original only once its copy is confirmed."""
        if _taken_back(message):
            # The connection dropped while this was in hand: the broker has taken the message
            # back and redelivers it. A copy parked now would make it two events.
            log.warning("event.unsettled", error=f"{type(error).__name__}: {error}")
            return
        attempts = failures.attempts_so_far(message.headers) + 1
        step = retries.decide(error, attempts, self.settings.retry_delays_s)
        if isinstance(step, retries.RetryLater):
            target, outcome = topology.retry_queue(self.name, step.delay_s), "retried"
            reason = f"{type(error).__name__}: {error}"
        else:
            target, outcome, reason = (
                topology.dead_letter_queue(self.name),
                "dead_lettered",
                step.reason,
            )
        tracing.failed(error, outcome)
        copy = failures.failed_copy(message, consumer=self.name, attempts=attempts, reason=reason)
        if not await self._move(message, copy, target):
            return
        MESSAGES.labels(self.name, outcome).inc()
        log_method = log.warning if outcome == "retried" else log.error
        log_method(f"event.{outcome}", attempts=attempts, reason=reason, queue=target)
        await _settle(message.ack())
        what = "retried" if outcome == "retried" else "parked"
        await self._journey(Step(message.message_id or "", self.name, what, reason))

    async def _move(
        self, message: AbstractIncomingMessage, copy: aio_pika.Message, target: str
    ) -> bool:
        """Publish the failed message's copy to `target`, trying again with backoff while the
        broker will not take it; False when it gave the message back (or the broker has)."""
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(BrokerUnavailable),
                wait=wait_exponential(multiplier=0.2, max=MOVE_BACKOFF_MAX_S),
                stop=stop_any(stop_after_delay(MOVE_GIVE_UP_S), lambda _: _taken_back(message)),
                before_sleep=lambda state: log.warning(
                    "event.move_retrying", queue=target, attempt=state.attempt_number
                ),
                reraise=True,
            ):
                with attempt:
                    await self.broker.publish_to_queue(copy, target)
        except Exception as error:  # still refused, or a copy the broker cannot take at all
            if _taken_back(message):  # the broker took the original back: nothing to settle
                log.warning("event.unsettled", error=f"{type(error).__name__}: {error}")
                return False
            if _from_archive(message):
                # A backfill's: a stream takes no nack (the broker would close the connection).
                raise backfill.ReadAgain(f"could not move {message.message_id!r}") from error
            # The copy may not exist: leave the original with the broker, which counts this
            # delivery towards the limit that finally parks it.
            log.warning("event.requeued", queue=target, error=f"could not move it: {error}")
            await _settle(message.nack(requeue=True))
            return False
        return True

    async def _journey(self, step: Step) -> None:
        """Record a step of the event's journey; the event is settled already, so a store that
        fails now costs the journey a line, not the event."""
        try:
            await self.journal.record(step)
        except Exception as error:
            log.warning("journey.not_recorded", what=step.what, error=f"{type(error).__name__}")

    async def count_queues(self) -> None:
        """Set `hookhub_queue_messages` for this consumer's queues (passive declares: cheap)."""
        connection = self.broker.connection
        if connection is None or connection.is_closed:
            return
        try:
            async with connection.channel() as channel:
                for spec in topology.consumer_queues(
                    self.spec, self.settings.retry_delays_s, self.settings.delivery_limit
                ):
                    declared = await channel.declare_queue(spec.name, passive=True)
                    QUEUE_MESSAGES.labels(spec.name).set(declared.declaration_result.message_count)
        except Exception as error:  # a missing queue, a dropped connection: the next scrape
            log.warning("metrics.queues_not_counted", error=f"{type(error).__name__}: {error}")

    async def stop(self) -> None:
        """Stop taking messages, finish those in hand, then close."""
        self._stopping.set()
        if self._backfill is not None:
            await self._backfill
        if self._queue is not None and self._consumer_tag is not None:
            try:
                # Bounded: a robust channel waits for its connection, which may not come back.
                async with asyncio.timeout(self.settings.connect_timeout_s):
                    await self._queue.cancel(self._consumer_tag)
            except Exception:  # the connection may already be gone; nothing then is in hand
                pass
        if self._in_hand:
            await asyncio.wait(self._in_hand, timeout=30)
        await self._acks.flush()
        if self._relay is not None:
            await self._relay
        await self.broker.close()


def steps_disagreeing(spec: ConsumerSpec, steps: Steps) -> set[str]:
    """The bindings and deadlines of a consumer without a handler step, and steps for neither."""
    return set(spec.handled_types) ^ set(steps)


def _from_archive(message: AbstractIncomingMessage) -> bool:
    return failures.STREAM_OFFSET_HEADER in (message.headers or {})


def _taken_back(message: AbstractIncomingMessage) -> bool:
    """Whether the broker has taken the message back, to deliver it again: a queue's, whose
    channel closed. Never an archive's (a backfill's): a stream delivers nothing again, so its
    failure is moved to the retry queues whatever became of the channel it came on."""
    return not _from_archive(message) and _channel_gone(message)


def _channel_gone(message: AbstractIncomingMessage) -> bool:
    try:
        return message.channel.is_closed
    except aio_pika.exceptions.ChannelInvalidStateError:  # aio-pika's way of saying closed
        return True


async def _settle(ack_or_nack: Awaitable[None]) -> None:
    """Ack or nack; on a channel the connection has dropped, the broker has already taken the
    message back and redelivers it, so there is nothing left to do but say so."""
    try:
        await ack_or_nack
    except Exception as error:
        log.warning("event.unsettled", error=f"{type(error).__name__}: {error}", redelivered=True)


async def _all_ready(consumers: list[Consumer], store_writable: StoreCheck) -> bool:
    return all([await consumer.check() for consumer in consumers]) and await store_writable()


async def _count_queues(consumers: list[Consumer]) -> None:
    for consumer in consumers:
        await consumer.count_queues()


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM: the consumer then stops taking and drains."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_consumers(
    settings: Settings,
    specs: Sequence[ConsumerSpec],
    stop: asyncio.Event,
    *,
    probe_port: int | None = None,
    backfill_from: datetime | None = None,
) -> None:
    """Run each consumer of `specs`, with the handler steps its spec names, in this process
    until `stop` is set; with `backfill_from`, each first processes the archive's events
    of its bindings from then on (see `backfill`)."""
    tracing.configure(f"hookhub-{'-'.join(spec.name for spec in specs)}")  # e.g. hookhub-payments
    store = open_store(settings.store_url)
    journal = open_event_log(settings.store_url)
    async with httpx.AsyncClient(timeout=settings.notify_timeout_s) as http, AsyncExitStack() as up:
        consumers = [
            Consumer(spec, spec.load_steps(), settings, store, journal, http, backfill_from)
            for spec in specs
        ]
        if probe_port is not None:  # first: a port that cannot be served stops the start-up
            store_writable = StoreCheck(store)
            await up.enter_async_context(
                serving_probes(
                    lambda: _all_ready(consumers, store_writable),
                    lambda: _count_queues(consumers),
                    probe_port,
                )
            )
        for consumer in consumers:
            await consumer.start()
        # What start-up built lives as long as the process: frozen out of the collector, it is
        # not walked again by every full collection (as in hub-api).
        gc.collect()
        gc.freeze()
        await stop.wait()
        log.info("consumers.stopping", consumers=[c.name for c in consumers])
        await asyncio.gather(*(c.stop() for c in consumers))
    await store.close()
    await journal.close()
    tracing.flush()
