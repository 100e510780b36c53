"""The index follows its archive through a redeclaration: the stream deleted and declared again
(a broker that lost its definitions, a new cluster, a vhost recreated) starts at position 0, and
the indexer, checking at every start and reconnect which stream it reads, indexes the new one
from its start instead of taking its events for ones it already holds."""

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
from hookhub import topology
from hookhub.events import EXCHANGE, Event

from tests.support.broker import fresh_vhost
from tests.support.processes import HubProcess
from tests.support.settings import hub_env

FOUND_WITHIN_S = 30


def hookhub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookhub.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def listed(env: dict[str, str], *args: str) -> list[dict]:
    result = hookhub(env, "events", "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_listed(env: dict[str, str], event_id: str, *args: str) -> dict:
    deadline = time.monotonic() + FOUND_WITHIN_S
    while not (found := [e for e in listed(env, *args) if e["id"] == event_id]):
        assert time.monotonic() < deadline, f"{event_id} never listed with {args}"
        time.sleep(0.3)
    return found[0]


async def publish(amqp_url: str, *events: Event) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE)
        for event in events:
            await exchange.publish(event.to_message(), event.routing_key)


async def delete_archive(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(topology.ARCHIVE_QUEUE)


def an_event(type: str) -> Event:
    return Event(id=f"evt-{uuid.uuid4().hex[:8]}", source="/tests", type=type, data=b"{}")


def test_a_new_unrouted_event_is_listed_after_the_archive_is_deleted_and_declared_again(
    tmp_path: Path,
):
    with fresh_vhost() as amqp_url:
        env = {**hub_env(amqp_url, HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/hookhub.db"),
               "COLUMNS": "250"}  # fmt: skip
        assert hookhub(env, "topology", "declare").returncode == 0
        indexer = HubProcess(["index"], env, tmp_path / "index.log")
        try:
            before = [an_event("inventory.counted") for _ in range(3)]
            asyncio.run(publish(amqp_url, *before))
            wait_listed(env, before[-1].id, "--unrouted")

            asyncio.run(delete_archive(amqp_url))
            declared = hookhub(env, "topology", "declare")
            assert declared.returncode == 0, declared.stderr
            after = an_event("inventory.counted")  # position 0 of the new stream
            asyncio.run(publish(amqp_url, after))

            new = wait_listed(env, after.id, "--unrouted")
            old = listed(env, "--id", before[0].id)
        finally:
            indexer.stop()
            print(indexer.log)  # shown when the test fails
        assert new["position"] == 0
        # The old stream's events are still found, below every position of the new one.
        assert [e["position"] < 0 for e in old] == [True], old
        assert "index.new_archive" in indexer.log
