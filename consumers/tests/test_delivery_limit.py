"""A message that crashes its consumer outright, again and again, is parked by the broker itself."""

import asyncio

import aio_pika
from hookhub import dlq, topology
from hookhub.events import Event

from conftest import fresh_vhost

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
