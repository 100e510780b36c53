"""The publisher against the real broker: confirmed means routed."""

import aio_pika
import pytest
from hookhub import topology
from hookhub.broker import Broker, BrokerUnavailable
from hookhub.settings import Settings

from conftest import fresh_vhost


@pytest.fixture
async def broker():
    with fresh_vhost() as amqp_url:
        broker = Broker(Settings(amqp_url=amqp_url, publish_timeout_s=5))
        await broker.start()
        assert await broker.wait_ready(10)
        yield broker
        await broker.close()


async def test_a_copy_for_a_queue_that_does_not_exist_fails_instead_of_counting_as_confirmed(
    broker,
):
    copy = aio_pika.Message(b"{}", message_id="retry-copy-1")
    with pytest.raises(BrokerUnavailable, match="no queue took the message"):
        await broker.publish_to_queue(copy, "hookhub.payments.retry.999s")
    assert await broker.check()  # a returned message says nothing bad about the broker


async def test_a_copy_for_an_existing_queue_is_confirmed_and_there(broker):
    await broker.publish_to_queue(aio_pika.Message(b"{}", message_id="m-1"), "hookhub.unrouted")
    channel = await broker.connection.channel()
    message = await (await channel.get_queue("hookhub.unrouted")).get(no_ack=True)
    assert message.message_id == "m-1"
    await channel.close()


async def test_a_copy_for_a_deleted_retry_queue_declares_it_again_and_is_confirmed_there():
    with fresh_vhost() as amqp_url:
        broker = Broker(Settings(amqp_url=amqp_url, retry_delays_s=(2.0,)))
        await broker.start()
        try:
            assert await broker.wait_ready(10)
            retry = topology.retry_queue("notifications", 2.0)
            channel = await broker.connection.channel()
            await channel.queue_delete(retry)

            await broker.publish_to_queue(aio_pika.Message(b"{}", message_id="copy-2"), retry)

            message = await (await channel.declare_queue(retry, passive=True)).get(no_ack=True)
            assert message.message_id == "copy-2"
            await channel.close()
        finally:
            await broker.close()
