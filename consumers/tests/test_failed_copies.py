"""A failed message's trip through the retry queues: it keeps its type, and a retry queue that
is gone is declared again rather than burning the message's deliveries."""

import asyncio
import base64
import json
import time
import uuid

import aio_pika
from hookhub import dlq, topology
from hookhub.events import EXCHANGE

from tests.support.broker import fresh_vhost
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import running_consumer
from tests.support.settings import hub_env

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"failed-copies-secret").decode()
DELAYS_S = (0.3, 0.3)


def consumer_env(amqp_url: str, tmp_path, endpoint: NotifyEndpoint) -> dict[str, str]:
    return hub_env(
        amqp_url,
        HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/hookhub.db",
        HOOKHUB_NOTIFY_URL=endpoint.url,
        HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
        HOOKHUB_RETRY_DELAYS=",".join(map(str, DELAYS_S)),
    )


def posts_of(endpoint: NotifyEndpoint, event_id: str) -> list[dict]:
    return [r.json for r in endpoint.received if r.headers["webhook-id"] == event_id]


async def until(condition, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_foreign_message_keeps_its_type_after_a_retry(tmp_path):
    """Published by something other than Hookhub (no type of its own): after a trip through the
    retry queue it is still of the type it was routed by, not named after the work queue."""
    endpoint = NotifyEndpoint()
    endpoint.status_for_type["ci.foreign"] = 500
    event_id = f"foreign-{uuid.uuid4().hex[:8]}"
    try:
        with fresh_vhost() as amqp_url:
            env = consumer_env(amqp_url, tmp_path, endpoint)
            with running_consumer("notifications", env, tmp_path) as consumer:
                connection = await aio_pika.connect(amqp_url)
                async with connection:
                    channel = await connection.channel(publisher_confirms=True)
                    exchange = await channel.get_exchange(EXCHANGE)
                    foreign = aio_pika.Message(b'{"ok": true}', message_id=event_id)
                    await exchange.publish(foreign, "ci.foreign")
                    await until(lambda: posts_of(endpoint, event_id))
                    endpoint.status_for_type.pop("ci.foreign")
                    await until(lambda: len(posts_of(endpoint, event_id)) >= 2)
    finally:
        endpoint.close()
    types = [post["type"] for post in posts_of(endpoint, event_id)]
    assert types == ["ci.foreign", "ci.foreign"], consumer.log[-2000:]


async def test_a_deleted_retry_queue_is_declared_again_and_the_event_walks_its_retries(tmp_path):
    """Given back to the broker at once, the message would be redelivered until the delivery
    limit parked it, POSTed at every delivery. Instead the queue is declared again and the
    event is POSTed once per configured attempt, then parked with the consumer's reason."""
    endpoint = NotifyEndpoint()
    endpoint.status_for_type["ci.flaky"] = 500
    event_id = f"flaky-{uuid.uuid4().hex[:8]}"
    first_retry = topology.retry_queue("notifications", DELAYS_S[0])
    try:
        with fresh_vhost() as amqp_url:
            env = consumer_env(amqp_url, tmp_path, endpoint)
            with running_consumer("notifications", env, tmp_path) as consumer:
                connection = await aio_pika.connect(amqp_url)
                async with connection:
                    channel = await connection.channel(publisher_confirms=True)
                    await channel.queue_delete(first_retry)
                    exchange = await channel.get_exchange(EXCHANGE)
                    message = aio_pika.Message(
                        json.dumps({"ok": True}).encode(), message_id=event_id, type="ci.flaky"
                    )
                    await exchange.publish(message, "ci.flaky")

                    async def is_parked() -> bool:
                        return bool(await dlq.list_parked(connection, "notifications"))

                    deadline = time.monotonic() + 20
                    while not await is_parked():
                        assert time.monotonic() < deadline, consumer.log[-3000:]
                        await asyncio.sleep(0.1)
                    [parked] = await dlq.list_parked(connection, "notifications")
                    back = await channel.declare_queue(first_retry, passive=True)
    finally:
        endpoint.close()
    assert len(posts_of(endpoint, event_id)) == len(DELAYS_S) + 1, consumer.log[-3000:]
    assert parked.reason.startswith(f"gave up after {len(DELAYS_S) + 1} attempts")
    assert back.name == first_retry
