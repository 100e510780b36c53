"""What no internal caller can bend (issue 20): an order's facts are written once, deliveries are
one event's (its source and id), and a notification URL's password is shown to no one. The hub
as processes (hub-api, the three consumers, the indexer, the operator service) on the real
broker, driven over HTTP with the headers Kong sets."""

import asyncio
import base64
import json
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import standardwebhooks
from hookhub import specs
from hookhub_consumers.notifications.records import deliveries
from hookhub_consumers.payments.records import orders
from hookhub_consumers.production.records import tickets
from hookhub_consumers.store import open_store
from hookhub_eventlog.store.consumer_tables import deliveries_file

from tests.support.broker import fresh_vhost
from tests.support.net import free_port
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import HubProcess, start_consumer, wait_http_ready
from tests.support.senders import (
    create_order,
    new_order_id,
    post_event,
    post_internal_event,
    post_stripe,
    stripe_event,
)
from tests.support.settings import GATEWAY_SECRET, hub_env
from tests.support.waiting import eventually

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"facts-not-rewritten-secret").decode()
NOTIFY_PASSWORD = "pw-never-shown-4f1c"
# The default policy, and a second CI that sends the same types as jenkins.
PUBLISH_POLICY = {
    "storefront": ["order.created", "order.amended"],
    "workshop": ["production.finished"],
    "jenkins": ["ci.#", "deploy.#"],
    "buildbot": ["ci.#"],
}
OPERATOR = {
    "x-hookhub-gateway-secret": GATEWAY_SECRET,
    "x-consumer-username": "operator-readonly",
    "x-consumer-groups": "operators-readonly",
}
ANA = {"id": "c1", "email": "ana@example.com", "name": "Ana"}


@dataclass
class Hub:
    api: str
    operator: str
    store_url: str
    endpoint: NotifyEndpoint
    processes: dict[str, HubProcess]

    def caller(self, name: str) -> httpx.AsyncClient:
        headers = {"x-hookhub-gateway-secret": GATEWAY_SECRET, "x-consumer-username": name}
        return httpx.AsyncClient(base_url=self.api, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp: Path = tmp_path_factory.mktemp("facts")
    endpoint = NotifyEndpoint()
    # The receiver's URL carries a user and password, as a team's may.
    notify_url = endpoint.url.replace("http://", f"http://hookhub:{NOTIFY_PASSWORD}@")
    with fresh_vhost() as amqp_url:
        store_url = f"sqlite:///{tmp}/hookhub.db"
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=store_url,
            HOOKHUB_NOTIFY_URL=notify_url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
            HOOKHUB_PUBLISH_POLICY=json.dumps(PUBLISH_POLICY),
            HOOKHUB_RETRY_DELAYS="0.5",
        )
        api_port, operator_port = free_port(), free_port()
        processes = {"api": HubProcess(["api", "--port", str(api_port)], env, tmp / "api.log")}
        try:
            wait_http_ready(f"http://127.0.0.1:{api_port}/readyz", process=processes["api"])
            for name in specs.names():
                consumer, readyz = start_consumer(name, env, tmp)
                processes[name] = consumer
                wait_http_ready(readyz, process=consumer)
            processes["index"] = HubProcess(["index"], env, tmp / "index.log")
            processes["operator"] = HubProcess(
                ["operator", "--port", str(operator_port)],
                {**env, "HOOKHUB_OPERATOR_CSRF_KEY": "facts-tests-csrf-key-0123456789abcdef"},
                tmp / "operator.log",
            )
            operator = f"http://127.0.0.1:{operator_port}"
            wait_http_ready(f"{operator}/readyz", process=processes["operator"])
            yield Hub(f"http://127.0.0.1:{api_port}", operator, store_url, endpoint, processes)
        finally:
            for process in processes.values():
                process.stop()
            endpoint.close()


@pytest.fixture
async def store(hub: Hub):
    store = open_store(hub.store_url)
    yield store
    await store.close()


def verified(received) -> dict:
    return standardwebhooks.Webhook(NOTIFY_SECRET).verify(received.body, received.headers)


def order_data(order_id: str, amount: int, customer: dict = ANA) -> dict:
    return {
        "order_id": order_id,
        "customer": customer,
        "items": [{"sku": "mug", "quantity": 1}],
        "amount": amount,
        "currency": "BRL",
    }


async def test_a_second_order_created_with_other_details_changes_nothing_and_is_announced(
    hub, store
):
    order_id = new_order_id()
    async with hub.caller("storefront") as storefront:
        await create_order(storefront, order_id, amount=499000)  # 4,990.00 BRL
        await eventually(lambda: orders(store).get(order_id))
        mallory = {"id": "c2", "email": "mallory@example.com", "name": "M"}
        rewrite = await post_event(
            storefront, "order.created", order_data(order_id, 1, customer=mallory)
        )
        [conflict] = hub.endpoint.wait_for("order.conflict", order_id)
        await post_stripe(storefront, stripe_event(order_id, amount=1, currency="brl"))

    data = verified(conflict)["data"]
    assert data["refused"]["id"] == rewrite.json()["id"]
    assert (data["status"], data["amount"], data["currency"]) == ("pending", 499000, "BRL")
    [mismatched] = hub.endpoint.wait_for("payment.mismatched", order_id)
    assert verified(mismatched)["data"]["customer"] == ANA
    order = await orders(store).get(order_id)
    assert (order.status, order.amount, order.customer) == ("mismatched", 499000, ANA)
    await asyncio.sleep(1.5)  # room for production to act, were it told
    assert hub.endpoint.of("payment.approved", order_id) == []
    assert await tickets(store).get(order_id) is None


async def test_the_same_order_sent_again_with_a_new_id_changes_nothing_and_announces_nothing(
    hub, store
):
    order_id = new_order_id()
    async with hub.caller("storefront") as storefront:
        await create_order(storefront, order_id)
        saved = await eventually(lambda: orders(store).get(order_id))
        await create_order(storefront, order_id)  # hub-api gives it a new id

    await asyncio.sleep(1.5)  # room for payments to act on it
    assert hub.endpoint.of("order.conflict", order_id) == []
    assert (await orders(store).get(order_id)).version == saved.version


async def test_an_amendment_of_a_pending_order_applies_and_its_new_amount_settles_it(hub, store):
    order_id = new_order_id()
    async with hub.caller("storefront") as storefront:
        await create_order(storefront, order_id, amount=4990)
        await eventually(lambda: orders(store).get(order_id))
        await post_event(storefront, "order.amended", order_data(order_id, 3990))

        async def amended():
            order = await orders(store).get(order_id)
            return order.amount == 3990 and order

        order = await eventually(amended)
        assert order.status == "pending"
        await post_stripe(storefront, stripe_event(order_id, amount=3990))

    [approved] = hub.endpoint.wait_for("payment.approved", order_id)
    assert verified(approved)["data"]["amount"] == 3990
    assert await eventually(lambda: tickets(store).get(order_id))
    assert hub.endpoint.of("order.conflict", order_id) == []


async def test_an_amendment_of_a_paid_order_is_refused_and_announced(hub, store):
    order_id = new_order_id()
    async with hub.caller("storefront") as storefront:
        await create_order(storefront, order_id, amount=4990)
        await post_stripe(storefront, stripe_event(order_id, amount=4990))
        hub.endpoint.wait_for("payment.approved", order_id)
        amendment = await post_event(storefront, "order.amended", order_data(order_id, 1))

    [conflict] = hub.endpoint.wait_for("order.conflict", order_id)
    data = verified(conflict)["data"]
    assert data["refused"] == {
        "id": amendment.json()["id"],
        "source": "/events/storefront",
        "type": "order.amended",
    }
    assert data["reason"] == "the order is approved: only an unpaid order can be amended"
    order = await orders(store).get(order_id)
    assert (order.status, order.amount) == ("approved", 4990)


async def test_only_the_storefront_may_amend_an_order(hub):
    async with hub.caller("jenkins") as jenkins:
        response = await jenkins.post(
            "/events",
            json={"type": "order.amended", "data": order_data(new_order_id(), 1)},
            headers={"content-type": "application/cloudevents+json"},
        )
    assert response.status_code == 403
    assert "'jenkins' may not publish 'order.amended'" in response.json()["detail"]


def test_two_events_with_one_id_from_two_sources_are_both_delivered(hub):
    shared_id = f"build-{uuid.uuid4().hex[:8]}"
    for caller in ("jenkins", "buildbot"):
        sent = post_internal_event(hub.api, "ci.shared", shared_id, caller=caller)
        assert sent.status_code == 202, sent.text
        hub.endpoint.wait_for("ci.shared", count=1 if caller == "jenkins" else 2)

    assert [r.json["id"] for r in hub.endpoint.of("ci.shared")] == [shared_id, shared_id]


async def test_a_notification_urls_password_is_in_no_delivery_journey_or_log(hub, store):
    event_id = f"ci-{uuid.uuid4().hex[:8]}"
    assert post_internal_event(hub.api, "ci.secretive", event_id).status_code == 202
    hub.endpoint.wait_for("ci.secretive")

    async def delivered():
        attempts = await deliveries(store).attempts(event_id, "/events/jenkins")
        return [a for a in attempts if a.delivered]

    [delivery] = await eventually(delivered)
    assert delivery.url == hub.endpoint.url.replace("http://", "http://hookhub:***@")
    # The attempts are in a file of their own, beside the store's.
    attempts_file = deliveries_file(Path(hub.store_url.removeprefix("sqlite:///")))
    with sqlite3.connect(attempts_file) as db:
        rows = db.execute("SELECT * FROM deliveries").fetchall()
    assert rows and NOTIFY_PASSWORD not in repr(rows)

    async def journey() -> httpx.Response | None:
        async with httpx.AsyncClient(base_url=hub.operator, headers=OPERATOR) as operator:
            response = await operator.get(f"/api/events/{event_id}/journey")
        delivered = response.status_code == 200 and "delivered" in response.text
        return delivered and response

    response = await eventually(journey)
    assert "hookhub:***@" in response.text
    assert NOTIFY_PASSWORD not in response.text
    assert NOTIFY_PASSWORD not in hub.processes["notifications"].log
