"""The publisher against the real broker: confirmed means routed, within its timeout."""

import asyncio
import time
import uuid

import aio_pika
import pytest
from hookhub import topology
from hookhub.broker import Broker, BrokerUnavailable
from hookhub.events import EXCHANGE, Event
from hookhub.settings import Settings

from tests.support.broker import fresh_vhost
from tests.support.tcp_proxy import TcpProxy

PUBLISH_TIMEOUT_S = 1.0
RECOVERY_BOUND_S = 10  # a correctness bound (never a hang), not a benchmark


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


def event() -> Event:
    return Event(id=str(uuid.uuid4()), source="tests", type="ci.publish", data=b"{}")


async def test_a_publish_the_broker_never_confirms_is_unavailable_within_the_publish_timeout():
    with fresh_vhost() as amqp_url, TcpProxy.to_url(amqp_url) as proxy:
        broker = Broker(
            Settings(amqp_url=proxy.url_through(amqp_url), publish_timeout_s=PUBLISH_TIMEOUT_S)
        )
        await broker.start()
        try:
            assert await broker.wait_ready(10)
            await broker.publish(event())
            proxy.freeze()  # the publish goes out and its confirm never comes back
            started = time.monotonic()
            with pytest.raises(BrokerUnavailable, match="not confirmed in time"):
                await asyncio.wait_for(broker.publish(event()), PUBLISH_TIMEOUT_S + 5)
            waited_s = time.monotonic() - started
        finally:
            proxy.restore()
            await broker.close()
    assert PUBLISH_TIMEOUT_S <= waited_s < PUBLISH_TIMEOUT_S + 0.5


async def test_after_the_broker_closes_the_channel_publishes_are_confirmed_on_its_successor(broker):
    """Someone deletes hookhub.events: the publish that finds it missing makes the broker close
    the channel; aio-pika opens another, the topology is declared again, and publishes go out
    on the new channel."""
    await broker.publish(event())
    admin = await aio_pika.connect(broker.settings.amqp_url)
    async with admin:
        await (await admin.channel()).exchange_delete(EXCHANGE)
    with pytest.raises(BrokerUnavailable):
        await broker.publish(event())

    deadline = time.monotonic() + RECOVERY_BOUND_S
    while True:
        try:
            await broker.publish(event())
            break
        except BrokerUnavailable:
            assert time.monotonic() < deadline, "publishes not confirmed again in time"
            await asyncio.sleep(0.1)
    assert await broker.check()
