"""A backfill whose node hangs half-way (SIGSTOP) moves to the next address and reads on from
where it got to: every archived event reaches the receiver once. Two standalone RabbitMQ nodes of
this test's own (as in test_hung_node), each holding the same events at the same positions."""

import asyncio
import base64
import time
import uuid
from collections import Counter
from datetime import UTC, datetime

import aio_pika
from hookhub import topology
from hookhub.events import EXCHANGE, Event

from tests.support.net import free_port
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import HubProcess
from tests.support.settings import hub_env
from tests.test_hung_node import freeze, resume, two_nodes

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"backfill-hung-secret").decode()
EVENTS = 120


async def archive_on(url: str, events: list[Event]) -> None:
    """The archive alone (no consumer's queue) on a node, holding `events` in order."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await topology.declare(channel, (1.0,), 20, topology.Archive(), consumers=())
        exchange = await channel.get_exchange(EXCHANGE)
        for event in events:
            await exchange.publish(event.to_message(), event.routing_key)


def test_a_backfill_whose_node_freezes_reads_on_through_the_next_once_each(tmp_path) -> None:
    endpoint = NotifyEndpoint()
    endpoint.delay_s = 0.05  # slow enough to be half-way when the node freezes
    events = [
        Event(id=f"hung-{n}-{uuid.uuid4().hex[:6]}", source="/events/jenkins",
              type="ci.build.finished", data=b'{"ok": true}')
        for n in range(EVENTS)
    ]  # fmt: skip
    (home := tmp_path / "nodes").mkdir()
    with two_nodes(home) as nodes:
        since = datetime.now(UTC)
        time.sleep(1.1)  # the archive's timestamps are whole seconds
        for node in nodes:
            asyncio.run(archive_on(node.url("/"), events))
        env = hub_env(
            ",".join(node.url("/") for node in nodes),
            HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/hookhub.db",
            HOOKHUB_NOTIFY_URL=endpoint.url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
            HOOKHUB_FAILOVER_AFTER_S="1",
        )
        args = ["consume", "notifications", "--probe-port", str(free_port())]
        consumer = HubProcess(
            [*args, "--from", since.isoformat()], env, tmp_path / "notifications.log"
        )
        try:
            deadline = time.monotonic() + 60
            while len(endpoint.received) < EVENTS // 4:
                assert time.monotonic() < deadline, consumer.log[-3000:]
                time.sleep(0.02)
            freeze(nodes[0])
            try:
                at_freeze = len(endpoint.received)
                endpoint.delay_s = 0
                deadline = time.monotonic() + 60
                while len(set(r.json["id"] for r in endpoint.received)) < EVENTS:
                    assert time.monotonic() < deadline, consumer.log[-3000:]
                    time.sleep(0.1)
                time.sleep(1)  # room for a second copy, if there were one
            finally:
                resume(nodes[0])
        finally:
            consumer.stop()
            endpoint.close()

    got = Counter(received.json["id"] for received in endpoint.received)
    assert at_freeze < EVENTS, "the freeze came after the backfill was done"
    assert set(got) == {event.id for event in events}
    assert {n for n in got.values()} == {1}, [i for i, n in got.items() if n > 1][:5]
    assert '"backfill.done"' in consumer.log
