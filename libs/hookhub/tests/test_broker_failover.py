"""Several broker addresses: the Broker uses the first that answers and, when its node is lost for
good, moves to the next, where publishes are confirmed again and a consumer is subscribed again.
Two TCP proxies in front of the one real broker stand for two nodes of a cluster."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from hookhub.broker import Broker, BrokerUnavailable
from hookhub.events import EXCHANGE, Event
from hookhub.settings import Settings
from structlog.testing import capture_logs

from tests.support.broker import fresh_vhost
from tests.support.tcp_proxy import TcpProxy

FAILOVER_AFTER_S = 1.0
FAILOVER_BOUND_S = FAILOVER_AFTER_S + 5  # a correctness bound (no hang), not a benchmark
ROUTING_KEY = "ci.failover"


class SubscribingConsumer:
    """What a consumer hands the Broker as `on_connected`: a queue of its own, subscribed on each
    connection it is given; it keeps the connections and what it received."""

    def __init__(self) -> None:
        self.connections: list[AbstractRobustConnection] = []
        self.received: asyncio.Queue[str] = asyncio.Queue()

    async def __call__(self, connection: AbstractRobustConnection) -> None:
        self.connections.append(connection)
        channel = await connection.channel()
        queue = await channel.declare_queue("failover-consumer", durable=True)
        await queue.bind(EXCHANGE, ROUTING_KEY)
        await queue.consume(self._on_message)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        async with message.process():
            self.received.put_nowait(message.message_id or "")


@pytest.fixture
def nodes() -> Iterator[tuple[str, TcpProxy, TcpProxy]]:
    """A fresh vhost reached through two proxies; yields HOOKHUB_AMQP_URL listing both."""
    with fresh_vhost() as url, TcpProxy.to_url(url) as first, TcpProxy.to_url(url) as second:
        urls = ",".join(p.url_through(url, reconnect_interval="0.5") for p in (first, second))
        yield urls, first, second


@pytest.fixture
async def consumer_broker(nodes) -> AsyncIterator[tuple[Broker, SubscribingConsumer]]:
    consumer = SubscribingConsumer()
    broker = Broker(
        Settings(amqp_url=nodes[0], failover_after_s=FAILOVER_AFTER_S), on_connected=consumer
    )
    await broker.start()
    assert await broker.wait_ready(10)
    yield broker, consumer
    await broker.close()


def event() -> Event:
    return Event(id=str(uuid.uuid4()), source="tests", type=ROUTING_KEY, data=b"{}")


async def confirmed_within(broker: Broker, published: Event, within_s: float) -> float:
    """Publish (the same event, as a caller retrying a 503 would) until confirmed; the seconds."""
    started = time.monotonic()
    while True:
        try:
            await broker.publish(published)
            return time.monotonic() - started
        except BrokerUnavailable:
            if time.monotonic() - started > within_s:
                raise
            await asyncio.sleep(0.1)


async def becomes_not_ready(broker: Broker, within_s: float = 2) -> bool:
    deadline = time.monotonic() + within_s
    while await broker.check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def test_first_address_lost_for_good_publishes_confirm_through_the_next(
    nodes, consumer_broker
):
    _, first, second = nodes
    broker, consumer = consumer_broker
    assert consumer.connections[0].url.port == first.port

    with capture_logs() as logs:
        first.cut()  # and never restored
        assert await becomes_not_ready(broker)
        failover_s = await confirmed_within(broker, after := event(), FAILOVER_BOUND_S)

    print(f"publishes confirmed again {failover_s:.2f}s after the first node was lost")
    assert await broker.check()
    [failover] = [line for line in logs if line["event"] == "broker.failover"]
    assert f":{first.port}/" in failover["url"] and "guest:guest" not in str(logs)
    # The consumer was handed the new connection, through the second node, and consumes on it.
    assert [c.url.port for c in consumer.connections] == [first.port, second.port]
    assert await asyncio.wait_for(consumer.received.get(), 5) == after.id


async def test_the_first_address_that_answers_is_used_at_start(nodes):
    urls, first, second = nodes
    first.cut()
    broker = Broker(Settings(amqp_url=urls))
    await broker.start()
    try:
        assert await broker.wait_ready(10)
        await broker.publish(event())
        assert broker.connection is not None and broker.connection.url.port == second.port
    finally:
        await broker.close()


async def test_the_topology_is_declared_again_on_the_node_failed_over_to(nodes, consumer_broker):
    urls, first, _ = nodes
    broker, _ = consumer_broker
    admin = await aio_pika.connect(urls.split(",")[1])
    async with admin:
        channel = await admin.channel()
        await channel.exchange_delete(EXCHANGE)  # as a node that lost its definitions would be
        first.cut()
        await confirmed_within(broker, event(), FAILOVER_BOUND_S)
        await channel.declare_exchange(EXCHANGE, passive=True)


async def test_a_first_node_gone_silent_is_left_for_the_next_even_while_idle(nodes):
    urls, first, second = nodes
    broker = Broker(
        Settings(amqp_url=urls, failover_after_s=FAILOVER_AFTER_S, readiness_probe_interval_s=1)
    )
    await broker.start()
    try:
        assert await broker.wait_ready(10)
        first.freeze()  # a black-hole partition: the connection stays open, nothing answers
        started = time.monotonic()
        assert await becomes_not_ready(broker, within_s=3)  # noticed by readiness alone

        while not await broker.check():  # then left for the second node, with no publish
            assert time.monotonic() - started < FAILOVER_BOUND_S + 2
            await asyncio.sleep(0.1)
        recovered_s = time.monotonic() - started
        await broker.publish(event())
    finally:
        await broker.close()
    print(f"idle broker moved off a silent node in {recovered_s:.2f}s")
    assert broker.connection is not None and broker.connection.url.port == second.port
