"""Where the verdict looks, as an operator would: the parking lots and queues (through the
broker, as `hookhub dlq list` reads them) and the event log (`hookhub events` as a command).
Never the hub's store, never a consumer's code."""

import json
import subprocess
import sys

import aio_pika
from hookhub import dlq, specs, topology

from chaos.verdict import ParkedMessage, order_of

EVENTS_TIMEOUT_S = 120.0


async def parked_messages(connection: aio_pika.abc.AbstractConnection) -> list[ParkedMessage]:
    found = []
    for consumer in specs.names():
        for message in await dlq.list_parked(connection, consumer, limit=100_000):
            found.append(
                ParkedMessage(
                    consumer, message.id, message.type, order_of(message.body), message.reason
                )
            )
    return found


async def queue_depths(
    connection: aio_pika.abc.AbstractConnection, retry_delays_s: tuple[float, ...]
) -> dict[str, int]:
    """Messages ready in each consumer's work, retry and dead-letter queue."""
    names = [
        name
        for consumer in specs.names()
        for name in (
            topology.work_queue(consumer),
            *(topology.retry_queue(consumer, delay) for delay in retry_delays_s),
            topology.dead_letter_queue(consumer),
        )
    ]
    depths = {}
    async with connection.channel() as channel:
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            depths[name] = queue.declaration_result.message_count
    return depths


def in_flight(depths: dict[str, int]) -> int:
    return sum(n for name, n in depths.items() if not name.endswith(".dlq"))


def hookhub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookhub.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=EVENTS_TIMEOUT_S,
    )


def not_findable(env: dict[str, str], ids: set[str], shown: int = 3) -> list[str]:
    """The ids the event log does not find: all listed at once (`hookhub events list --json`),
    and a few shown one by one (`hookhub events show ID`) as a user would look one up."""
    listed = hookhub(env, "events", "list", "--json", "--limit", str(10 * len(ids) + 1000))
    if listed.returncode != 0:
        return sorted(ids)
    found = {event["id"] for event in json.loads(listed.stdout)}
    missing = ids - found
    for event_id in sorted(ids & found)[:shown]:
        if hookhub(env, "events", "show", event_id).returncode != 0:
            missing.add(event_id)
    return sorted(missing)
