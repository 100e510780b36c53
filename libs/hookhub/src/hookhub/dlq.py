"""The parking lots: look at dead-lettered messages, replay them, purge them.

Reading never removes: messages are fetched unacknowledged and handed back when the channel
closes. Replay puts a fresh copy on the consumer's work queue and removes the parked one only
after the broker confirmed the copy, so a replay interrupted halfway loses nothing. A copy too
large to publish (`broker.MessageTooLarge`) is not sent, and its message stays parked.
"""

from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from hookhub import failures, topology
from hookhub.broker import MessageTooLarge, check_size
from hookhub.events import CE_PREFIX
from hookhub.logs import log


class ReplayFailed(RuntimeError):
    """A parked message could not be put back; it is still parked."""


@dataclass(frozen=True, slots=True)
class Parked:
    id: str
    type: str
    reason: str
    attempts: int
    failed_at: str
    body: bytes
    headers: dict[str, Any]


def parked(message: AbstractIncomingMessage) -> Parked:
    headers = dict(message.headers or {})
    failure = failures.reading(headers)
    event_type = message.type or headers.get(f"{CE_PREFIX}type", "")
    return Parked(
        id=message.message_id or "",
        type=event_type.decode() if isinstance(event_type, bytes) else str(event_type),
        reason=failure.reason,
        attempts=failure.attempts,
        failed_at=failure.failed_at,
        body=message.body,
        headers=headers,
    )


async def _fetch_all(channel: aio_pika.abc.AbstractChannel, consumer: str, limit: int):  # type: ignore[no-untyped-def]
    queue = await channel.get_queue(topology.dead_letter_queue(consumer), ensure=True)
    messages = []
    while len(messages) < limit:
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        messages.append(message)
    return messages


async def list_parked(
    connection: AbstractConnection, consumer: str, limit: int = 1000
) -> list[Parked]:
    async with connection.channel() as channel:
        return [parked(m) for m in await _fetch_all(channel, consumer, limit)]
        # closing the channel hands every fetched message back to the queue


async def replay(
    connection: AbstractConnection,
    consumer: str,
    ids: set[str] | None = None,
    timeout_s: float = 10,
    refused: dict[str, str] | None = None,
) -> list[str]:
    """Move parked messages (all, or those with the given ids) back to the work queue; the ids
    of those moved, in the order they were parked.

    The parked copy is removed only once the broker confirmed the new one *and* routed it:
    published mandatory, a copy returned because the work queue is missing raises instead. A
    message whose copy is too large to publish stays parked, and goes in `refused` (its id, and
    why), when one is given.
    """
    replayed: list[str] = []
    async with connection.channel(publisher_confirms=True, on_return_raises=True) as channel:
        for message in await _fetch_all(channel, consumer, limit=100_000):
            if ids is not None and message.message_id not in ids:
                continue
            copy = failures.replay_copy(message)
            try:
                # aio-pika's channel, not `Broker`'s publish: measured here, or a header frame
                # over frame_max would close the connection (FRAME_ERROR) with the replay on it.
                check_size(copy.properties)
            except MessageTooLarge as error:
                log.error(
                    "dlq.replay_refused", consumer=consumer, id=message.message_id, error=str(error)
                )
                if refused is not None:
                    refused[message.message_id or ""] = str(error)
                continue
            try:
                confirmation = await channel.default_exchange.publish(
                    copy,
                    topology.work_queue(consumer),
                    mandatory=True,
                    timeout=timeout_s,
                )
            except (aio_pika.exceptions.DeliveryError, TimeoutError) as exc:
                raise ReplayFailed(
                    f"{topology.work_queue(consumer)} did not take {message.message_id!r} "
                    f"({type(exc).__name__}); it stays parked. Is the queue there? "
                    "`hookhub topology declare` creates it."
                ) from None
            if not isinstance(confirmation, aiormq.spec.Basic.Ack):
                raise ReplayFailed(f"the broker refused {message.message_id!r}; it stays parked")
            await message.ack()
            replayed.append(message.message_id or "")
    return replayed


async def purge(connection: AbstractConnection, consumer: str) -> int:
    """Delete every parked message of a consumer; how many there were."""
    async with connection.channel() as channel:
        queue = await channel.get_queue(topology.dead_letter_queue(consumer), ensure=True)
        result = await queue.purge()
        return result.message_count


async def discard(connection: AbstractConnection, consumer: str, ids: set[str]) -> list[str]:
    """Delete the parked messages with the given ids; the ids of those deleted. The others are
    handed back untouched when the channel closes."""
    discarded = []
    async with connection.channel() as channel:
        for message in await _fetch_all(channel, consumer, limit=100_000):
            if message.message_id in ids:
                await message.ack()
                discarded.append(message.message_id or "")
    return discarded
