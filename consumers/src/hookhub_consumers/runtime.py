"""The consumer runtime, written once for every consumer.

It is handed its consumers' specs (`run_consumers(settings, specs, ...)`) and loads the handler
steps each names: one step per binding of the consumer's work queue and per deadline, chosen by
the event's type; it never imports a handler module by name.

A message goes runtime → handler → store/publish. The handler computes; the runtime acts: it
saves the state change, the event's processed-marker and the follow-up events (the outbox) in
one atomic write, then publishes the follow-ups (waiting for the broker's confirms), and only
then acks. Any failure on the way sends the message to a retry queue or the dead-letter queue,
as `retries` decides. Cross-cutting work (the trace span, the metrics) wraps that in the
consumer's middlewares (`middleware`).
"""

import asyncio
import gc
import signal
from collections import deque
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import datetime

import aio_pika
import httpx
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from hookhub import failures, topology, tracing
from hookhub.broker import ERRORS as BROKER_ERRORS
from hookhub.broker import Broker
from hookhub.events import Event
from hookhub.logs import log
from hookhub.settings import Settings
from hookhub.specs import ConsumerSpec
from hookhub_eventlog.store import EventLog, Step, open_event_log

from hookhub_consumers import acks, backfill, middleware, retries
from hookhub_consumers.acks import Acks
from hookhub_consumers.handler import Context, Handler, Steps
from hookhub_consumers.journeys import Journeys
from hookhub_consumers.middleware import Handling, Middleware, Settled
from hookhub_consumers.outbox import Outbox
from hookhub_consumers.probes import StoreCheck, serving_probes
from hookhub_consumers.store import Change, ConcurrentUpdate, Marker, Store, open_store

# Two events for the same order handled at once: one save loses the version race. Re-reading
# and handling again at once is cheaper than a trip through the retry queues.
CONFLICT_RETRIES = 3


class Consumer:
    """One consumer on its work queue: competing with its other processes, prefetch-bounded."""

    def __init__(
        self,
        spec: ConsumerSpec,
        steps: Steps,
        settings: Settings,
        store: Store,
        journal: "EventLog | Journeys",
        http: httpx.AsyncClient,
        backfill_from: datetime | None = None,
        middlewares: Sequence[Middleware] = middleware.DEFAULT,
    ):
        name = spec.name
        if unserved := steps_disagreeing(spec, steps):
            raise ValueError(f"{name}: handler steps and bindings disagree on {unserved}")
        self.spec = spec
        self.name = name
        self.steps = steps
        self.settings = settings
        self.policy = retries.Policy.of(settings)
        self.context = Context(settings, store, http, name)
        # Where the steps of events' journeys are recorded: the process's, shared by its
        # consumers (`run_consumers`), or one of its own.
        self.journeys = journal if isinstance(journal, Journeys) else Journeys(journal)
        self._stopping = asyncio.Event()
        self._subscription = Subscription(self, backfill_from, self._stopping)
        self.broker = Broker(settings, on_connected=self._subscription.on_connected)
        self.outbox = Outbox(
            name, store, self.broker, settings.outbox_relay_interval_s, journey=self._journey
        )
        self._chain = middleware.chain(middlewares, self._settle)
        self._relay: asyncio.Task[None] | None = None
        self._in_hand: set[asyncio.Task[None]] = set()
        self._acks = Acks()
        self._one_at_a_time = OneAtATime()

    async def check(self) -> bool:
        """Ready: subscribed, and the broker takes and confirms our publishes (actively
        re-checked after a confirm stalled, so one slow confirm does not stick)."""
        return await self.broker.check() and self._subscription.subscribed

    async def start(self) -> None:
        await self.broker.start()
        self._relay = asyncio.create_task(self.outbox.relay(self._stopping), name="outbox-relay")
        self._subscription.start()

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
        """Handle one message through the middlewares; whatever happens, it ends acked, in a
        retry queue, in the DLQ, or (when even parking it fails) back with the broker."""
        late = acks.from_archive(message)  # a backfill's
        queue = topology.ARCHIVE_QUEUE if late else topology.work_queue(self.name)
        handling = Handling(self.name, queue, message, late)
        try:
            handling.event = Event.from_message(message)
        except Exception as error:  # headers no Hookhub publisher wrote: nothing to retry
            handling.error = retries.Permanent(f"not a Hookhub event: {error}")
        failed: Exception | None = None
        try:
            await self._chain(handling)
        except backfill.ReadAgain:  # the backfill's to deal with
            raise
        except Exception as error:  # a middleware's (or a defect's): said, never lost
            log.exception("event.handling_failed", consumer=self.name, event_id=message.message_id)
            failed = error
        if handling.outcome is None:  # never settled: a middleware failed or did not call on
            await self._fail(handling, failed or RuntimeError("a middleware did not call on"))

    async def _settle(self, handling: Handling) -> None:
        """The last step of the chain: handle the event, then ack it, or retry or park it."""
        message, event = handling.message, handling.event
        if event is None:  # `process` could not read one, and put why in `error`
            ids = {"event_id": message.message_id, "correlation_id": message.correlation_id}
            with structlog.contextvars.bound_contextvars(consumer=self.name, **ids):
                await self._fail(handling, handling.error or retries.Permanent("not an event"))
            return
        replayed, reprocess = failures.replay_of(message.headers)
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
            try:
                outcome, published = await self._handle(event, marker)
            except Exception as error:  # every failure is settled here, none escapes
                await self._fail(handling, error)
                return
            log.info("event.processed", outcome=outcome)
            if replayed:
                what = "reprocessed" if reprocess else "replayed"
                await self._journey(Step(handling.event.id, self.name, what, outcome))
            handling.outcome = outcome
            self._acks.ack(message)
            if published:  # with the next group: forgetting the outbox costs no write of its own
                self.outbox.forget_soon(marker)

    async def _handle(self, event: Event, marker: Marker) -> tuple[Settled, bool]:
        # The events of one order (its subject) are applied one at a time, in the order they
        # arrived (asyncio's locks are fair), and so are two copies of one event in hand at once
        # (a provider's retry, a re-published follow-up): the second finds the first's marker.
        async with self._one_at_a_time(event.subject or marker.event_key):
            return await self._handle_once(event, marker)

    async def _handle_once(self, event: Event, marker: Marker) -> tuple[Settled, bool]:
        """The outcome's name, and whether follow-ups were published (their outbox then to be
        forgotten)."""
        store = self.context.store
        if await store.is_processed(marker):
            return self._duplicate()
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
            if not saved:  # another copy of this event saved first
                return self._duplicate()
            if outcome.on_saved is not None:
                outcome.on_saved()
            # Saved, so done: follow-ups the broker does not confirm now are the relay's.
            return "processed", bool(outcome.emit) and await self.outbox.publish(outcome.emit)
        raise AssertionError("unreachable")

    @staticmethod
    def _duplicate() -> tuple[Settled, bool]:
        # The outbox of a copy handled before is never published here: the copy that saved it
        # may be publishing it right now, in this process or another, and two publishers would
        # send every follow-up twice. What it leaves unsent (it died after its commit, the
        # broker refused) the outbox relay publishes, one relay interval later.
        return "duplicate", False

    def _step_for(self, event_type: str) -> Handler:
        for binding, step in self.steps.items():
            if topology.binding_matches(binding, event_type):
                return step
        # A type the steps do not cover reaches the work queue only from a newer release (its
        # bindings, its deadlines) or from someone publishing straight to the queue: held for a
        # release that handles it, never parked (a rolling upgrade must not lose it).
        raise retries.Hold(f"{self.name} does not handle {event_type}: held for a newer release")

    async def _fail(self, handling: Handling, error: Exception) -> None:
        """Retry or park the message (`retries`), and say so in the event's journey."""
        handling.error = error
        message = handling.message
        moved = await retries.retry_or_park(message, error, self.name, self.policy, self.broker)
        self._acks.settled(message)
        handling.outcome = "given_back" if moved is None else moved.outcome
        if moved is not None:
            what = "retried" if moved.outcome == "retried" else "parked"
            await self._journey(Step(message.message_id or "", self.name, what, moved.reason))

    async def _journey(self, step: Step) -> None:
        """Record a step of the event's journey; the event is settled already, so a store that
        fails now does not hold it up: the step is kept and written later (`Journeys`)."""
        await self.journeys.record(step)

    async def stop(self) -> None:
        """Stop taking messages, finish those in hand, then close."""
        self._stopping.set()
        await self._subscription.cancel()
        if self._in_hand:
            await asyncio.wait(self._in_hand, timeout=30)
        await self._acks.flush()
        if self._relay is not None:
            await self._relay
        await self.journeys.close()
        await self.broker.close()


def steps_disagreeing(spec: ConsumerSpec, steps: Steps) -> set[str]:
    """The bindings and deadlines of a consumer without a handler step, and steps for neither."""
    return set(spec.handled_types) ^ set(steps)


class Subscription:
    """How a consumer's messages come in: its work queue, subscribed again on every reconnect;
    with a backfill, first the archive from a point in time to the seam, and only then the queue
    (`backfill`)."""

    def __init__(
        self, consumer: Consumer, backfill_from: datetime | None, stop: asyncio.Event
    ) -> None:
        self._consumer = consumer
        self._name, self._settings = consumer.name, consumer.settings
        self._stop = stop
        self._backfill_from = backfill_from
        self._live = backfill_from is None  # with a backfill, the queue waits for the seam
        self._backfill: asyncio.Task[None] | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._tag: str | None = None

    @property
    def subscribed(self) -> bool:
        return self._tag is not None

    def start(self) -> None:
        if self._backfill_from is not None:
            going_live = self._backfill_then_go_live(self._backfill_from)
            self._backfill = asyncio.create_task(going_live, name="backfill")

    async def _backfill_then_go_live(self, since: datetime) -> None:
        """Read the archive from `since` to the seam, then subscribe to the live queue. The
        broker's start-up declared (and bound) the live queue before any of it."""
        progress = backfill.Backfill(since)
        # Events routed before the binding are in the stream within the publishers' confirm
        # timeout (see `backfill`); a second more for the clocks of the processes involved.
        margin_s = self._settings.publish_timeout_s + 1.0
        broker = self._consumer.broker
        while not self._stop.is_set():
            if (connection := broker.connection) is None or not broker.connected.is_set():
                await asyncio.sleep(0.5)  # the broker connects (or fails over) in the background
                continue
            try:
                await backfill.backfill(
                    self._consumer,
                    connection,
                    progress,
                    prefetch=self._settings.prefetch_count,
                    margin_s=margin_s,
                    stop=self._stop,
                    timeout_s=self._settings.connect_timeout_s,
                )
                break
            except (backfill.ReadAgain, *BROKER_ERRORS) as error:
                log.warning("backfill.reading_again", error=f"{type(error).__name__}: {error}")
                await asyncio.sleep(1)
            except Exception:  # a defect: said, and tried again rather than hanging unready
                log.exception("backfill.failed", consumer=self._name)
                await asyncio.sleep(5)
        self._live = True
        while not self._stop.is_set() and self._tag is None:
            try:
                if (connection := broker.connection) is not None:
                    await self.on_connected(connection)
                    break
            except BROKER_ERRORS as error:  # a robust reconnect does not subscribe by itself
                log.warning("consumer.not_subscribed", error=f"{type(error).__name__}: {error}")
            await asyncio.sleep(1)

    async def on_connected(self, connection: AbstractRobustConnection) -> None:
        """Subscribe to the work queue: the broker calls this on every (re)connect."""
        if not self._live:
            return  # the backfill subscribes once it reaches the seam
        # A robust channel re-opens and re-subscribes by itself after a reconnect.
        self._channel = await connection.channel()
        await self._channel.set_qos(prefetch_count=self._settings.prefetch_count)
        # Declared (passively) through the robust channel, not fetched: only queues it declared
        # itself are re-subscribed after a reconnect.
        self._queue = await self._channel.declare_queue(
            topology.work_queue(self._name), passive=True
        )
        self._tag = await self._queue.consume(self._on_message)
        log.info("consumer.started", consumer=self._name, prefetch=self._settings.prefetch_count)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # aiormq cancels a channel's callback tasks when the connection drops. Stopped half-way,
        # a notification POSTed but not yet marked would be POSTed again on redelivery; so the
        # work runs in a task of its own that finishes its effects (the ack then fails, and the
        # redelivery finds the marker). Not awaited here: the callback's task ends at once,
        # rather than waiting beside the work's, shielded, for every message.
        self._consumer.take(message)

    async def cancel(self) -> None:
        """Take no more: the backfill stops reading, the queue's subscription is cancelled."""
        if self._backfill is not None:
            await self._backfill
        if self._queue is not None and self._tag is not None:
            try:
                # Bounded: a robust channel waits for its connection, which may not come back.
                async with asyncio.timeout(self._settings.connect_timeout_s):
                    await self._queue.cancel(self._tag)
            except Exception:  # the connection may already be gone; nothing then is in hand
                pass


class OneAtATime:
    """Turns by key, first come first served; a key is forgotten once nobody holds or waits for
    it. Taking a key nobody holds creates nothing but its (empty) line: almost every event's
    order is in hand alone, and a lock and a generator-based context manager each cost that
    event a few per cent of its CPU."""

    def __init__(self) -> None:
        self._lines: dict[str, deque[asyncio.Future[None]]] = {}  # key → those waiting

    def __call__(self, key: str) -> "_Turn":
        return _Turn(self, key)

    async def take(self, key: str) -> None:
        line = self._lines.get(key)
        if line is None:
            self._lines[key] = deque()
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # handed the turn as it was cancelled
                self.give_back(key)
            raise

    def give_back(self, key: str) -> None:
        line = self._lines[key]
        while line:
            turn = line.popleft()
            if not turn.done():  # a waiter cancelled meanwhile has left its turn done
                turn.set_result(None)
                return
        del self._lines[key]


class _Turn:
    __slots__ = ("_turns", "_key")

    def __init__(self, turns: OneAtATime, key: str) -> None:
        self._turns, self._key = turns, key

    async def __aenter__(self) -> None:
        await self._turns.take(self._key)

    async def __aexit__(self, *_: object) -> None:
        self._turns.give_back(self._key)


async def _all_ready(consumers: list[Consumer], store_writable: StoreCheck) -> bool:
    return all([await consumer.check() for consumer in consumers]) and await store_writable()


async def _count_queues(consumers: list[Consumer]) -> None:
    for consumer in consumers:
        await middleware.count_queues(consumer.broker.connection, consumer.spec, consumer.settings)


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
    middlewares: Sequence[Middleware] = middleware.DEFAULT,
) -> None:
    """Run each consumer of `specs`, with the handler steps its spec names, in this process
    until `stop` is set; with `backfill_from`, each first processes the archive's events
    of its bindings from then on (see `backfill`)."""
    tracing.configure(f"hookhub-{'-'.join(spec.name for spec in specs)}")  # e.g. hookhub-payments
    store = open_store(settings.store_url, specs)  # with their records' repositories
    store.gather_writes(settings.commit_linger_ms / 1000, settings.prefetch_count * len(specs))
    journal = open_event_log(settings.store_url)
    journeys = Journeys(journal)  # one queue of kept steps for the process
    async with httpx.AsyncClient(timeout=settings.notify_timeout_s) as http, AsyncExitStack() as up:
        consumers = [
            Consumer(
                spec, spec.load_steps(), settings, store, journeys, http, backfill_from, middlewares
            )
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
