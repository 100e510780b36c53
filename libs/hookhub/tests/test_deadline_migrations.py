"""`hookhub topology apply` and deadline queues (#22): a deadline queue no longer configured (the
timeout setting changed, or the previous release's one queue per type) keeps its deadlines
pending, lets them expire into the work queue on time, and is removed once empty. Emptied into
the work queue, every deadline in it would fire at once."""

import asyncio
import time
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection
from hookhub import migrations, topology
from hookhub.settings import Settings

from tests.support.broker import fresh_vhost

WORK = topology.work_queue("payments")
# Named and declared as this version declares a duration's queue, for a timeout of 15 s; and the
# previous release's one queue for the type (no queue TTL: each message had its own).
OLD_S = 15
OLD_DURATION_QUEUE = f"hookhub.payments.deadline.order_payment.{OLD_S}s"
PREVIOUS_RELEASE_QUEUE = "hookhub.payments.deadline.order_payment"
TO_WORK = {
    "x-queue-type": "quorum",
    "x-dead-letter-exchange": "",
    "x-dead-letter-routing-key": WORK,
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}
NEW_TIMEOUT_S = 3600.0


@pytest.fixture
async def broker() -> AsyncIterator[tuple[str, AbstractConnection]]:
    with fresh_vhost() as amqp_url:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            async with connection.channel() as channel:
                await topology.declare(channel, (5.0,), 20)
            yield amqp_url, connection


async def set_deadline(connection: AbstractConnection, queue: str, event_id: str, ttl_s: float):
    async with connection.channel(publisher_confirms=True) as channel:
        message = aio_pika.Message(
            b"{}",
            headers={"cloudEvents:id": event_id, "cloudEvents:type": "deadline.order_payment"},
            message_id=event_id,
            expiration=ttl_s,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await channel.default_exchange.publish(message, queue, mandatory=True)


async def depth(connection: AbstractConnection, queue: str) -> int | None:
    """Messages ready in `queue`, None when it does not exist."""
    async with connection.channel() as channel:
        try:
            declared = await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return None
        return declared.declaration_result.message_count


async def plan_and_apply(connection: AbstractConnection, settings: Settings) -> list[str]:
    """What `hookhub topology apply --yes` does: the plan's lines, then what applying said."""
    the_plan = await migrations.plan_for(connection, settings)
    said: list[str] = []
    await migrations.apply(connection, settings, the_plan, said.append)
    return [*the_plan.lines(), *said]


async def test_apply_keeps_old_deadlines_pending_and_removes_their_queue_once_empty(broker):
    amqp_url, connection = broker
    async with connection.channel() as channel:
        for queue, arguments in (
            (OLD_DURATION_QUEUE, {**TO_WORK, "x-message-ttl": OLD_S * 1000}),
            (PREVIOUS_RELEASE_QUEUE, TO_WORK),
        ):
            await channel.declare_queue(queue, durable=True, arguments=arguments)
    set_at = time.monotonic()
    await set_deadline(connection, OLD_DURATION_QUEUE, "d-old-duration", OLD_S)
    await set_deadline(connection, PREVIOUS_RELEASE_QUEUE, "d-previous-release", OLD_S)
    # The payment timeout changed: the 15 s queue is no longer configured.
    settings = Settings(
        amqp_url=amqp_url,
        retry_delays_s=(5.0,),
        archive_enabled=False,
        order_payment_timeout_s=NEW_TIMEOUT_S,
    )

    lines = await plan_and_apply(connection, settings)

    assert time.monotonic() - set_at < OLD_S, "too slow to tell early from on time"
    assert await depth(connection, WORK) == 0, lines  # nothing fired early
    assert await depth(connection, OLD_DURATION_QUEUE) == 1, lines
    assert await depth(connection, PREVIOUS_RELEASE_QUEUE) == 1, lines
    for queue in (OLD_DURATION_QUEUE, PREVIOUS_RELEASE_QUEUE):
        assert any(line.startswith(f"drain   {queue} (1 deadline(s)") for line in lines), lines
    new_queue = topology.deadline_queue("payments", "deadline.order_payment", NEW_TIMEOUT_S)
    assert await depth(connection, new_queue) == 0  # the configured duration's, declared

    # They expire into the work queue by themselves, on time.
    while await depth(connection, WORK) < 2:
        assert time.monotonic() - set_at < OLD_S + 15, await depth(connection, WORK)
        await asyncio.sleep(0.2)
    assert time.monotonic() - set_at >= OLD_S - 1

    lines = await plan_and_apply(connection, settings)

    assert await depth(connection, OLD_DURATION_QUEUE) is None, lines
    assert await depth(connection, PREVIOUS_RELEASE_QUEUE) is None, lines
    assert await depth(connection, WORK) == 2
    assert (await migrations.plan_for(connection, settings)).empty
