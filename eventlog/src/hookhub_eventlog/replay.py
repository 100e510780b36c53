"""Replay: the chosen events, read back from the archive by their positions, put as copies on
consumers' work queues with their ids; the consumers' markers make it safe to repeat. A copy too
large to publish (`hookhub.broker.MessageTooLarge`) is not sent, and said so in the result."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection
from hookhub import failures, specs, topology
from hookhub.broker import MessageTooLarge, check_size
from hookhub.logs import log

from hookhub_eventlog.archive import READ_TIMEOUT_S, position, reading_archive
from hookhub_eventlog.store import LoggedEvent

REPLAY_WINDOW = 200  # replayed copies whose confirms are awaited together


class ReplayRefused(ValueError):
    """A replay asked for what cannot be done (a consumer that does not bind the events)."""


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
    # Copies not replayed because they were too large to publish: (event id, consumer) → why.
    refused: dict[tuple[str, str], str] = field(default_factory=dict)


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
                        copy = failures.replay_copy(message, reprocess=reprocess)
                        if (too_large := _too_large(copy)) is not None:
                            log.error(
                                "replay.refused", id=event.id, consumer=consumer, error=too_large
                            )
                            result.refused[event.id, consumer] = too_large
                            continue
                        in_flight.append(_publish_copy(channel, copy, message.message_id, consumer))
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


def _too_large(copy: aio_pika.Message) -> str | None:
    """Why the copy cannot be published, if it cannot: on aio-pika's channel, not `Broker`'s,
    so measured here, or a header frame over frame_max would close the replay's connection."""
    try:
        check_size(copy.properties)
    except MessageTooLarge as error:
        return str(error)
    return None


async def _publish_copy(
    channel: aio_pika.abc.AbstractChannel,
    copy: aio_pika.Message,
    event_id: str | None,
    consumer: str,
) -> None:
    queue = topology.work_queue(consumer)
    confirmation = await channel.default_exchange.publish(copy, queue, mandatory=True)
    if not isinstance(confirmation, aiormq.spec.Basic.Ack):
        raise ReplayRefused(f"the broker refused the copy of {event_id!r} for {queue}")
