"""The indexer (`hookhub index`, one process): reads the archive stream in order and writes what
finding an event needs (id, type, source, subject, correlation and causation ids, time, position)
to the index in batches, off every consumer's path."""

import asyncio
import time

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from hookhub import topology
from hookhub.logs import log
from hookhub.settings import Settings
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from hookhub_eventlog.archive import logged, position, reading_archive
from hookhub_eventlog.store import EventLog, open_event_log

INDEX_BATCH = 500  # messages in hand (prefetch) and written to the index per batch, at most
INDEX_FLUSH_S = 0.5  # and written at least this often while events arrive


async def index_forever(
    connection: AbstractConnection, event_log: EventLog, stop: asyncio.Event
) -> None:
    """Index the archive from where the index got to, in batches, until `stop` is set."""
    last = await event_log.indexed_up_to()
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
            await event_log.index([logged(message) for message in batch])
            await batch[-1].ack(multiple=True)  # the stream's credit, not a removal
            log.info("index.written", events=len(batch), up_to=position(batch[-1]))


async def run_indexer(settings: Settings, stop: asyncio.Event) -> None:
    """The indexer's process: its own connection and event log, until `stop` is set. It waits
    for the archive to be declared (by hub-api or the consumers at their start-up)."""
    event_log = open_event_log(settings.store_url)
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
