"""A forgotten person's events stay forgotten where the archive and the parking lots still keep
them (#24): a consumer's backfill (`hookhub consume NAME --from ...`) settles them unprocessed,
and `hookhub people forget` removes their parked copies from every parking lot, a consumer's and
an endpoint's, so that no replay brings them back. Through hub-api, the broker, `hookhub index`
and the store."""

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import httpx
import pytest
from hookhub import dlq, failures, topology

from tests.support.broker import fresh_vhost
from tests.support.net import free_port
from tests.support.processes import HubProcess, wait_http_ready
from tests.support.settings import GATEWAY_SECRET, hub_env

ENDPOINT_OWNER = topology.endpoint_owner("crm")


@dataclass
class Hub:
    api: str
    amqp_url: str
    env: dict[str, str]
    tmp: Path
    processes: list[HubProcess]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hookhub.cli", *args],
            env={**self.env, "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def order(self, order_id: str, mail: str) -> str:
        """The storefront's order.created for `mail`'s buyer; its event id."""
        data = {"order_id": order_id, "customer": {"id": f"c-{order_id}", "email": mail},
                "items": [], "amount": 4990, "currency": "BRL"}  # fmt: skip
        response = httpx.post(
            f"{self.api}/events",
            json={"type": "order.created", "data": data},
            headers={
                "content-type": "application/cloudevents+json",
                "x-hookhub-gateway-secret": GATEWAY_SECRET,
                "x-consumer-username": "storefront",
            },  # fmt: skip
            timeout=10,
        )
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def person(self, mail: str, timeout_s: float = 20) -> str:
        """The person id `hookhub people show` gives once the index has their event."""
        deadline = time.monotonic() + timeout_s
        while (shown := self.cli("people", "show", mail, "--json")).returncode != 0:
            assert time.monotonic() < deadline, shown.stdout + shown.stderr
            time.sleep(0.3)
        return json.loads(shown.stdout)["id"]

    def orders(self) -> set[str]:
        """The payments consumer's orders, as its store keeps them."""
        with sqlite3.connect(self.tmp / "hookhub.db") as db:
            return {row[0] for row in db.execute("SELECT order_id FROM orders")}


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with fresh_vhost() as amqp_url:
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/hookhub.db")
        port = free_port()
        processes = [HubProcess(["api", "--port", str(port)], env, tmp_path / "api.log")]
        try:
            wait_http_ready(f"http://127.0.0.1:{port}/readyz", process=processes[0])
            processes.append(HubProcess(["index"], env, tmp_path / "index.log"))
            yield Hub(f"http://127.0.0.1:{port}", amqp_url, env, tmp_path, processes)
        finally:
            for process in processes:
                process.stop()


def two_buyers(hub: Hub) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    """Ana's and Bob's orders: (e-mail, order id, event id) each, both indexed."""
    buyers = []
    for name in ("ana", "bob"):
        uid = uuid.uuid4().hex[:8]
        mail, order_id = f"{name}-{uid}@example.com", f"ord-{name}-{uid}"
        buyers.append((mail, order_id, hub.order(order_id, mail)))
    for mail, _, _ in buyers:
        hub.person(mail)
    return buyers[0], buyers[1]


async def delete_queue(amqp_url: str, name: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection, connection.channel() as channel:
        await channel.queue_delete(name)


def test_a_backfill_does_not_process_a_forgotten_persons_events_and_processes_the_others(hub):
    # The payments consumer comes later: only the archive keeps what it binds.
    asyncio.run(delete_queue(hub.amqp_url, topology.work_queue("payments")))
    time.sleep(1.1)  # the archive's timestamps are whole seconds
    since = datetime.now(UTC)
    time.sleep(1.1)
    (ana_mail, ana_order, ana_event), (_, bob_order, _) = two_buyers(hub)

    forgot = hub.cli("people", "forget", hub.person(ana_mail), "--yes")
    assert forgot.returncode == 0, forgot.stderr
    probe = free_port()
    args = ["consume", "payments", "--probe-port", str(probe), "--from", since.isoformat()]
    consumer = HubProcess(args, hub.env, hub.tmp / "payments.log")
    hub.processes.append(consumer)
    # Ready means the backfill reached the seam, every event before it settled.
    wait_http_ready(f"http://127.0.0.1:{probe}/readyz", timeout_s=60, process=consumer)

    orders = hub.orders()
    assert bob_order in orders
    assert ana_order not in orders
    skipped = [line for line in consumer.log.splitlines() if "backfill.forgotten_skipped" in line]
    assert len(skipped) == 1 and ana_event in skipped[0], consumer.log
    assert ana_mail not in consumer.log
    done = next(line for line in consumer.log.splitlines() if '"backfill.done"' in line)
    assert json.loads(done)["forgotten"] == 1


async def park(amqp_url: str) -> list[str]:
    """Park what waits in the payments work queue as the consumer parks an event that failed
    for good (`failures.failed_copy` to its parking lot), and a copy of each in an endpoint's
    parking lot; the ids parked."""
    connection = await aio_pika.connect(amqp_url)
    parked = []
    async with connection, connection.channel(publisher_confirms=True) as channel:
        lot = topology.dead_letter_queue(ENDPOINT_OWNER)
        await channel.declare_queue(lot, durable=True, arguments={"x-queue-type": "quorum"})
        work = await channel.declare_queue(topology.work_queue("payments"), passive=True)
        while (message := await work.get(no_ack=False, fail=False)) is not None:
            for owner in ("payments", ENDPOINT_OWNER):
                copy = failures.failed_copy(message, consumer=owner, attempts=5, reason="boom")
                await channel.default_exchange.publish(copy, topology.dead_letter_queue(owner))
            await message.ack()
            parked.append(message.message_id or "")
    return parked


async def parked_ids(amqp_url: str, owner: str) -> set[str]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        return {p.id for p in await dlq.list_parked(connection, owner)}


def test_forget_removes_the_persons_parked_copies_from_every_parking_lot(hub):
    (ana_mail, _, ana_event), (_, _, bob_event) = two_buyers(hub)
    assert set(asyncio.run(park(hub.amqp_url))) == {ana_event, bob_event}

    forgot = hub.cli("people", "forget", hub.person(ana_mail), "--yes")

    assert forgot.returncode == 0, forgot.stderr
    said = " ".join(forgot.stdout.split())
    assert "removed 2 parked copies (1 from endpoint.crm, 1 from payments)" in said, said
    for owner in ("payments", ENDPOINT_OWNER):
        assert asyncio.run(parked_ids(hub.amqp_url, owner)) == {bob_event}
    replayed = hub.cli("dlq", "replay", "payments", "--id", ana_event)
    assert asyncio.run(parked_ids(hub.amqp_url, "payments")) == {bob_event}, replayed.stdout
