"""The broker comes back empty (a new node, a lost volume): hub-api and the consumers declare the
topology again by themselves and carry on, with no restart. The reset is the test's own vhost
deleted and created again while a proxy in front of the shared broker is cut."""

import asyncio
import base64
import time
import uuid

import aio_pika

from tests.support.broker import fresh_vhost, rabbitmqctl
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import start_api, start_consumer, wait_http_ready
from tests.support.senders import post_internal_event
from tests.support.settings import hub_env
from tests.support.tcp_proxy import TcpProxy

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"broker-reset-secret").decode()


def eventually_accepted(api: str, event_type: str, event_id: str, timeout_s: float) -> int:
    """POST until a 202 (the same id each time, as a caller retrying a 503 would)."""
    deadline = time.monotonic() + timeout_s
    status = 0
    while time.monotonic() < deadline:
        status = post_internal_event(api, event_type, event_id).status_code
        if status == 202:
            break
        time.sleep(0.2)
    return status


async def queue_depth(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count


def test_after_the_broker_loses_its_definitions_the_hub_declares_them_again(tmp_path):
    endpoint = NotifyEndpoint()
    with fresh_vhost() as amqp_url, TcpProxy.to_url(amqp_url) as proxy:
        vhost = amqp_url.rsplit("/", 1)[1]
        through_proxy = proxy.url_through(amqp_url, reconnect_interval="0.5")
        env = hub_env(
            through_proxy,
            HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/hookhub.db",
            HOOKHUB_NOTIFY_URL=endpoint.url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
        )
        api, base = start_api(through_proxy, tmp_path)
        consumer, readyz = start_consumer("notifications", env, tmp_path)
        try:
            wait_http_ready(f"{base}/readyz", process=api)
            wait_http_ready(readyz, process=consumer)
            assert post_internal_event(base, "ci.build.finished", "before-reset").status_code == 202
            endpoint.wait_for("ci.build.finished", count=1)

            proxy.cut()
            rabbitmqctl("delete_vhost", vhost)  # exchanges, queues and bindings all gone
            rabbitmqctl("add_vhost", vhost)
            rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            proxy.restore()

            after = f"after-reset-{uuid.uuid4().hex[:6]}"
            assert eventually_accepted(base, "ci.build.finished", after, 30) == 202, api.log[-3000:]
            wait_http_ready(readyz, 30, process=consumer)
            [delivered] = endpoint.wait_for("ci.build.finished", count=2, timeout_s=30)[1:]
            assert delivered.json["id"] == after
            # The event log's archive and the alternate exchange's queue are back too.
            assert post_internal_event(base, "inventory.counted", "unbound").status_code == 202
            assert asyncio.run(queue_depth(amqp_url, "hookhub.archive")) >= 0
            assert asyncio.run(queue_depth(amqp_url, "hookhub.unrouted")) == 0
        finally:
            consumer.stop()
            api.stop()
            endpoint.close()


async def redeclare_differently(amqp_url: str, queue: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue, if_unused=False, if_empty=False)
        await channel.declare_queue(queue, durable=True, arguments={"x-max-length": 10})


def test_a_queue_changed_on_the_broker_during_an_outage_is_logged_and_the_api_serves(tmp_path):
    """An operator re-created a DLQ differently while hub-api was cut off: the reconnect must
    not turn on that conflict (no reconnect loop); it is logged, and events are taken again."""
    with fresh_vhost() as amqp_url, TcpProxy.to_url(amqp_url) as proxy:
        api, base = start_api(proxy.url_through(amqp_url, reconnect_interval="0.5"), tmp_path)
        try:
            wait_http_ready(f"{base}/readyz", process=api)
            proxy.cut()
            asyncio.run(redeclare_differently(amqp_url, "hookhub.payments.dlq"))
            proxy.restore()

            wait_http_ready(f"{base}/readyz", 30, process=api)
            accepted = eventually_accepted(base, "ci.build.finished", "after-conflict", 30)
            assert accepted == 202, api.log[-3000:]
            deadline = time.monotonic() + 10
            while '"topology.conflict"' not in api.log and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            api.stop()
    [conflict] = [line for line in api.log.splitlines() if '"topology.conflict"' in line]
    assert "queue hookhub.payments.dlq already exists" in conflict
