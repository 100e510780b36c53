"""The event log, as an operator uses it: events accepted through hub-api are archived by the
broker, indexed, found with `hookhub events list`, followed with `journey`, replayed by query."""

import asyncio
import base64
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import aio_pika
import httpx
import pytest
from hookhub import specs, topology
from hookhub.events import EXCHANGE, Event

from tests.support.broker import fresh_vhost
from tests.support.net import free_port
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import HubProcess, start_consumer, wait_http_ready
from tests.support.senders import post_internal_event, stripe_event
from tests.support.settings import GATEWAY_SECRET, hub_env
from tests.support.signing import signed_request

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"event-log-test-secret").decode()


@dataclass
class Hub:
    api: str
    env: dict[str, str]
    endpoint: NotifyEndpoint

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hookhub.cli", *args],
            env={**self.env, "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def events(self, *args: str) -> list[dict]:
        result = self.cli("events", "list", "--json", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def indexed(self, event_id: str, timeout_s: float = 20) -> dict:
        deadline = time.monotonic() + timeout_s
        while not (found := self.events("--id", event_id)):
            assert time.monotonic() < deadline, f"{event_id} was never indexed"
            time.sleep(0.2)
        return found[0]

    def journey(self, event_id: str) -> list[tuple[str, str]]:
        result = self.cli("events", "journey", event_id, "--json")
        assert result.returncode == 0, result.stderr
        return [(line["where"], line["what"]) for line in json.loads(result.stdout)]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("event-log")
    endpoint = NotifyEndpoint()
    with fresh_vhost() as amqp_url:
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=f"sqlite:///{tmp}/hookhub.db",
            HOOKHUB_NOTIFY_URL=endpoint.url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
            HOOKHUB_RETRY_DELAYS="0.5",
        )
        port = free_port()
        processes = [HubProcess(["api", "--port", str(port)], env, tmp / "api.log")]
        try:
            wait_http_ready(f"http://127.0.0.1:{port}/readyz", process=processes[0])
            for name in specs.names():
                consumer, readyz = start_consumer(name, env, tmp)
                processes.append(consumer)
                wait_http_ready(readyz, process=consumer)
            processes.append(HubProcess(["index"], env, tmp / "index.log"))
            yield Hub(f"http://127.0.0.1:{port}", env, endpoint)
        finally:
            for process in processes:
                process.stop()
            endpoint.close()


def post_stripe(hub: Hub, order_id: str, correlation_id: str) -> str:
    body = stripe_event(order_id)
    headers, query, body = signed_request("stripe", body)
    response = httpx.post(
        f"{hub.api}/webhooks/stripe",
        content=body,
        params=query,
        headers={
            **headers,
            "x-hookhub-gateway-secret": GATEWAY_SECRET,
            "x-consumer-username": "stripe",
            "x-correlation-id": correlation_id,
        },
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def ids(found: list[dict]) -> set[str]:
    return {e["id"] for e in found}


def test_accepted_events_are_found_by_id_type_provider_correlation_and_time(hub):
    before = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    correlation = f"corr-{uuid.uuid4().hex[:8]}"
    stripe_id = post_stripe(hub, f"ord-{uuid.uuid4().hex[:8]}", correlation)
    ci_id = f"ci-{uuid.uuid4().hex[:8]}"
    assert post_internal_event(hub.api, "ci.build.finished", ci_id).status_code == 202

    found = hub.indexed(stripe_id)
    hub.indexed(ci_id)
    after = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 1))

    assert found["type"] == "stripe.payment_intent.succeeded"
    assert found["source"] == "/webhooks/stripe"
    assert found["correlation_id"] == correlation
    assert stripe_id in ids(hub.events("--type", "stripe.#"))
    assert ci_id not in ids(hub.events("--type", "stripe.#"))
    assert stripe_id in ids(hub.events("--provider", "stripe"))
    assert ids(hub.events("--correlation-id", correlation)) >= {stripe_id}
    assert {stripe_id, ci_id} <= ids(hub.events("--since", before, "--until", after))
    assert ids(hub.events("--since", after)) & {stripe_id, ci_id} == set()


def test_an_event_no_consumer_binds_is_kept_and_listed_as_unrouted(hub):
    event_id = f"inv-{uuid.uuid4().hex[:8]}"
    assert post_internal_event(hub.api, "inventory.counted", event_id).status_code == 202

    hub.indexed(event_id)

    assert event_id in ids(hub.events("--unrouted"))
    assert event_id not in ids(hub.events("--unrouted", "--type", "ci.#"))


def create_order(hub: Hub, order_id: str) -> None:
    """order.created for 49.90 BRL, what `stripe_event` pays."""
    order = {"order_id": order_id, "customer": {"id": "c1"}, "items": [], "amount": 4990}
    response = httpx.post(
        f"{hub.api}/events",
        json={"type": "order.created", "data": {**order, "currency": "BRL"}},
        headers={
            "content-type": "application/cloudevents+json",
            "x-hookhub-gateway-secret": GATEWAY_SECRET,
            "x-consumer-username": "storefront",
        },
        timeout=10,
    )
    assert response.status_code == 202, response.text


def test_a_payments_journey_shows_who_processed_it_and_what_it_caused(hub):
    order_id = f"ord-{uuid.uuid4().hex[:8]}"
    create_order(hub, order_id)
    stripe_id = post_stripe(hub, order_id, f"corr-{order_id}")
    hub.indexed(stripe_id)
    hub.endpoint.wait_for("payment.approved", order_id)

    deadline = time.monotonic() + 20
    while ("/consumers/payments", "caused") not in (journey := hub.journey(stripe_id)):
        assert time.monotonic() < deadline, journey
        time.sleep(0.2)
    assert journey[0] == ("hub", "accepted")
    assert ("payments", "processed") in journey


def test_a_parked_then_replayed_events_journey_says_so_in_order(hub):
    event_id = f"ci-{uuid.uuid4().hex[:8]}"
    hub.endpoint.status_for_type["ci.journey.checked"] = 400  # refused: parked at once
    try:
        assert post_internal_event(hub.api, "ci.journey.checked", event_id).status_code == 202
        deadline = time.monotonic() + 20
        while event_id not in hub.cli("dlq", "list", "notifications").stdout:
            assert time.monotonic() < deadline, "never parked"
            time.sleep(0.2)
    finally:
        hub.endpoint.status_for_type.pop("ci.journey.checked")
    replayed = hub.cli("dlq", "replay", "notifications", "--id", event_id)
    assert replayed.returncode == 0, replayed.stderr

    deadline = time.monotonic() + 20
    while ("notifications", "replayed") not in (journey := hub.journey(event_id)):
        assert time.monotonic() < deadline, journey
        time.sleep(0.2)
    whats = [what for where, what in journey if where in ("hub", "notifications")]
    assert whats[0] == "accepted"
    assert whats.index("parked") < whats.index("replayed")
    assert "delivered" in whats and "delivery failed" in whats


def test_a_replay_by_query_skips_what_was_processed_and_reprocess_runs_it_once_more(hub):
    batch = uuid.uuid4().hex[:8]
    event_ids = [f"ci-{batch}-{n}" for n in range(3)]
    for event_id in event_ids:
        assert post_internal_event(hub.api, f"ci.replayed.b{batch}", event_id).status_code == 202
    for event_id in event_ids:
        hub.indexed(event_id)
    hub.endpoint.wait_for(f"ci.replayed.b{batch}", count=3)

    def deliveries(event_id: str) -> int:
        return sum(r.headers["webhook-id"].startswith(event_id) for r in hub.endpoint.received)

    query = ("--type", f"ci.replayed.b{batch}", "--to", "notifications", "--yes")
    dry = hub.cli("events", "replay", *query, "--dry-run")
    assert "3 event(s) selected; copies per consumer: notifications 3" in dry.stdout, dry.stdout
    again = hub.cli("events", "replay", *query)
    assert again.returncode == 0 and "replayed 3 copies of 3 event(s)" in again.stdout
    time.sleep(2)
    assert [deliveries(e) for e in event_ids] == [1, 1, 1]  # markers: already processed

    reprocessed = hub.cli("events", "replay", *query, "--reprocess")
    assert reprocessed.returncode == 0, reprocessed.stderr
    deadline = time.monotonic() + 20
    while [deliveries(e) for e in event_ids] != [2, 2, 2]:
        assert time.monotonic() < deadline, [deliveries(e) for e in event_ids]
        time.sleep(0.2)
    time.sleep(1)
    assert [deliveries(e) for e in event_ids] == [2, 2, 2]  # once more, exactly
    assert ("notifications", "reprocessed") in hub.journey(event_ids[0])


async def test_retention_drops_the_oldest_events_from_the_archive():
    archive = topology.Archive(max_age="1s", max_bytes=10**9, segment_bytes=2_000)
    with fresh_vhost() as amqp_url:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare(channel, (1.0,), 20, archive)
            exchange = await channel.get_exchange(EXCHANGE)

            async def publish(tag: str, count: int) -> None:
                for n in range(count):
                    event = Event(id=f"{tag}-{n}", source="/tests", type="ci.kept", data=b"x" * 500)
                    await exchange.publish(event.to_message(), event.routing_key)

            await publish("old", 20)
            await asyncio.sleep(2)  # older than max-age; dropped once a new segment rolls
            await publish("new", 20)
            await asyncio.sleep(1)
            await publish("newer", 20)
            first = await first_archived_id(connection)
    assert not first.startswith("old-"), first


async def first_archived_id(connection: aio_pika.abc.AbstractConnection) -> str:
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=1)
    queue = await channel.get_queue(topology.ARCHIVE_QUEUE, ensure=False)
    arrived: asyncio.Queue = asyncio.Queue()
    await queue.consume(arrived.put, arguments={"x-stream-offset": "first"})
    message = await asyncio.wait_for(arrived.get(), 10)
    await channel.close()
    return message.message_id
