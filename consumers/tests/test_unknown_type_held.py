"""A type this release does not handle, on its own work queue, is held for a newer release:
it waits the longest retry delay, its attempts not counted, and is never parked."""

import asyncio

import aio_pika
from hookhub import dlq, failures, topology
from hookhub.events import Event

from tests.support.broker import fresh_vhost
from tests.support.processes import running_consumer
from tests.support.settings import hub_env


async def test_an_unknown_type_is_held_in_the_longest_retry_queue_not_parked(tmp_path):
    with fresh_vhost() as amqp_url:
        env = hub_env(
            amqp_url, HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/h.db", HOOKHUB_RETRY_DELAYS="1,60"
        )
        with running_consumer("production", env, tmp_path):
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                # What a newer release's production would get: a deadline this one never sets.
                newer = Event("held-1", "/hookhub/production", "deadline.rework", b"{}")
                await channel.default_exchange.publish(
                    newer.to_message(), topology.work_queue("production")
                )
                longest = topology.retry_queue("production", 60)
                held = None
                for _ in range(100):
                    held = await (await channel.get_queue(longest)).get(no_ack=True, fail=False)
                    if held is not None:
                        break
                    await asyncio.sleep(0.1)
                parked = await dlq.list_parked(connection, "production")
        assert held is not None and held.message_id == "held-1"
        assert failures.attempts_so_far(held.headers) == 0  # held, not a failed attempt
        assert parked == []
