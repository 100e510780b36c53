"""A consumer's /metrics answers the operator's questions: how deep its queues are, how far
behind it is, how its notifications go, whether follow-ups wait, and which version runs."""

import asyncio
import base64
import re

import aio_pika
import httpx
from hookhub.events import EXCHANGE, Event

from tests.support.broker import fresh_vhost
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import start_consumer, wait_http_ready
from tests.support.settings import hub_env

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"metrics-test-secret").decode()


def sample(metrics: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(wanted)}\}} (\S+)$", metrics, re.M)
    return float(match.group(1)) if match else None


async def test_a_consumers_metrics_show_depths_lag_deliveries_outbox_and_version(tmp_path):
    endpoint = NotifyEndpoint()
    with fresh_vhost() as amqp_url:
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/hookhub.db",
            HOOKHUB_NOTIFY_URL=endpoint.url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
            HOOKHUB_OUTBOX_RELAY_INTERVAL_S="0.2",
        )
        consumer, readyz = start_consumer("notifications", env, tmp_path)
        try:
            wait_http_ready(readyz, process=consumer)
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange(EXCHANGE)
                event = Event(id="m-1", source="/events/jenkins", type="ci.build", data=b"{}")
                await exchange.publish(event.to_message(), event.routing_key)
            endpoint.wait_for("ci.build")
            await asyncio.sleep(0.5)  # the marker and a relay round after the delivery
            async with httpx.AsyncClient() as client:
                metrics = (await client.get(readyz.replace("/readyz", "/metrics"))).text
        finally:
            consumer.stop()
            endpoint.close()

    assert sample(metrics, "hookhub_queue_messages", queue="hookhub.notifications") == 0
    assert sample(metrics, "hookhub_queue_messages", queue="hookhub.notifications.dlq") == 0
    lag = "hookhub_consumer_event_age_seconds_count"
    assert sample(metrics, lag, consumer="notifications") == 1
    delivered = "hookhub_notification_delivery_seconds_count"
    assert sample(metrics, delivered, outcome="delivered") == 1
    assert sample(metrics, "hookhub_outbox_pending", consumer="notifications") == 0
    assert sample(metrics, "hookhub_build_info", version="0.1.0") == 1
