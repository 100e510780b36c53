"""A message whose CloudEvents headers cannot be read is parked at once, not left unacked."""

import asyncio
import json

import aio_pika
from hookhub import dlq, topology

from tests.support.broker import fresh_vhost
from tests.support.processes import running_consumer
from tests.support.settings import hub_env


async def test_a_message_with_unreadable_headers_goes_to_the_dlq_with_its_reason(tmp_path):
    with fresh_vhost() as amqp_url:
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/h.db")
        with running_consumer("production", env, tmp_path) as consumer:
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                garbled = aio_pika.Message(
                    b'{"order_id": "o-1"}',
                    message_id="garbled-1",
                    correlation_id="corr-garbled-1",
                    headers={"cloudEvents:id": "garbled-1", "cloudEvents:time": "not-a-time"},
                )
                await channel.default_exchange.publish(garbled, topology.work_queue("production"))
                parked = []
                for _ in range(100):
                    parked = await dlq.list_parked(connection, "production")
                    if parked:
                        break
                    await asyncio.sleep(0.1)
                work = await channel.declare_queue(topology.work_queue("production"), passive=True)
        assert [p.id for p in parked] == ["garbled-1"]
        assert parked[0].reason.startswith("permanent failure: not a Hookhub event:")
        assert work.declaration_result.message_count == 0
        lines = [json.loads(line) for line in consumer.log.splitlines() if line.startswith("{")]
        [parked_line] = [line for line in lines if line["event"] == "event.dead_lettered"]
        assert parked_line["event_id"] == "garbled-1"
        assert parked_line["correlation_id"] == "corr-garbled-1"
