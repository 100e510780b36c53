"""Replay removes a parked message only once the work queue really holds the new copy."""

import subprocess
import sys

import aio_pika
from hookhub import dlq, topology

from tests.support.broker import fresh_vhost
from tests.support.settings import hub_env

DELAYS_S = (1.0,)


def cli(amqp_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookhub.cli", *args],
        env={**hub_env(amqp_url), "HOOKHUB_RETRY_DELAYS": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_replay_into_a_missing_work_queue_fails_clearly_and_keeps_the_message_parked():
    with fresh_vhost() as amqp_url:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare(channel, DELAYS_S, 20)
            parked_message = aio_pika.Message(b"{}", message_id="parked-1")
            await channel.default_exchange.publish(
                parked_message, topology.dead_letter_queue("payments")
            )
            await channel.queue_delete(topology.work_queue("payments"))

            failed = cli(amqp_url, "dlq", "replay", "payments", "--all")
            still_parked = [p.id for p in await dlq.list_parked(connection, "payments")]

            await topology.declare(channel, DELAYS_S, 20)
            replayed = cli(amqp_url, "dlq", "replay", "payments", "--id", "parked-1")
            work = await channel.declare_queue(topology.work_queue("payments"), passive=True)
            left_parked = await dlq.list_parked(connection, "payments")

    assert failed.returncode == 1
    assert "hookhub.payments did not take 'parked-1'" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert still_parked == ["parked-1"]
    assert replayed.returncode == 0, replayed.stderr
    assert work.declaration_result.message_count == 1 and left_parked == []


def test_dlq_commands_on_a_broker_without_the_queues_say_what_to_run():
    with fresh_vhost() as amqp_url:
        result = cli(amqp_url, "dlq", "list", "payments")
    assert result.returncode == 1
    assert "hookhub.payments.dlq does not exist on this broker" in result.stderr
    assert "Traceback" not in result.stderr
