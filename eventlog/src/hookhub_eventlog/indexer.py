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
import time

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from hookhub import topology
from hookhub.addresses import CONNECT_ERRORS
from hookhub.logs import log
from hookhub.settings import Settings
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from hookhub_eventlog.archive import ArchiveLost, logged, position, reading_archive, still_holds
from hookhub_eventlog.store import EventLog, open_event_log

INDEX_BATCH = 500  # messages in hand (prefetch) and written to the index per batch, at most
INDEX_FLUSH_S = 0.5  # and written at least this often while events arrive


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
    connection: AbstractConnection, event_log: EventLog, stop: asyncio.Event
) -> None:
    """Index the archive from where the index got to, in batches, until `stop` is set;
    `ArchiveLost` when its channel breaks (then call it again: it checks the stream anew)."""
    start = await where_to_start(connection, event_log)
    log.info("index.started", start=start)
    async with reading_archive(connection, start, INDEX_BATCH) as reader:
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
            if batch:
                await event_log.index([logged(message) for message in batch])
                await batch[-1].ack(multiple=True)  # the stream's credit, not a removal
                log.info("index.written", events=len(batch), up_to=position(batch[-1]))


async def run_indexer(settings: Settings, stop: asyncio.Event) -> None:
    """The indexer's process: its own connection and event log, until `stop` is set. It waits
    for the archive to be declared (by hub-api or the consumers at their start-up), and reads it
    again, checked, after every reconnect or redeclaration."""
    event_log = open_event_log(settings.store_url)
    try:
        connection = await aio_pika.connect_robust(settings.amqp_url)
        async with connection:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type((ArchiveLost, *CONNECT_ERRORS)),
                wait=wait_exponential(multiplier=0.2, max=5),
                before_sleep=lambda state: log.info(
                    "index.waiting",
                    for_queue=topology.ARCHIVE_QUEUE,
                    error=str(state.outcome.exception()) if state.outcome else None,
                ),
            ):
                with attempt:
                    indexing = asyncio.create_task(index_forever(connection, event_log, stop))
                    stopping = asyncio.create_task(stop.wait())
                    await asyncio.wait({indexing, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    indexing.cancel()
                    stopping.cancel()
                    results = await asyncio.gather(indexing, return_exceptions=True)
                    if isinstance(results[0], Exception):
                        raise results[0]
    finally:
        await event_log.close()
