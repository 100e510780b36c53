"""Three copies of one event in hand at once, in three processes of one consumer on one store
(a provider delivering the same webhook three times at once): one of them applies it, and its
follow-up is published once, not once per copy."""

import asyncio
import json

import aio_pika
from hookhub import topology
from hookhub.events import EXCHANGE, Event
from hookhub_consumers.handler import emitted

from tests.support.broker import fresh_vhost
from tests.support.processes import start_consumer, wait_http_ready
from tests.support.settings import hub_env

COPIES = 3


async def test_three_concurrent_copies_of_one_event_publish_its_follow_up_once(tmp_path):
    approved = Event(
        id="pay-concurrent-1",
        source="/consumers/payments",
        type="payment.approved",
        data=json.dumps({"order_id": "o-concurrent-1"}).encode(),
    )
    with fresh_vhost() as amqp_url:
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/hookhub.db",
            HOOKHUB_OUTBOX_RELAY_INTERVAL_S="0.5",  # so that a relayed duplicate would show
        )
        started = [start_consumer("production", env, tmp_path) for _ in range(COPIES)]
        try:
            for process, readyz in started:
                wait_http_ready(readyz, timeout_s=60, process=process)
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange(EXCHANGE)
                capture = await channel.declare_queue(exclusive=True)
                await capture.bind(exchange, "production.queued")
                work_queue = topology.work_queue("production")
                await asyncio.gather(
                    *(
                        channel.default_exchange.publish(approved.to_message(), work_queue)
                        for _ in range(COPIES)
                    )
                )
                await asyncio.sleep(4)  # the copies, and several relay rounds after them
                follow_ups = []
                while (message := await capture.get(no_ack=True, fail=False)) is not None:
                    follow_ups.append((message.type, message.message_id))
        finally:
            logs = [process.log for process, _ in started]
            for process, _ in started:
                process.stop()

    queued = emitted(approved, "production", "production.queued", {"order_id": "o-concurrent-1"})
    assert follow_ups == [(queued.type, queued.id)], "\n".join(log[-2000:] for log in logs)
