"""A message too large for one frame is refused before it reaches the broker, alone: the
connection, and every publish sharing it, carry on."""

import aio_pika
import pytest
from hookhub.broker import MAX_PROPERTIES_BYTES, Broker, MessageTooLarge, check_size
from hookhub.events import Event
from hookhub.settings import Settings

from tests.support.broker import fresh_vhost

FRAME_MAX_BYTES = 128 * 1024  # RabbitMQ's default


@pytest.fixture
async def broker():
    with fresh_vhost() as amqp_url:
        broker = Broker(Settings(amqp_url=amqp_url, publish_timeout_s=5))
        await broker.start()
        assert await broker.wait_ready(10)
        yield broker
        await broker.close()


def _event(n: int, **attributes: str) -> Event:
    return Event(id=f"size-{n}", source="/tests", type="ci.build", data=b"{}", **attributes)


async def test_a_subject_over_the_frame_is_refused_alone_and_the_connection_is_kept(broker):
    connection = broker.connection

    with pytest.raises(MessageTooLarge, match=r"over the 32768 allowed \(largest: header"):
        await broker.publish(_event(1, subject="s" * FRAME_MAX_BYTES))
    await broker.publish(_event(2))  # the next one, on the same connection

    assert broker.connection is connection and await broker.check()


async def test_a_copy_with_headers_over_the_bound_is_refused_before_it_is_sent(broker):
    copy = aio_pika.Message(b"{}", headers={"x-reason": "r" * MAX_PROPERTIES_BYTES})

    with pytest.raises(MessageTooLarge):
        await broker.publish_to_queue(copy, "hookhub.payments")

    assert await broker.check()


def test_an_ordinary_event_fits_without_being_encoded():
    check_size(_event(3, subject="order-1", traceparent="00-" + "a" * 52).to_properties())


def test_nested_headers_are_measured_exactly():
    nested = {"x-death": [{"reason": "rejected", "count": 1, "queue": "q" * 200}] * 50}
    check_size(aio_pika.Message(b"", headers=nested).properties)  # about 12 KiB: fits
    with pytest.raises(MessageTooLarge):
        check_size(aio_pika.Message(b"", headers={"x-death": [nested] * 4}).properties)
