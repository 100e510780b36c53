"""The indexer (`hookhub index`, one process): reads the archive stream in order and writes what
finding an event needs (id, type, source, subject, correlation and causation ids, time, position)
to the index in batches, off every consumer's path.

Positions are offsets in one stream: an archive deleted and declared again (a broker that lost
its definitions, a new cluster, a vhost recreated) starts at 0 again. So at every start, and
after every reconnect, the indexer checks that the stream still holds the last event it indexed
at its position (`archive.still_holds`); when it does not, the events indexed from the old
stream are superseded (moved to negative positions, still found) and the new one is indexed
from its start."""

import asyncio
import contextlib
import time

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from hookhub import topology
from hookhub.addresses import CONNECT_ERRORS, Addresses, redact
from hookhub.logs import log
from hookhub.settings import Settings
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from hookhub_eventlog.archive import (
    ArchiveLost,
    answers,
    logged,
    position,
    reading_archive,
    still_holds,
)
from hookhub_eventlog.store import EventLog, open_event_log

INDEX_BATCH = 500  # messages in hand (prefetch) and written to the index per batch, at most
INDEX_FLUSH_S = 0.5  # and written at least this often while events arrive
# With nothing arriving for this long, a round trip proves the node still answers: a hung node
# (frozen, its TCP connection open) is silent just like an archive with nothing new.
ALIVE_CHECK_S = 2.0


async def where_to_start(connection: AbstractConnection, event_log: EventLog) -> int | str:
    """The position after the last one indexed, when the archive is still the stream the index
    follows; else "first", the old stream's events superseded."""
    last = await event_log.last_indexed()
    if last is None or last.position < 0:
        return "first"
    if await still_holds(connection, last):
        return last.position + 1
    log.warning(
        "index.new_archive",
        detail=f"{topology.ARCHIVE_QUEUE} no longer holds {last.id} at {last.position}: "
        "indexing it from its start, the events indexed before kept at negative positions",
    )
    await event_log.supersede()
    return "first"


async def index_forever(
    connection: AbstractConnection,
    event_log: EventLog,
    stop: asyncio.Event,
    timeout_s: float = 5.0,
) -> None:
    """Index the archive from where the index got to, in batches, until `stop` is set;
    `ArchiveLost` when its channel breaks or the broker does not answer a round trip within
    `timeout_s` (then call it again, on another connection: it checks the stream anew)."""
    start = await where_to_start(connection, event_log)
    log.info("index.started", start=start)
    async with reading_archive(connection, start, INDEX_BATCH) as reader:
        heard_at = time.monotonic()
        while not stop.is_set():
            batch: list[AbstractIncomingMessage] = []
            deadline = time.monotonic() + INDEX_FLUSH_S
            while len(batch) < INDEX_BATCH and (left := deadline - time.monotonic()) > 0:
                if (message := await reader.next(left)) is not None:
                    batch.append(message)
            if reader.broken:
                # A robust channel re-opens with the consumer's first arguments: what comes then
                # could be another stream's positions. Start over, checked (the batch is read
                # again then).
                raise ArchiveLost(f"{topology.ARCHIVE_QUEUE}'s channel closed or re-opened")
            if not batch and time.monotonic() - heard_at >= ALIVE_CHECK_S:
                await answers(reader.channel, timeout_s)
                heard_at = time.monotonic()
            if batch:
                heard_at = time.monotonic()
                await event_log.index([logged(message) for message in batch])
                await batch[-1].ack(multiple=True)  # the stream's credit, not a removal
                log.info("index.written", events=len(batch), up_to=position(batch[-1]))


async def run_indexer(settings: Settings, stop: asyncio.Event) -> None:
    """The indexer's process: its own event log, and a connection to the first of the broker's
    addresses that answers, until `stop` is set. It waits for the archive to be declared (by
    hub-api or the consumers at their start-up), and after a lost or hung connection reads it
    again, checked, from the next address on."""
    event_log = open_event_log(settings.store_url)
    addresses = Addresses(settings.amqp_urls)
    try:
        async for attempt in AsyncRetrying(
            # RuntimeError too: aiormq's, on a channel it closed after an RPC timed out.
            retry=retry_if_exception_type((ArchiveLost, *CONNECT_ERRORS, RuntimeError)),
            wait=wait_exponential(multiplier=0.2, max=5),
            before_sleep=lambda state: log.info(
                "index.waiting",
                for_queue=topology.ARCHIVE_QUEUE,
                error=str(state.outcome.exception()) if state.outcome else None,
            ),
        ):
            with attempt:
                await _index_on_first_answering(settings, addresses, event_log, stop)
    finally:
        await event_log.close()


async def _index_on_first_answering(
    settings: Settings, addresses: Addresses, event_log: EventLog, stop: asyncio.Event
) -> None:
    """Index through one plain connection (not robust: a robust one would come back on the node
    it was given, and restore the archive's consumer at its first offset) until `stop`; a
    connection lost or hung moves the next attempt on to the next address."""
    timeout_s = settings.connect_timeout_s
    connection, url = await addresses.connect_first(aio_pika.connect, timeout_s)
    addresses.current = url
    log.info("index.connected", url=redact(url))
    try:
        indexing = asyncio.create_task(index_forever(connection, event_log, stop, timeout_s))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({indexing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        indexing.cancel()
        stopping.cancel()
        results = await asyncio.gather(indexing, return_exceptions=True)
        if isinstance(results[0], Exception):
            if connection.is_closed or isinstance(results[0], ArchiveLost):
                addresses.move_on(url)
            raise results[0]
    finally:
        with contextlib.suppress(*CONNECT_ERRORS, RuntimeError):
            async with asyncio.timeout(timeout_s):  # a hung node would hold a polite close
                await connection.close()
