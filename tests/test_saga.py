"""The whole hub as processes: hub-api and the three consumers, the real broker, a SQLite store
and a local notification endpoint. Every test drives it over HTTP, as a storefront, a payment
provider, a workshop and an operator would."""

import asyncio
import base64
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
import pytest
import standardwebhooks
from hookhub import specs
from hookhub.events import EXCHANGE, Event
from hookhub.topology import work_queue
from hookhub_consumers.notifications.records import deliveries
from hookhub_consumers.payments.records import orders
from hookhub_consumers.production.records import tickets
from hookhub_consumers.store import open_store

from tests.support.broker import fresh_vhost
from tests.support.fake_mercadopago import DEFAULT_ACCESS_TOKEN, FakeMercadoPago
from tests.support.net import free_port
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import HubProcess, wait_http_ready
from tests.support.senders import create_order, new_order_id, post_event, post_stripe, stripe_event
from tests.support.settings import GATEWAY_SECRET, hub_env
from tests.support.signing import signed_request
from tests.support.waiting import eventually

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"notify-secret-for-the-tests").decode()
RETRY_DELAYS_S = (1.0, 2.0)
# The deadlines of the hub that tests them (`deadline_hub`): test-sized.
DEADLINE_S = 2.0


@dataclass
class Hub:
    tmp: Path
    env: dict[str, str]
    api_url: str
    store_url: str
    endpoint: NotifyEndpoint
    mercadopago: FakeMercadoPago
    consumers: dict[str, HubProcess] = field(default_factory=dict)
    probe_ports: dict[str, int] = field(default_factory=dict)

    def start_consumer(self, name: str) -> None:
        port = free_port()
        self.probe_ports[name] = port
        process = HubProcess(
            ["consume", name, "--probe-port", str(port)],
            self.env,
            self.tmp / f"{name}-{time.monotonic_ns()}.log",
        )
        wait_http_ready(f"http://127.0.0.1:{port}/readyz", process=process)
        self.consumers[name] = process

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hookhub.cli", *args],
            env={**self.env, "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("hub")) as hub:
        yield hub


@pytest.fixture(scope="module")
def deadline_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A hub of its own whose deadlines are test-sized: the deadlines of the other hub's orders
    (a day) would stand ahead of these in its deadline queues."""
    deadlines = {
        f"HOOKHUB_{name}_TIMEOUT_S": f"{DEADLINE_S:g}"
        for name in ("ORDER_PAYMENT", "PAYMENT_ORDER", "PRODUCTION")
    }
    with running_hub(tmp_path_factory.mktemp("deadline-hub"), **deadlines) as hub:
        yield hub


@contextmanager
def running_hub(tmp: Path, **extra_env: str) -> Iterator[Hub]:
    """hub-api and the three consumers, in a vhost of their own, with a fresh store."""
    endpoint = NotifyEndpoint()
    with fresh_vhost() as amqp_url, FakeMercadoPago() as mercadopago:
        store_url = f"sqlite:///{tmp}/hookhub.db"
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=store_url,
            HOOKHUB_NOTIFY_URL=endpoint.url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
            HOOKHUB_RETRY_DELAYS=",".join(f"{d:g}" for d in RETRY_DELAYS_S),
            HOOKHUB_NOTIFY_TIMEOUT_S="3",
            HOOKHUB_MERCADOPAGO_API_URL=mercadopago.url,
            HOOKHUB_MERCADOPAGO_ACCESS_TOKEN=DEFAULT_ACCESS_TOKEN,
            **extra_env,
        )
        port = free_port()
        api = HubProcess(["api", "--port", str(port)], env, tmp / "api.log")
        hub = Hub(tmp, env, f"http://127.0.0.1:{port}", store_url, endpoint, mercadopago)
        try:
            wait_http_ready(f"{hub.api_url}/readyz", process=api)
            for name in specs.names():
                hub.start_consumer(name)
            yield hub
        finally:
            for process in hub.consumers.values():
                process.stop()
            api.stop()
            endpoint.close()


@pytest.fixture
async def client(hub: Hub):
    async with api_client(hub) as client:
        yield client


@pytest.fixture
async def store(hub: Hub):
    store = open_store(hub.store_url)
    yield store
    await store.close()


@pytest.fixture
async def deadline_client(deadline_hub: Hub):
    async with api_client(deadline_hub) as client:
        yield client


@pytest.fixture
async def deadline_store(deadline_hub: Hub):
    store = open_store(deadline_hub.store_url)
    yield store
    await store.close()


def api_client(hub: Hub) -> httpx.AsyncClient:
    """A client of hub-api as the storefront, through the gateway as Kong would call it."""
    headers = {"x-hookhub-gateway-secret": GATEWAY_SECRET, "x-consumer-username": "storefront"}
    return httpx.AsyncClient(base_url=hub.api_url, headers=headers, timeout=10)


def verified(received) -> dict:
    """The notification's payload, after checking its Standard Webhooks signature."""
    return standardwebhooks.Webhook(NOTIFY_SECRET).verify(received.body, received.headers)


async def test_binary_event_data_reaches_the_endpoint_intact_as_data_base64(hub, client):
    raw = bytes(range(256))
    event_id = f"artifact-{uuid.uuid4().hex[:8]}"
    response = await client.post(
        "/events",
        content=json.dumps(
            {
                "type": "ci.artifact.built",
                "id": event_id,
                "data_base64": base64.b64encode(raw).decode(),
            }
        ),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert response.status_code == 202, response.text

    [delivered] = hub.endpoint.wait_for("ci.artifact.built")
    payload = verified(delivered)
    assert (payload["id"], "data" in payload) == (event_id, False)
    assert base64.b64decode(payload["data_base64"]) == raw


async def test_an_order_is_paid_produced_and_ready_with_signed_notifications(hub, client, store):
    order_id = new_order_id()
    await create_order(client, order_id)
    await post_stripe(client, stripe_event(order_id))

    ticket = await eventually(lambda: tickets(store).get(order_id))
    assert ticket.status == "queued"
    await post_event(client, "production.finished", {"order_id": order_id})

    [paid] = hub.endpoint.wait_for("payment.approved", order_id)
    [ready] = hub.endpoint.wait_for("order.ready", order_id)
    assert verified(paid)["data"] | {"customer": None} == {
        "order_id": order_id,
        "provider": "stripe",
        "payment_id": f"pi_{order_id}",
        "amount": 4990,
        "currency": "BRL",
        "customer": None,
        "version": 2,  # order.created saved version 1
        "overpaid": 0,
    }
    assert verified(ready)["data"] == {"order_id": order_id}
    order = await orders(store).get(order_id)
    assert (order.status, order.amount, order.customer["email"]) == (
        "approved",
        4990,
        "ana@example.com",
    )
    assert (await tickets(store).get(order_id)).status == "ready"


def test_notification_urls_stay_out_of_the_logs(hub):
    # A notification URL may carry credentials or a token; the HTTP client logs full URLs.
    hub.endpoint.wait_for("order.ready")
    assert hub.endpoint.url not in hub.consumers["notifications"].log


async def test_a_refund_after_the_order_is_ready_cancels_the_ticket_and_notifies(
    hub, client, store
):
    order_id = new_order_id()
    await create_order(client, order_id)
    await post_stripe(client, stripe_event(order_id))
    await eventually(lambda: tickets(store).get(order_id))
    await post_event(client, "production.finished", {"order_id": order_id})
    hub.endpoint.wait_for("order.ready", order_id)

    await post_stripe(client, stripe_event(order_id, "charge.refunded"))

    [refunded] = hub.endpoint.wait_for("payment.refunded", order_id)
    [cancelled] = hub.endpoint.wait_for("production.cancelled", order_id)
    assert verified(refunded)["data"]["order_id"] == order_id
    assert verified(cancelled)["data"] == {"order_id": order_id, "reason": "payment refunded"}
    assert (await orders(store).get(order_id)).status == "refunded"
    assert (await tickets(store).get(order_id)).status == "cancelled"


async def test_the_same_webhook_delivered_twice_makes_one_payment_and_one_notification(
    hub, client, store
):
    order_id = new_order_id()
    await create_order(client, order_id)
    webhook = stripe_event(order_id, event_id=f"evt_twice_{order_id}")
    await post_stripe(client, webhook)
    await post_stripe(client, webhook)  # the provider retried: same event id

    hub.endpoint.wait_for("payment.approved", order_id)
    await eventually(lambda: tickets(store).get(order_id))
    await asyncio.sleep(1.5)  # room for a duplicate to show up, if there were one
    assert len(hub.endpoint.of("payment.approved", order_id)) == 1
    assert len(hub.endpoint.of("production.queued", order_id)) == 0  # not a notified type
    order = await orders(store).get(order_id)
    assert order.status == "approved" and order.version == 2  # order.created + one payment


async def test_a_consumer_killed_mid_work_loses_nothing_and_duplicates_nothing(hub, client, store):
    order_ids = [new_order_id() for _ in range(150)]
    webhooks = [stripe_event(order_id) for order_id in order_ids]
    await asyncio.gather(*(create_order(client, order_id) for order_id in order_ids))

    async def all_created() -> bool:
        return all([await orders(store).get(order_id) for order_id in order_ids])

    await eventually(all_created, timeout_s=60)
    hub.consumers["payments"].process.send_signal(signal.SIGSTOP)  # hold it: work piles up
    try:
        await asyncio.gather(*(post_stripe(client, w) for w in webhooks))
    finally:
        hub.consumers["payments"].process.send_signal(signal.SIGCONT)

    async def some_paid() -> bool:
        paid = [await orders(store).get(o) for o in order_ids[:]]
        return sum(1 for o in paid if o and o.status == "approved") >= 5

    await eventually(some_paid, interval_s=0.01)
    hub.consumers["payments"].stop(signal.SIGKILL)  # mid-batch: no drain, no goodbye
    hub.start_consumer("payments")

    async def all_paid() -> bool:
        paid = [await orders(store).get(o) for o in order_ids]
        return all(o and o.status == "approved" for o in paid)

    await eventually(all_paid, timeout_s=60)
    for order_id in order_ids:
        hub.endpoint.wait_for("payment.approved", order_id, timeout_s=30)
    await asyncio.sleep(1.5)
    for order_id in order_ids:
        assert len(hub.endpoint.of("payment.approved", order_id)) == 1, order_id
        ticket = await tickets(store).get(order_id)
        assert ticket is not None and ticket.status == "queued"


async def test_a_failing_endpoint_walks_the_retry_queues_then_the_dlq_and_replay_delivers(
    hub, client
):
    event_id = f"ci-{uuid.uuid4().hex[:8]}"
    hub.endpoint.status_for_type["ci.deploy.failed"] = 500
    await post_event(client, "ci.deploy.failed", {"job": "deploy", "build": 7}, id=event_id)

    attempts = [
        r
        for r in hub.endpoint.wait_for("ci.deploy.failed", count=3, timeout_s=30)
        if r.headers["webhook-id"] == event_id
    ]
    gaps = [b.at - a.at for a, b in zip(attempts, attempts[1:], strict=False)]
    for gap, delay in zip(gaps, RETRY_DELAYS_S, strict=False):
        assert delay * 0.9 <= gap < delay + 1.5, (gaps, RETRY_DELAYS_S)

    async def parked() -> str | None:
        listing = hub.cli("dlq", "list", "notifications").stdout
        return listing if event_id in listing else None

    listing = await eventually(parked, timeout_s=15, interval_s=0.5)
    assert "gave up after 3 attempts" in listing and "answered 500" in listing
    assert len([r for r in hub.endpoint.received if r.headers["webhook-id"] == event_id]) == 3

    hub.endpoint.status_for_type.pop("ci.deploy.failed")
    replay = hub.cli("dlq", "replay", "notifications", "--id", event_id)
    assert replay.returncode == 0, replay.stderr
    assert "replayed 1 message(s)" in replay.stdout

    delivered = await eventually(
        lambda: _async(
            [r for r in hub.endpoint.received if r.headers["webhook-id"] == event_id][3:]
        ),
        timeout_s=15,
    )
    assert verified(delivered[0])["data"] == {"job": "deploy", "build": 7}
    assert event_id not in hub.cli("dlq", "list", "notifications").stdout


async def test_an_endpoint_answering_400_sends_the_event_to_the_dlq_at_once(hub, client):
    event_id = f"ci-{uuid.uuid4().hex[:8]}"
    hub.endpoint.status_for_type["ci.bad.request"] = 400
    await post_event(client, "ci.bad.request", {"job": "lint"}, id=event_id)

    async def parked() -> str | None:
        listing = hub.cli("dlq", "list", "notifications").stdout
        return listing if event_id in listing else None

    listing = await eventually(parked, timeout_s=15, interval_s=0.3)
    assert "permanent failure: notification endpoint answered 400" in listing
    assert len([r for r in hub.endpoint.received if r.headers["webhook-id"] == event_id]) == 1
    shown = hub.cli("dlq", "show", "notifications", event_id)
    assert shown.returncode == 0 and '"attempts": 1' in shown.stdout


async def test_a_malformed_order_is_refused_at_the_door_and_parked_if_published_around_it(
    hub, client, store
):
    bad_id, good_id = f"bad-{uuid.uuid4().hex[:8]}", new_order_id()
    malformed = {"order_id": "x", "amount": "lots"}
    body = {"specversion": "1.0", "type": "order.created", "id": bad_id, "data": malformed}
    refused = await client.post(
        "/events",
        content=json.dumps(body),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert refused.status_code == 422
    assert "order.created data does not match its contract" in refused.json()["detail"]
    # A publisher that goes around hub-api straight to the exchange:
    around = Event(
        id=bad_id, source="/tests", type="order.created", data=json.dumps(malformed).encode()
    )
    connection = await aio_pika.connect(hub.env["HOOKHUB_AMQP_URL"])
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE)
        await exchange.publish(around.to_message(), around.routing_key)
    await create_order(client, good_id)

    assert await eventually(lambda: orders(store).get(good_id))

    async def parked() -> str | None:
        listing = hub.cli("dlq", "list", "payments").stdout
        return listing if bad_id in listing else None

    listing = await eventually(parked, timeout_s=15, interval_s=0.3)
    assert "order.created data does not match its contract" in listing


async def _async(value):
    return value


async def test_consumers_serve_probes_and_count_what_they_did(hub, client, store):
    order_id = new_order_id()
    await create_order(client, order_id)
    await eventually(lambda: orders(store).get(order_id))
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{hub.probe_ports['payments']}"
    ) as probe:
        assert (await probe.get("/livez")).status_code == 200
        assert (await probe.get("/readyz")).json() == {"status": "ready"}
        metrics = (await probe.get("/metrics")).text
    processed = [
        line
        for line in metrics.splitlines()
        if line.startswith(
            'hookhub_consumer_messages_total{consumer="payments",outcome="processed"}'
        )
    ]
    assert processed and float(processed[0].split()[-1]) >= 1


async def test_sigterm_lets_a_consumer_finish_the_delivery_in_hand_then_exit_cleanly(
    hub, client, store
):
    event_id = f"ci-{uuid.uuid4().hex[:8]}"
    hub.endpoint.delay_s = 1.5  # the endpoint is slow: the delivery is in hand for a while
    try:
        await post_event(client, "ci.release.done", {"version": "1.2.3"}, id=event_id)
        hub.endpoint.wait_for("ci.release.done", timeout_s=10)
        exit_code = await asyncio.to_thread(hub.consumers["notifications"].stop)  # SIGTERM
    finally:
        hub.endpoint.delay_s = 0
    assert exit_code == 0
    [delivery] = await deliveries(store).attempts(event_id)
    assert delivery.delivered and delivery.status_code == 200

    hub.start_consumer("notifications")
    await asyncio.sleep(1.5)  # had the delivery not been acked, it would come again now
    assert len([r for r in hub.endpoint.received if r.headers["webhook-id"] == event_id]) == 1


async def test_a_mercado_pago_notification_is_resolved_through_its_api_into_a_payment(
    hub, client, store
):
    order_id = new_order_id()
    await create_order(client, order_id, amount=14990)
    payment_id = str(uuid.uuid4().int % 10**12)
    hub.mercadopago.add_payment(
        {
            "id": int(payment_id),
            "status": "approved",
            "status_detail": "accredited",
            "external_reference": order_id,
            "transaction_amount": 149.90,
            "currency_id": "BRL",
        }
    )
    notification = json.dumps(
        {
            "action": "payment.updated",
            "api_version": "v1",
            "data": {"id": payment_id},
            "date_created": "2026-11-24T10:00:00Z",
            "id": int(payment_id) + 1,
            "live_mode": False,
            "type": "payment",
            "user_id": "448876418",
        }
    ).encode()
    headers, query, body = signed_request("mercadopago", notification)
    response = await client.post(
        "/webhooks/mercadopago", content=body, headers=headers, params=query
    )
    assert response.status_code == 202, response.text

    [paid] = hub.endpoint.wait_for("payment.approved", order_id)
    assert verified(paid)["data"]["provider"] == "mercadopago"
    assert (verified(paid)["data"]["amount"], verified(paid)["data"]["currency"]) == (14990, "BRL")
    assert (await orders(store).get(order_id)).status == "approved"
    assert (
        f"/v1/payments/{payment_id}",
        f"Bearer {DEFAULT_ACCESS_TOKEN}",
    ) in hub.mercadopago.requests


async def test_status_shows_each_queue_with_its_depth_and_consumers(hub):
    result = hub.cli("status")
    assert result.returncode == 0, result.stderr
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:4]]
        for line in result.stdout.splitlines()
        if line.startswith("│")
    }
    for name in specs.names():
        depth, consumers = rows[f"hookhub.{name}"]
        assert depth.isdigit() and consumers == "1"
        assert f"hookhub.{name}.dlq" in rows
    assert "hookhub.unrouted" in rows


async def test_publish_puts_an_event_on_the_exchange_once_confirmed(hub):
    result = hub.cli(
        "publish", "ci.manual.check", "--data", '{"by": "operator"}', "--correlation-id", "corr-cli"
    )
    assert result.returncode == 0, result.stderr
    event_id = json.loads(result.stdout)["id"]
    [received] = [
        r for r in hub.endpoint.wait_for("ci.manual.check") if r.headers["webhook-id"] == event_id
    ]
    assert verified(received)["data"] == {"by": "operator"}
    assert received.headers["x-correlation-id"] == "corr-cli"


async def test_publish_without_a_correlation_id_gives_the_event_a_new_one(hub):
    result = hub.cli("publish", "ci.manual.check", "--data", "{}")
    assert result.returncode == 0, result.stderr
    event_id = json.loads(result.stdout)["id"]
    [received] = [
        r for r in hub.endpoint.wait_for("ci.manual.check") if r.headers["webhook-id"] == event_id
    ]
    assert uuid.UUID(received.headers["x-correlation-id"])


@pytest.mark.parametrize("command", [["status"], ["publish", "ci.manual.check"]])
def test_the_cli_says_how_to_reach_the_broker_when_it_is_not_there(hub, command):
    port = free_port()  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "hookhub.cli", *command],
        env={
            **hub.env,
            "HOOKHUB_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{port}/",
            "COLUMNS": "250",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"RabbitMQ is not reachable at amqp://guest:***@127.0.0.1:{port}/" in result.stderr
    assert "Traceback" not in result.stderr and "guest:guest" not in result.stderr


async def test_conflicting_outcomes_for_one_order_notify_only_the_changes_that_were_saved(
    hub, client, store
):
    # A decline and an approval for the same order arrive at once: whichever loses the race to
    # save must not have told anyone. Every payment notification is a saved status change.
    order_ids = [new_order_id() for _ in range(20)]
    for order_id in order_ids:
        await create_order(client, order_id)
    await asyncio.gather(
        *(
            post_stripe(client, stripe_event(order_id, type))
            for order_id in order_ids
            for type in ("payment_intent.payment_failed", "payment_intent.succeeded")
        )
    )

    async def all_approved() -> bool:
        found = [await orders(store).get(order_id) for order_id in order_ids]
        return all(order and order.status == "approved" for order in found)

    await eventually(all_approved, timeout_s=30)
    await asyncio.sleep(1.5)  # room for a stray notification, if there were one
    for order_id in order_ids:
        order = await orders(store).get(order_id)
        notified = sorted(
            (r.json["data"]["version"], r.json["type"])
            for r in hub.endpoint.received
            if r.json["type"].startswith("payment.") and r.json["data"].get("order_id") == order_id
        )
        # One notification per saved change (minus the order.created save), each with the
        # version it was saved at; they may arrive in any order, and the newest is the state.
        versions = [version for version, _ in notified]
        assert versions == list(range(2, order.version + 1)), (order_id, notified)
        assert notified[-1][1] == "payment.approved"


# Money that adds up: reconciliation, payment before order, deadlines, chargebacks


@pytest.mark.parametrize(
    ("amount", "currency", "reason"),
    [
        (1, "usd", "paid in USD, the order is in BRL"),
        (4000, "brl", "paid 4000, the order is 4990 (BRL minor units)"),
    ],
    ids=["wrong-currency", "short-amount"],
)
async def test_money_that_does_not_settle_the_order_never_reaches_production_and_notifies(
    hub, client, store, amount, currency, reason
):
    order_id = new_order_id()
    await create_order(client, order_id, amount=4990)
    await post_stripe(client, stripe_event(order_id, amount=amount, currency=currency))

    [mismatched] = hub.endpoint.wait_for("payment.mismatched", order_id)
    data = verified(mismatched)["data"]
    assert (data["amount"], data["currency"], data["order_amount"], data["order_currency"]) == (
        amount,
        currency.upper(),
        4990,
        "BRL",
    )
    assert data["reason"] == reason
    await asyncio.sleep(1.5)  # room for production to act, were it told
    assert await tickets(store).get(order_id) is None
    assert hub.endpoint.of("payment.approved", order_id) == []
    assert (await orders(store).get(order_id)).status == "mismatched"


async def test_payment_then_order_ends_as_order_then_payment_does(hub, client, store):
    paid_first, ordered_first = new_order_id(), new_order_id()
    await post_stripe(client, stripe_event(paid_first))
    held = await eventually(lambda: orders(store).get(paid_first))
    assert held.status == "held"
    await asyncio.sleep(1)  # held: nothing approved, nothing produced
    assert hub.endpoint.of("payment.approved", paid_first) == []
    assert await tickets(store).get(paid_first) is None

    await create_order(client, paid_first)
    await create_order(client, ordered_first)
    await eventually(lambda: orders(store).get(ordered_first))
    await post_stripe(client, stripe_event(ordered_first))

    notified = {}
    for order_id in (paid_first, ordered_first):
        [approved] = hub.endpoint.wait_for("payment.approved", order_id)
        notified[order_id] = verified(approved)["data"]
        assert (await eventually(lambda: tickets(store).get(order_id))).status == "queued"  # noqa: B023
    first, second = await orders(store).get(paid_first), await orders(store).get(ordered_first)
    for field_name in ("status", "amount", "currency", "paid_amount", "paid_currency", "version"):
        assert getattr(first, field_name) == getattr(second, field_name), field_name
    assert first.status == "approved"
    ids = ("order_id", "payment_id")
    assert {k: v for k, v in notified[paid_first].items() if k not in ids} == {
        k: v for k, v in notified[ordered_first].items() if k not in ids
    }


async def test_a_refund_that_overtakes_its_approval_wins_and_nothing_is_produced(
    hub, client, store
):
    order_id = new_order_id()
    await create_order(client, order_id)
    await eventually(lambda: orders(store).get(order_id))
    await post_stripe(client, stripe_event(order_id, "charge.refunded"))
    hub.endpoint.wait_for("payment.refunded", order_id)

    await post_stripe(client, stripe_event(order_id))  # the approval, arriving late
    await post_stripe(client, stripe_event(order_id, "charge.refunded"))  # and the refund again

    await asyncio.sleep(1.5)
    assert (await orders(store).get(order_id)).status == "refunded"
    assert hub.endpoint.of("payment.approved", order_id) == []
    assert len(hub.endpoint.of("payment.refunded", order_id)) == 1
    assert (await tickets(store).get(order_id)).status == "cancelled"


async def test_a_chargeback_after_the_order_is_ready_cancels_the_ticket_and_notifies(
    hub, client, store
):
    order_id = new_order_id()
    await create_order(client, order_id)
    await post_stripe(client, stripe_event(order_id))
    await eventually(lambda: tickets(store).get(order_id))
    await post_event(client, "production.finished", {"order_id": order_id})
    hub.endpoint.wait_for("order.ready", order_id)

    # A dispute names only the payment: payments finds the order by it.
    await post_stripe(client, stripe_event(order_id, "charge.dispute.created"))

    [charged_back] = hub.endpoint.wait_for("payment.charged_back", order_id)
    [cancelled] = hub.endpoint.wait_for("production.cancelled", order_id)
    assert verified(charged_back)["data"]["payment_id"] == f"pi_{order_id}"
    assert verified(cancelled)["data"] == {"order_id": order_id, "reason": "payment charged back"}
    assert (await orders(store).get(order_id)).status == "charged_back"
    assert (await tickets(store).get(order_id)).status == "cancelled"


async def test_an_unpaid_order_expires_after_its_deadline_though_payments_restarted_meanwhile(
    deadline_hub, deadline_client, deadline_store
):
    hub, order_id = deadline_hub, new_order_id()
    await create_order(deadline_client, order_id)
    created = await eventually(lambda: orders(deadline_store).get(order_id))
    assert created.status == "pending"
    set_at = time.monotonic()
    assert await asyncio.to_thread(hub.consumers["payments"].stop) == 0

    await asyncio.sleep(max(0.0, set_at + DEADLINE_S + 1 - time.monotonic()))
    # Due while no payments process runs: the deadline waits in the work queue, nowhere else.
    assert await queue_depth(hub, work_queue("payments")) == 1
    assert (await orders(deadline_store).get(order_id)).status == "pending"
    hub.start_consumer("payments")

    [expired] = hub.endpoint.wait_for("order.expired", order_id)
    assert verified(expired)["data"] | {"customer": None} == {
        "order_id": order_id,
        "amount": 4990,
        "currency": "BRL",
        "customer": None,
        "version": 2,
    }
    assert (await orders(deadline_store).get(order_id)).status == "expired"


async def test_a_paid_orders_deadline_changes_nothing(
    deadline_hub, deadline_client, deadline_store
):
    hub, order_id = deadline_hub, new_order_id()
    await create_order(deadline_client, order_id)
    await post_stripe(deadline_client, stripe_event(order_id))
    hub.endpoint.wait_for("payment.approved", order_id)

    await asyncio.sleep(DEADLINE_S + 1.5)
    assert (await orders(deadline_store).get(order_id)).status == "approved"
    assert hub.endpoint.of("order.expired", order_id) == []


async def test_a_payment_whose_order_never_comes_is_surfaced_by_an_event_and_a_metric(
    deadline_hub, deadline_client, deadline_store
):
    hub, order_id = deadline_hub, new_order_id()
    await post_stripe(deadline_client, stripe_event(order_id))

    [missing] = hub.endpoint.wait_for("payment.order_missing", order_id, timeout_s=DEADLINE_S + 15)
    data = verified(missing)["data"]
    assert (data["payment_id"], data["amount"], data["currency"]) == (f"pi_{order_id}", 4990, "BRL")
    assert (await orders(deadline_store).get(order_id)).status == "order_missing"
    assert await tickets(deadline_store).get(order_id) is None
    probe = f"http://127.0.0.1:{hub.probe_ports['payments']}/metrics"
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(probe)).text
    [count] = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("hookhub_payments_order_missing_total ")
    ]
    assert count >= 1


async def test_a_ticket_not_finished_in_time_is_flagged_and_can_still_finish(
    deadline_hub, deadline_client, deadline_store
):
    hub, order_id = deadline_hub, new_order_id()
    await create_order(deadline_client, order_id)
    await post_stripe(deadline_client, stripe_event(order_id))

    [overdue] = hub.endpoint.wait_for("production.overdue", order_id, timeout_s=DEADLINE_S + 15)
    assert verified(overdue)["data"] == {"order_id": order_id}
    assert (await tickets(deadline_store).get(order_id)).status == "overdue"
    await post_event(deadline_client, "production.finished", {"order_id": order_id})
    hub.endpoint.wait_for("order.ready", order_id)
    assert (await tickets(deadline_store).get(order_id)).status == "ready"


async def queue_depth(hub: Hub, queue: str) -> int:
    connection = await aio_pika.connect(hub.env["HOOKHUB_AMQP_URL"])
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
