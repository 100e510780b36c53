"""A message that crashes its consumer outright, again and again, is parked by the broker itself."""

import asyncio

import aio_pika
from hookhub import dlq, failures, topology
from hookhub.events import Event

from tests.support.broker import fresh_vhost

DELIVERY_LIMIT = 3


async def test_a_message_that_keeps_crashing_its_consumer_is_dead_lettered_by_the_broker():
    with fresh_vhost() as amqp_url:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare(channel, (1.0,), DELIVERY_LIMIT)
            poison = Event(id="poison-1", source="/tests", type="order.created", data=b"{")
            exchange = await channel.get_exchange("hookhub.events")
            await exchange.publish(poison.to_message(), poison.routing_key)

            # A crash hands the message back unacknowledged, exactly like this requeue.
            work = await channel.get_queue(topology.work_queue("payments"))
            deliveries = 0
            while (message := await work.get(no_ack=False, fail=False)) is not None:
                deliveries += 1
                await message.nack(requeue=True)
                await asyncio.sleep(0.05)

            parked = await dlq.list_parked(connection, "payments")
        assert deliveries == DELIVERY_LIMIT + 1
        assert [p.id for p in parked] == ["poison-1"]
        assert parked[0].reason == "broker: delivery_limit on hookhub.payments"


async def test_a_message_retried_once_then_parked_by_the_broker_says_the_broker_parked_it():
    """It failed once (the consumer's headers say why), came back from the retry queue, then
    crashed its consumer until the broker parked it: `dlq list` shows the newer reason."""
    with fresh_vhost() as amqp_url:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare(channel, (0.1,), DELIVERY_LIMIT)
            event = Event(id="flaky-1", source="/tests", type="order.created", data=b"{}")
            retried = failures.failure_headers(
                {**event.to_message().headers, "x-death": [{"reason": "expired"}]},
                consumer="payments",
                attempts=1,
                reason="Retry: the store was busy",
                routing_key=event.routing_key,
            )
            await channel.default_exchange.publish(
                moved_copy_of(event, retried), topology.work_queue("payments")
            )
            work = await channel.get_queue(topology.work_queue("payments"))
            while (message := await work.get(no_ack=False, fail=False)) is not None:
                await message.nack(requeue=True)
                await asyncio.sleep(0.05)

            [parked] = await dlq.list_parked(connection, "payments")
        assert "x-death" not in retried
        assert parked.reason == "broker: delivery_limit on hookhub.payments"
        assert parked.attempts == 1


def moved_copy_of(event: Event, headers: dict) -> aio_pika.Message:
    message = event.to_message()
    message.headers = headers
    return message
