"""The event log: every event the exchange routed, kept by the broker, indexed in the store.

The broker keeps the messages: `hookhub.archive`, a stream queue bound to `hookhub.events` with
`#`, holds each event byte-for-byte with its headers for the configured retention, readable from
any position (offset). Nothing on the ingest path waits for it: the broker's routing feeds it.

The indexer (`hookhub index`, one process) reads the stream in order and writes what finding an
event needs (id, type, source, subject, correlation and causation ids, time, position) to the
store in batches, off every consumer's path. A journey is put together when it is asked for:
the index (accepted, follow-ups), the consumers' markers (processed), the steps they recorded
(retried, parked, replayed) and the notification deliveries.

A replay reads the chosen events back from the stream by their positions and puts copies on a
consumer's work queue, with their ids: the consumer's markers make it safe to repeat.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from hookhub import failures, specs, topology
from hookhub.addresses import CONNECT_ERRORS
from hookhub.events import Event
from hookhub.observability import log
from hookhub.settings import Settings
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from hookhub_consumers.records import Delivery
from hookhub_consumers.store import EventQuery, LoggedEvent, Marker, Step, Store, open_store

INDEX_BATCH = 500  # messages in hand (prefetch) and written to the index per batch, at most
INDEX_FLUSH_S = 0.5  # and written at least this often while events arrive
READ_TIMEOUT_S = 5.0  # a stream that sends nothing for this long has nothing more to read
REPLAY_WINDOW = 200  # replayed copies whose confirms are awaited together


class ReplayRefused(ValueError):
    """A replay asked for what cannot be done (a consumer that does not bind the events)."""


def position(message: AbstractIncomingMessage) -> int:
    """Where an archived message is in the stream (its offset)."""
    return int((message.headers or {})[failures.STREAM_OFFSET_HEADER])


def logged(message: AbstractIncomingMessage) -> LoggedEvent:
    """What the index keeps of an archived message."""
    event = Event.from_message(message)
    return LoggedEvent(
        position=position(message),
        id=event.id,
        source=event.source,
        type=event.type,
        time=event.time,
        subject=event.subject,
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
    )


@dataclass
class ArchiveReader:
    """The archive's messages from a start position, in order, as they arrive. `broken` once
    its channel closed, re-opened or lost its consumer: after that its silence is not the end
    of the stream (a robust channel re-opens without this consumer)."""

    channel: aio_pika.abc.AbstractChannel
    inbox: asyncio.Queue[AbstractIncomingMessage] = field(default_factory=asyncio.Queue)
    broken: bool = False

    def break_off(self, *_: object) -> None:
        self.broken = True

    async def next(self, timeout_s: float) -> AbstractIncomingMessage | None:
        """The next message; None when none came for `timeout_s`."""
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout_s)
        except TimeoutError:
            return None


@asynccontextmanager
async def reading_archive(
    connection: AbstractConnection, start: int | str | datetime, prefetch: int
) -> AsyncIterator[ArchiveReader]:
    """Read the archive from position `start`, "first", "next" (what is written from now on)
    or a time (the broker's clock, to the second)."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=prefetch)  # a stream consumer must have one
    queue = await channel.get_queue(topology.ARCHIVE_QUEUE, ensure=False)
    reader = ArchiveReader(channel)
    channel.close_callbacks.add(reader.break_off)
    if isinstance(channel, aio_pika.abc.AbstractRobustChannel):
        channel.reopen_callbacks.add(reader.break_off)
    (await channel.get_underlay_channel()).on_consumer_cancel_callbacks.add(reader.break_off)
    tag = await queue.consume(reader.inbox.put, arguments={"x-stream-offset": start})
    try:
        yield reader
    finally:
        if not channel.is_closed:
            await queue.cancel(tag)
        # Closed even when it looks closed: a robust channel would be re-opened otherwise.
        with suppress(*CONNECT_ERRORS, RuntimeError):
            await channel.close()


# The indexer


async def index_forever(connection: AbstractConnection, store: Store, stop: asyncio.Event) -> None:
    """Index the archive from where the index got to, in batches, until `stop` is set."""
    last = await store.indexed_up_to()
    start: int | str = "first" if last is None else last + 1
    log.info("index.started", start=start)
    async with reading_archive(connection, start, INDEX_BATCH) as reader:
        while not stop.is_set():
            batch: list[AbstractIncomingMessage] = []
            deadline = time.monotonic() + INDEX_FLUSH_S
            while len(batch) < INDEX_BATCH and (left := deadline - time.monotonic()) > 0:
                if (message := await reader.next(left)) is not None:
                    batch.append(message)
            if not batch:
                continue
            await store.index([logged(message) for message in batch])
            await batch[-1].ack(multiple=True)  # the stream's credit, not a removal
            log.info("index.written", events=len(batch), up_to=position(batch[-1]))


async def run_indexer(settings: Settings, stop: asyncio.Event) -> None:
    """The indexer's process: its own connection and store, until `stop` is set. It waits for
    the archive to be declared (by hub-api or the consumers at their start-up)."""
    store = open_store(settings.store_url)
    try:
        # Robust: after a reconnect it reads again from where it started, which the index
        # takes as no change (a position is indexed once).
        connection = await aio_pika.connect_robust(settings.amqp_url)
        async with connection:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(aio_pika.exceptions.ChannelNotFoundEntity),
                wait=wait_exponential(multiplier=0.2, max=5),
                before_sleep=lambda _: log.info("index.waiting", for_queue=topology.ARCHIVE_QUEUE),
            ):
                with attempt:
                    indexing = asyncio.create_task(index_forever(connection, store, stop))
                    stopping = asyncio.create_task(stop.wait())
                    await asyncio.wait({indexing, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    indexing.cancel()
                    stopping.cancel()
                    results = await asyncio.gather(indexing, return_exceptions=True)
                    if isinstance(results[0], Exception):
                        raise results[0]
    finally:
        await store.close()


# Reading: an event, its journey


async def archived_message(
    connection: AbstractConnection, at: int
) -> AbstractIncomingMessage | None:
    """The archived message at position `at`; None once retention has dropped it."""
    async with reading_archive(connection, at, 1) as reader:
        message = await reader.next(READ_TIMEOUT_S)
    return message if message is not None and position(message) == at else None


@dataclass
class Journey:
    event: LoggedEvent
    processed: list[tuple[str, datetime]] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    follow_ups: list[LoggedEvent] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)

    def timeline(self) -> list[tuple[datetime, str, str, str]]:
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


async def journey(store: Store, event_id: str) -> Journey | None:
    found = await store.find_events(EventQuery(id=event_id, limit=1))
    if not found:
        return None
    event = found[0]
    return Journey(
        event=event,
        processed=await store.processed_by(Marker.of("", event.source, event.id).event_key),
        steps=await store.steps(event.id),
        follow_ups=await store.find_events(EventQuery(causation_id=event.id)),
        deliveries=await store.deliveries(event.id),
    )


def unrouted(events: list[LoggedEvent]) -> list[LoggedEvent]:
    """The events no consumer binds: kept only by the archive."""
    bindings = [key for spec in specs.installed() for key in spec.bindings]
    return [e for e in events if not any(topology.binding_matches(k, e.type) for k in bindings)]


# Replay


def consumers_for(event_type: str, to: str | None) -> list[str]:
    """The consumers a replayed event goes to: `to`, or (None) every consumer that binds it."""
    binding = [
        spec.name
        for spec in specs.installed()
        if any(topology.binding_matches(key, event_type) for key in spec.bindings)
    ]
    if to is None:
        return binding
    return [to] if to in binding else []


@dataclass
class ReplayResult:
    selected: int = 0
    published: int = 0  # copies put on work queues (an event may go to several consumers)
    gone: int = 0  # selected, but retention had dropped them from the archive
    skipped: int = 0  # no consumer (of those asked) binds their type


async def replay(
    connection: AbstractConnection,
    events: list[LoggedEvent],
    *,
    to: str | None,
    reprocess: str | None = None,
    rate_per_s: float | None = None,
    on_progress: Callable[[int], None] = lambda _: None,
) -> ReplayResult:
    """Put copies of `events`, read back from the archive, on the work queue of `to` (or of every
    consumer that binds them), oldest first; each confirmed by the broker."""
    result = ReplayResult(selected=len(events))
    wanted = {e.position: e for e in events}
    if not wanted:
        return result
    last_wanted = max(wanted)
    async with connection.channel(publisher_confirms=True, on_return_raises=True) as channel:
        in_flight: list[Awaitable[None]] = []  # confirms awaited together, in order of sending
        async with reading_archive(connection, min(wanted), REPLAY_WINDOW) as reader:
            while wanted:
                message = await reader.next(READ_TIMEOUT_S)
                if message is None:
                    break  # what is left was dropped by retention
                at = position(message)
                if (event := wanted.pop(at, None)) is not None:
                    targets = consumers_for(event.type, to)
                    result.skipped += not targets
                    for consumer in targets:
                        in_flight.append(_publish_copy(channel, message, consumer, reprocess))
                        result.published += 1
                        if rate_per_s:
                            await asyncio.sleep(1 / rate_per_s)
                    on_progress(1)
                if len(in_flight) >= REPLAY_WINDOW or not wanted:
                    await asyncio.gather(*in_flight)
                    in_flight.clear()
                await message.ack()
                if at >= last_wanted:
                    break
        await asyncio.gather(*in_flight)
    result.gone = len(wanted)
    return result


async def _publish_copy(
    channel: aio_pika.abc.AbstractChannel,
    message: AbstractIncomingMessage,
    consumer: str,
    reprocess: str | None,
) -> None:
    queue = topology.work_queue(consumer)
    copy = failures.replay_copy(message, reprocess=reprocess)
    confirmation = await channel.default_exchange.publish(copy, queue, mandatory=True)
    if not isinstance(confirmation, aiormq.spec.Basic.Ack):
        raise ReplayRefused(f"the broker refused the copy of {message.message_id!r} for {queue}")
