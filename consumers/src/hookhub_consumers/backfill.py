"""Backfill: a consumer added later processes the past events of its bindings from the archive,
then switches to its live queue, losing none and processing none twice at the seam.

    archive     ──since──────────────────────────── seam ─────────▶  read by the backfill
    live queue            bound ──── margin ──── (the seam reader attaches) ──▶  read after it

The consumer's live queue is declared and bound before the backfill starts, so every matching
event routed from then on goes to both. The backfill reads the archive from `since` (the
broker's clock, to the second) up to the seam: the first position written after a second reader
attached at the stream's end, `margin_s` after the binding; or the stream's end, when nothing is
written after that reader came. Events between the binding and the seam are in both; the
consumer's processed-markers make the second copy a duplicate.

Every event routed before the binding lies before the seam when the margin is at least the
publishers' confirm timeout (HOOKHUB_PUBLISH_TIMEOUT_S): a copy the broker confirmed was in the
stream within that time, and a copy it did not confirm in time was published again by its sender
(a provider's retry after hub-api's 503, the outbox relay), after the binding.

A failing event goes to the consumer's retry and dead-letter queues like any other. When a
reader's channel closes, re-opens or loses its consumer, or an event cannot be settled, the
backfill reads again from the first position it had not finished with (every one before it was
processed or moved to the retry queues); the markers make what it does twice duplicates.

A node that hangs (frozen, its connection open) sends nothing, which reads just like the end of
the archive: so every silence is a round trip first (`timeout_s`), and opening a reader is
bounded too; one unanswered reads again, on whatever connection the consumer's broker has moved
to by then (the next address), from where the backfill got to.

An event forgotten at its person's request (`hookhub people forget`) is still in the archive
until retention drops it: the backfill settles it unprocessed, counts it (`forgotten`) and logs
its id and source only (`backfill.forgotten_skipped`), as the event log's tombstones say.
"""

import asyncio
import time
from collections import deque
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from hookhub import topology
from hookhub.events import Event
from hookhub.logs import log
from hookhub.settings import Settings
from hookhub.specs import ConsumerSpec
from hookhub_eventlog.archive import ArchiveLost, ArchiveReader, answers, position, reading_archive
from hookhub_eventlog.store import EventLog, open_event_log

# An archive that sends nothing for this long, with nothing in hand, has been read to its end.
IDLE_S = 1.0
PROGRESS_EVERY = 1000


class Taker(Protocol):
    """What the backfill hands messages to: the consumer."""

    name: str
    spec: ConsumerSpec
    settings: Settings  # its store_url: the event log whose tombstones it skips by

    def take(self, message: AbstractIncomingMessage) -> asyncio.Task[None]:
        """Process the message as if delivered from the live queue: done once it is processed or
        moved to the retry queues; failed with `ReadAgain` when it could be neither."""

    def skip(self, message: AbstractIncomingMessage) -> None:
        """Settle a message without processing it."""


class ReadAgain(Exception):
    """The backfill cannot trust what it read (a reader's channel closed, re-opened or lost its
    consumer; an event could not be settled): it reads again from where it is sure of."""


class Unanswered(ReadAgain):
    """The broker did not answer in time: a hung node, to be left for the next address."""


# Readers left on a node that did not answer, closing in the background (bounded).
_closing: set[asyncio.Task[None]] = set()


@dataclass
class Backfill:
    """A backfill's progress, kept across the times it reads again."""

    since: datetime
    bound_at: float = field(default_factory=time.monotonic)  # the live queue was bound by then
    seam: int | None = None  # the first position left to the live queue
    done_up_to: int | None = None  # every position up to this one is finished with
    read: int = 0  # archive messages read (every type), this time
    handled: int = 0  # of them, handed to the consumer (its bindings)
    forgotten: int = 0  # of its bindings, settled unprocessed: forgotten at a person's request
    up_to: int | None = None  # the last position read before the seam
    unsettled: bool = False  # an event in hand could be settled neither way

    def start(self) -> int | datetime:
        """Where to read from: `since`, then after what is finished with."""
        return self.since if self.done_up_to is None else self.done_up_to + 1


async def backfill(
    consumer: Taker,
    connection: AbstractConnection,
    progress: Backfill,
    *,
    prefetch: int,
    margin_s: float,
    stop: asyncio.Event,
    timeout_s: float,
) -> None:
    """Process the archive's events of the consumer's bindings from `progress.start()` to the
    seam, then return once every one is settled; raises ReadAgain when it must read again (also
    when the broker does not answer within `timeout_s`)."""
    bindings = consumer.spec.bindings
    progress.read = progress.handled = progress.forgotten = 0
    progress.unsettled = False
    in_hand: set[asyncio.Task[None]] = set()
    # The positions read, in order, and their tasks (None: skipped); finished from the left.
    taken: deque[tuple[int, asyncio.Task[None] | None]] = deque()

    def finished(task: asyncio.Task[None] | None) -> bool:
        return task is None or (task.done() and not task.cancelled() and not task.exception())

    def settled(task: asyncio.Task[None]) -> None:
        in_hand.discard(task)
        if not finished(task):
            progress.unsettled = True
        while taken and finished(taken[0][1]):
            progress.done_up_to = taken.popleft()[0]

    start = progress.start()
    log.info(
        "backfill.started",
        consumer=consumer.name,
        since=progress.since.isoformat(),
        start=start if isinstance(start, int) else start.isoformat(),
    )
    readers = AsyncExitStack()
    unanswered = False
    event_log = open_event_log(consumer.settings.store_url)
    readers.push_async_callback(event_log.close)
    try:
        archive = await _open(readers, reading_archive(connection, start, prefetch), timeout_s)
        after_seam: ArchiveReader | None = None  # prefetch 1, never acked: the first only
        try:
            while not stop.is_set():
                if after_seam is None and time.monotonic() >= progress.bound_at + margin_s:
                    after_seam = await _open(
                        readers, reading_archive(connection, "next", 1), timeout_s
                    )
                if progress.seam is None and after_seam and not after_seam.inbox.empty():
                    progress.seam = position(after_seam.inbox.get_nowait())
                _check(archive, after_seam, progress)
                message = await archive.next(IDLE_S)
                if message is None:
                    _check(archive, after_seam, progress)
                    await _answering(archive, timeout_s)  # silence, or a hung node?
                    if after_seam and progress.seam is None and after_seam.inbox.empty():
                        if not in_hand:
                            break  # the end: what is written from now on is in the live queue
                    continue
                at = position(message)
                if progress.seam is not None and at >= progress.seam:
                    consumer.skip(message)
                    break
                progress.read += 1
                progress.up_to = at
                routing_key = message.routing_key or ""
                bound = any(topology.binding_matches(key, routing_key) for key in bindings)
                if bound and await _forgotten(event_log, message, consumer.name):
                    progress.forgotten += 1
                    bound = False
                if bound:
                    progress.handled += 1
                    task = consumer.take(message)
                    in_hand.add(task)
                    taken.append((at, task))
                    task.add_done_callback(settled)
                else:
                    consumer.skip(message)
                    if taken:
                        taken.append((at, None))
                    else:
                        progress.done_up_to = at
                if progress.read % PROGRESS_EVERY == 0:
                    log.info(
                        "backfill.progress",
                        consumer=consumer.name,
                        read=progress.read,
                        handled=progress.handled,
                        forgotten=progress.forgotten,
                        at=at,
                    )
            if in_hand:
                await asyncio.wait(in_hand)
            # Checked before the readers close (which breaks them): an event that could be
            # neither processed nor moved is read again.
            _check(archive, None, progress)
        finally:
            if in_hand:  # their effects finish either way, before the readers close
                await asyncio.wait(in_hand)
    except Unanswered:
        unanswered = True
        raise
    finally:
        if unanswered:  # closing them waits on the node that does not answer: not here
            _closing.add(closing := asyncio.create_task(readers.aclose()))
            closing.add_done_callback(_closing.discard)
        else:
            await readers.aclose()
    log.info(
        "backfill.done",
        consumer=consumer.name,
        read=progress.read,
        handled=progress.handled,
        forgotten=progress.forgotten,
        up_to=progress.up_to,
        seam=progress.seam,
        stopped=stop.is_set(),
    )


async def _forgotten(event_log: EventLog, message: AbstractIncomingMessage, consumer: str) -> bool:
    """Whether the event was forgotten at its person's request: said by id and source only."""
    try:
        event = Event.from_message(message)
    except Exception:  # not a Hookhub event: the consumer parks it as such
        return False
    if not any(t.source == event.source for t in await event_log.forgotten(event.id)):
        return False
    ids = {"event_id": event.id, "source": event.source}
    log.info("backfill.forgotten_skipped", consumer=consumer, **ids)
    return True


async def _open(
    readers: AsyncExitStack, reader: AbstractAsyncContextManager[ArchiveReader], timeout_s: float
) -> ArchiveReader:
    try:
        async with asyncio.timeout(timeout_s):
            return await readers.enter_async_context(reader)
    except TimeoutError:
        raise Unanswered(f"no archive reader opened within {timeout_s:g}s") from None


async def _answering(archive: ArchiveReader, timeout_s: float) -> None:
    try:
        await answers(archive.channel, timeout_s)
    except ArchiveLost as lost:
        raise Unanswered(str(lost)) from None


def _check(archive: ArchiveReader, after_seam: ArchiveReader | None, progress: Backfill) -> None:
    if archive.broken or (after_seam is not None and after_seam.broken):
        raise ReadAgain("an archive reader's channel closed or lost its consumer")
    if progress.unsettled:
        raise ReadAgain("an event could not be settled")
