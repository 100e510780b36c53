"""An endpoint's queues on the broker: made when it is added, bound as its types say, removed
with it. Names and arguments come from `hookhub.topology` (`endpoint_queues`)."""

import aio_pika
from aio_pika.abc import AbstractChannel
from hookhub import topology
from hookhub.events import EXCHANGE
from hookhub.settings import Settings

from hookhub_endpoints.model import SHORTHAND, Endpoint


async def declare(
    channel: AbstractChannel,
    endpoint: Endpoint,
    settings: Settings,
    previous_types: tuple[str, ...] = (),
) -> None:
    """Make the endpoint's queues (a no-op when they exist as specified) and bind its queue to
    `hookhub.events` with its types, unbinding the patterns of `previous_types` it dropped.
    The shorthand endpoint's queues are the notifications consumer's, declared with it."""
    if endpoint.name == SHORTHAND:
        return
    events = await channel.get_exchange(EXCHANGE)
    specs = topology.endpoint_queues(endpoint.name, endpoint.types, settings.delivery_limit)
    for spec in specs:
        queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        for pattern in spec.bindings:
            await queue.bind(events, pattern)
    work = await channel.get_queue(topology.endpoint_queue(endpoint.name))
    for pattern in set(previous_types) - set(endpoint.types):
        await work.unbind(events, pattern)


async def remove(channel: AbstractChannel, name: str, types: tuple[str, ...]) -> int:
    """Unbind and delete a removed endpoint's queues, with what they held (the endpoint is
    gone: nobody will deliver it); returns how many messages were dropped."""
    if name == SHORTHAND:
        return 0
    events = await channel.get_exchange(EXCHANGE)
    dropped = 0
    for spec in topology.endpoint_queues(name, types, 1):
        try:
            queue = await channel.declare_queue(spec.name, passive=True)
        except aio_pika.exceptions.ChannelClosed:
            channel = await channel.reopen() or channel
            continue
        for pattern in spec.bindings:
            await queue.unbind(events, pattern)
        dropped += await_result(await queue.delete(if_unused=False, if_empty=False))
    return dropped


def await_result(deleted: object) -> int:
    return int(getattr(deleted, "message_count", 0) or 0)


async def depth(channel: AbstractChannel, name: str) -> tuple[int, int, int]:
    """(waiting, retrying, parked): the messages in the endpoint's queue, its retry queues and
    its parking lot, as the broker counts them now."""
    owner = topology.endpoint_owner(name)
    work = await channel.declare_queue(topology.work_queue(owner), passive=True)
    retrying = 0
    delays = (
        topology.ENDPOINT_RETRY_DELAYS_S if name != SHORTHAND else ()
    )  # the shorthand's retry queues are the consumer's
    for delay_s in sorted(set(delays)):
        queue = await channel.declare_queue(topology.retry_queue(owner, delay_s), passive=True)
        retrying += queue.declaration_result.message_count
    parked = await channel.declare_queue(topology.dead_letter_queue(owner), passive=True)
    return (
        work.declaration_result.message_count,
        retrying,
        parked.declaration_result.message_count,
    )
