"""Backfill: a consumer added later processes the past events of its bindings from the archive,
then switches to its live queue, losing none and processing none twice at the seam.

    archive  ──since────────────────────────── seam ──────────▶  read by the backfill
    live queue            bound ────────────────────────────────▶  read after it

The consumer's live queue is declared and bound before the backfill starts, so every matching
event routed from then on goes to both. The backfill reads the archive from `since` (the
broker's clock, to the second) up to the seam: the first position written at least
SEAM_GRACE_S after the binding (a second reader attached at the stream's end after that pause
sees it), or the stream's end when nothing more is written. Events routed between the binding
and the seam are in both; the consumer's processed-markers make the second copy a duplicate.
Events routed before the binding are only in the archive, and all of them lie before the seam:
the pause lets any routed a moment before the binding reach the stream.

A failing event goes to the consumer's retry and dead-letter queues like any other. When the
connection drops, the backfill reads again from `since`, and the markers make what it had done
duplicates.
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from hookhub import topology
from hookhub.observability import log

from hookhub_consumers.eventlog import ArchiveReader, position, reading_archive

# Long enough for an event routed just before the binding to be written to the stream.
SEAM_GRACE_S = 1.0
# An archive that sends nothing for this long, with nothing in hand, has been read to its end.
IDLE_S = 1.0
PROGRESS_EVERY = 1000


class Taker(Protocol):
    """What the backfill hands messages to: the consumer."""

    name: str

    def take(self, message: AbstractIncomingMessage) -> asyncio.Task[None]:
        """Process the message as if delivered from the live queue; settles it."""

    def skip(self, message: AbstractIncomingMessage) -> None:
        """Settle a message without processing it."""


class Interrupted(Exception):
    """The archive's channel closed under the backfill: read again on a new connection."""


@dataclass
class Backfill:
    read: int = 0  # archive messages read (every type)
    handled: int = 0  # of them, handed to the consumer (its bindings)
    up_to: int | None = None  # the last position read before the seam
    seam: int | None = None  # the first position left to the live queue


async def backfill(
    consumer: Taker,
    connection: AbstractConnection,
    since: datetime,
    prefetch: int,
    stop: asyncio.Event,
) -> Backfill:
    """Process the archive's events of the consumer's bindings from `since` to the seam; its
    live queue must be bound already. Returns once every one is settled."""
    await asyncio.sleep(SEAM_GRACE_S)
    bindings = topology.CONSUMER_BINDINGS[consumer.name]
    result = Backfill()
    in_hand: set[asyncio.Task[None]] = set()
    log.info("backfill.started", consumer=consumer.name, since=since.isoformat())
    # Prefetch 1, never acked: the seam reader takes the first message written after it came.
    async with (
        reading_archive(connection, "next", 1) as after_seam,
        reading_archive(connection, since, prefetch) as archive,
    ):
        while not stop.is_set():
            if result.seam is None and not after_seam.inbox.empty():
                result.seam = position(after_seam.inbox.get_nowait())
            message = await archive.next(IDLE_S)
            if message is None:
                _check_open(archive, after_seam)
                if result.seam is None and not in_hand and after_seam.inbox.empty():
                    break  # the end: whatever is written from now on is in the live queue too
                continue
            at = position(message)
            if result.seam is not None and at >= result.seam:
                consumer.skip(message)
                break
            result.read += 1
            result.up_to = at
            if any(topology.binding_matches(key, message.routing_key or "") for key in bindings):
                result.handled += 1
                task = consumer.take(message)
                in_hand.add(task)
                task.add_done_callback(in_hand.discard)
            else:
                consumer.skip(message)
            if result.read % PROGRESS_EVERY == 0:
                log.info("backfill.progress", read=result.read, handled=result.handled, at=at)
        if in_hand:
            await asyncio.wait(in_hand)
    log.info(
        "backfill.done",
        consumer=consumer.name,
        read=result.read,
        handled=result.handled,
        up_to=result.up_to,
        seam=result.seam,
        stopped=stop.is_set(),
    )
    return result


def _check_open(*readers: ArchiveReader) -> None:
    # A robust channel re-opens by itself (and reads again from the start); one whose connection
    # was given up for another address never will, and its silence is not the stream's end.
    if any(reader.channel.is_closed for reader in readers):
        raise Interrupted("the archive's channel closed")
