"""A node that hangs rather than dies (SIGSTOP: its TCP connections stay open, nothing answers)
is left for the next address within seconds: by the Broker (hub-api's publisher, every
consumer's connection) and by the indexer. Two standalone RabbitMQ nodes of this test's own, on
ports of their own; never the shared broker. Each node is let go on (SIGCONT) and destroyed
whatever happens."""

import asyncio
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aio_pika
import pytest
from hookhub import topology
from hookhub.broker import Broker, BrokerUnavailable
from hookhub.events import EXCHANGE, Event
from hookhub.settings import Settings
from hookhub_eventlog.indexer import run_indexer
from hookhub_eventlog.store import EventQuery, open_event_log

from chaos.cluster import (
    RABBITMQ_BIN,
    RABBITMQ_CONF,
    START_TIMEOUT_S,
    Node,
    cli_env,
    rabbitmqctl,
)

# Intake back within this long of the node freezing (the bound).
INTAKE_BACK_S = 5.0
TIMEOUTS = {"publish_timeout_s": 2.0, "connect_timeout_s": 2.0, "failover_after_s": 1.0}


class OwnNode(Node):
    """A chaos Node under a name of this test run's own (no clash with `make chaos`)."""

    run_id: str = ""

    @property
    def name(self) -> str:
        return f"hookhub-hung-{self.run_id}-{self.index}@localhost"


@contextmanager
def two_nodes(home: Path, count: int = 2) -> Iterator[list[OwnNode]]:
    (home / ".erlang.cookie").write_text(secrets.token_hex(20))
    (home / ".erlang.cookie").chmod(0o400)
    (home / "rabbitmq-env.conf").write_text("")
    (home / "rabbitmq.conf").write_text(RABBITMQ_CONF)
    (home / "enabled_plugins").write_text("[].\n")
    run_id = uuid.uuid4().hex[:6]
    nodes = []
    for index in range(1, count + 1):
        node = OwnNode(index, home, home / "logs")
        node.run_id = run_id
        nodes.append(node)
    (home / "logs").mkdir()
    try:
        for node in nodes:
            node.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        for node in nodes:
            # await_startup fails at once while the node is not yet registered with epmd.
            while subprocess.run(
                [str(RABBITMQ_BIN / "rabbitmqctl"), "-q", "-n", node.name, "await_startup",
                 "--timeout", str(int(START_TIMEOUT_S))],
                env=cli_env(home), capture_output=True, timeout=START_TIMEOUT_S + 10,
            ).returncode:  # fmt: skip
                assert node.running and time.monotonic() < deadline, f"{node.name} did not start"
                time.sleep(0.5)
        yield nodes
    finally:
        for node in nodes:
            resume(node)
            node.destroy()


def freeze(node: OwnNode) -> None:
    for pid in node._beams():
        os.kill(pid, signal.SIGSTOP)


def resume(node: OwnNode) -> None:
    for pid in node._beams():
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[OwnNode]]:
    with two_nodes(tmp_path_factory.mktemp("hung-node")) as started:
        yield started


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[OwnNode]]:
    """Three nodes joined into one cluster (quorum queues on all three), as in production."""
    with two_nodes(tmp_path_factory.mktemp("hung-cluster"), count=3) as started:
        first = started[0]
        for node in started[1:]:
            for args in (["stop_app"], ["join_cluster", first.name], ["start_app"]):
                rabbitmqctl(node, *args)
        yield started


def an_event(type: str = "ci.hung") -> Event:
    return Event(id=str(uuid.uuid4()), source="/tests", type=type, data=b"{}")


async def publish_until_confirmed(broker: Broker, event: Event, within_s: float) -> float:
    """Publish (the same event, as a caller retrying a 503 would) until confirmed; the seconds."""
    started = time.monotonic()
    while True:
        try:
            await broker.publish(event)
            return time.monotonic() - started
        except BrokerUnavailable:
            assert time.monotonic() - started < within_s, "intake not back in time"
            await asyncio.sleep(0.1)


async def test_a_frozen_first_node_is_left_and_publishes_confirm_through_the_second(nodes):
    first, second = nodes
    urls = ",".join(node.url("/") for node in nodes)
    broker = Broker(Settings(amqp_url=urls, **TIMEOUTS))
    await broker.start()
    try:
        assert await broker.wait_ready(30)
        await broker.publish(an_event())
        assert broker.connection is not None and broker.connection.url.port == first.amqp_port

        freeze(first)
        try:
            frozen_at = time.monotonic()
            await publish_until_confirmed(broker, an_event(), within_s=INTAKE_BACK_S + 5)
            back_after_s = time.monotonic() - frozen_at
        finally:
            resume(first)
        assert broker.connection.url.port == second.amqp_port
    finally:
        await broker.close()
    print(f"intake back {back_after_s:.1f}s after the first node froze")
    assert back_after_s < INTAKE_BACK_S


async def test_the_indexer_moves_to_the_next_address_when_its_node_freezes(nodes, tmp_path):
    first, second = nodes
    for node in nodes:  # standalone nodes: each its own archive
        connection = await aio_pika.connect(node.url("/"))
        async with connection:
            await topology.declare(await connection.channel(), (1.0,), 20, topology.Archive())
    store_url = f"sqlite:///{tmp_path}/hookhub.db"
    urls = ",".join(node.url("/") for node in nodes)
    settings = Settings(amqp_url=urls, store_url=store_url, **TIMEOUTS)
    stop = asyncio.Event()
    indexing = asyncio.create_task(run_indexer(settings, stop))
    event_log = open_event_log(store_url)

    async def publish_to(node: OwnNode, event: Event) -> None:
        connection = await aio_pika.connect(node.url("/"))
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(EXCHANGE)
            await exchange.publish(event.to_message(), event.routing_key)

    async def indexed(event: Event, within_s: float) -> None:
        deadline = time.monotonic() + within_s
        while not await event_log.find_events(EventQuery(id=event.id)):
            assert time.monotonic() < deadline, f"{event.id} not indexed within {within_s}s"
            await asyncio.sleep(0.2)

    try:
        before = an_event()
        await publish_to(first, before)
        await indexed(before, within_s=15)

        freeze(first)
        try:
            after = an_event()
            await publish_to(second, after)
            await indexed(after, within_s=20)
        finally:
            resume(first)
    finally:
        stop.set()
        await asyncio.wait_for(indexing, 15)
        await event_log.close()


async def test_intake_comes_back_while_a_node_of_the_cluster_hangs(cluster):
    """In a cluster, declaring anything (an exchange, a queue, a binding) waits for every node,
    a hung one too, until the cluster declares it down (net_ticktime: a minute); connecting and
    publishing to quorum queues led elsewhere do not. A failover that declared the topology on
    its new connection before taking publishes got none confirmed until the node was let go."""
    hung, leading, _ = cluster
    # The queues (quorum, on all three nodes) are led by the second node: the one that hangs
    # holds only the publisher's connection, so what is measured is the failover alone.
    connection = await aio_pika.connect(leading.url("/"))
    async with connection:
        await topology.declare(await connection.channel(), (1.0,), 20, topology.Archive())
    urls = ",".join(node.url("/") for node in cluster)
    broker = Broker(Settings(amqp_url=urls, **TIMEOUTS))
    await broker.start()
    try:
        assert await broker.wait_ready(30)
        await broker.publish(an_event())
        assert broker.connection is not None and broker.connection.url.port == hung.amqp_port

        freeze(hung)
        try:
            # Within 8 s (failover ~3 s, then the first publish confirmed): before, none until
            # the node was let go.
            await publish_until_confirmed(broker, an_event(), within_s=8)
            assert broker.connection.url.port != hung.amqp_port
        finally:
            resume(hung)
    finally:
        await broker.close()


async def test_a_node_waiting_on_the_hung_leaders_election_is_not_left(cluster):
    """The queues' and the archive's leader hangs while the publisher is connected to a healthy
    node: confirms wait there for the elections (the archive's until net_ticktime declares the
    node down), and would wait just as long on any other node. The publisher stays (its node
    opens a channel at once) rather than failing over between the healthy nodes, and the hung
    node is never tried; before, it failed over to the third node within ~3 s."""
    hung, healthy, other = cluster
    connection = await aio_pika.connect(hung.url("/"))  # leaders where they are declared
    async with connection:
        await topology.declare(await connection.channel(), (1.0,), 20, topology.Archive())
    urls = ",".join(node.url("/") for node in (healthy, other, hung))
    broker = Broker(Settings(amqp_url=urls, **TIMEOUTS))
    await broker.start()
    try:
        assert await broker.wait_ready(30)
        await broker.publish(an_event())
        assert broker.connection is not None and broker.connection.url.port == healthy.amqp_port

        freeze(hung)
        try:
            # net_ticktime 4 s (deploy/rabbitmq/advanced.config): the archive's leader moves
            # 4-5 s in.
            await publish_until_confirmed(broker, an_event(), within_s=12)
            assert broker.connection.url.port == healthy.amqp_port
        finally:
            resume(hung)
    finally:
        await broker.close()
