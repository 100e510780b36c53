"""Reading the archive: `hookhub.archive`, the stream queue that keeps every event the exchange
routed, byte-for-byte with its headers, readable from any position (offset) or time."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import aio_pika
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from hookhub import failures, topology
from hookhub.addresses import CONNECT_ERRORS
from hookhub.events import Event
from hookhub.identities import identifiers_in, identities_at
from hookhub.providers import FORM, PROVIDERS, WEBHOOK_SOURCE_PREFIX, order_id_at, order_id_in

from hookhub_eventlog.store.base import LoggedEvent

READ_TIMEOUT_S = 5.0  # a stream that sends nothing for this long has nothing more to read


def position(message: AbstractIncomingMessage) -> int:
    """Where an archived message is in the stream (its offset)."""
    return int((message.headers or {})[failures.STREAM_OFFSET_HEADER])


def order_of(event: Event) -> str | None:
    """The order an event concerns: the subject the hub's follow-ups carry, else the order id
    where the provider table (`hookhub.providers.order_id_at`, the paths the payments consumer
    reconciles by) or the order events' data keep it; None for an event about no order."""
    if event.subject:
        return event.subject
    if not (paths := order_id_at(event.source, event.type)):
        return None
    try:
        payload = json.loads(event.data)
    except (ValueError, RecursionError):  # not JSON (a form), or nested past Python's limit
        return None
    return order_id_in(paths, payload)


def _payload(event: Event) -> Any:
    """The event's data parsed: JSON, or a form's fields (and the JSON document in its
    provider's `form_json` field); None when it is neither."""
    if event.content_type.startswith(FORM):
        form = {k: v[0] for k, v in parse_qs(event.data.decode(errors="replace")).items()}
        provider = PROVIDERS.get(event.source.removeprefix(WEBHOOK_SOURCE_PREFIX))
        if provider is not None and provider.form_json in form:
            with suppress(ValueError, RecursionError):
                return json.loads(form[provider.form_json])
        return form
    try:
        return json.loads(event.data)
    except (ValueError, RecursionError):
        return None


def identifiers_of(event: Event) -> tuple[str, ...]:
    """Who an inbound event is about, normalised (`hookhub.identities`): what its payload keeps
    where the provider table (or the order events' contract) says; none for a follow-up."""
    namespace, where = identities_at(event.source, event.type)
    if not where:  # a follow-up: about an order, found through it
        return ()
    return identifiers_in(namespace, where, _payload(event))


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
        order_id=order_of(event),
        identifiers=identifiers_of(event),
    )


class ArchiveLost(ConnectionError):
    """The archive's channel closed, re-opened or lost its consumer (the queue deleted, the
    connection lost): read it again, from where the index got to, once it is back."""


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
    or a time (the broker's clock, to the second). A negative position (an event indexed from
    an archive since deleted, `EventLog.supersede`) reads from the first."""
    if isinstance(start, int) and start < 0:
        start = "first"
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
        # Bounded, and never in place of what ended the read: a hung node answers neither, and
        # aiormq raises RuntimeError on a channel it closed after an RPC timed out.
        with suppress(*CONNECT_ERRORS, RuntimeError):
            async with asyncio.timeout(READ_TIMEOUT_S):
                if not channel.is_closed:
                    await queue.cancel(tag)
        # Closed even when it looks closed: a robust channel would be re-opened otherwise.
        with suppress(*CONNECT_ERRORS, RuntimeError):
            async with asyncio.timeout(READ_TIMEOUT_S):
                await channel.close()


async def archived_message(
    connection: AbstractConnection, at: int
) -> AbstractIncomingMessage | None:
    """The archived message at position `at`; None once retention has dropped it, or the
    archive it was in was deleted (a negative position)."""
    if at < 0:
        return None
    async with reading_archive(connection, at, 1) as reader:
        message = await reader.next(READ_TIMEOUT_S)
    return message if message is not None and position(message) == at else None


async def answers(channel: aio_pika.abc.AbstractChannel, timeout_s: float) -> None:
    """A round trip on the archive's channel (the archive declared passively) within
    `timeout_s`, else `ArchiveLost`: a hung node keeps its connection open and sends nothing,
    which reads just like an archive with nothing more in it."""
    try:
        async with asyncio.timeout(timeout_s):
            await channel.declare_queue(topology.ARCHIVE_QUEUE, passive=True)
    except TimeoutError:
        raise ArchiveLost(f"the broker did not answer within {timeout_s:g}s") from None


async def still_holds(connection: AbstractConnection, last: LoggedEvent) -> bool:
    """Whether the archive is still the stream `last` was indexed from: its message at
    `last.position` is that event (id and source), or retention has dropped that position
    already (the first message it has is later). A stream deleted and declared again starts
    at 0: it has another event there, or nothing that far yet."""
    async with reading_archive(connection, last.position, 1) as reader:
        message = await reader.next(READ_TIMEOUT_S)
        if message is None and reader.broken:  # before leaving: closing it breaks it too
            raise ArchiveLost("the archive's channel closed while checking which stream it is")
        if message is None:  # silence from a hung node is not an answer
            await answers(reader.channel, READ_TIMEOUT_S)
    if message is None:
        return False
    if position(message) > last.position:
        return True
    event = Event.from_message(message)
    return (event.id, event.source) == (last.id, last.source)
