"""An internal caller that knows how follow-up ids used to be made (uuid5 of the cause, with the
namespace in the source code) cannot claim the id the hub will give a follow-up: the hub as
processes, keyed with a deployment's HOOKHUB_FOLLOW_UP_KEY, still notifies `order.ready` after
`jenkins` has sent an event with the id `order.ready` would once have had (issue 20)."""

import base64
import secrets
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from hookhub import specs
from hookhub_consumers.store import open_store

from tests.support.broker import fresh_vhost
from tests.support.net import free_port
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import HubProcess, running_consumer, wait_http_ready
from tests.support.senders import create_order, new_order_id, post_event, post_stripe, stripe_event
from tests.support.settings import GATEWAY_SECRET, hub_env
from tests.support.waiting import eventually

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"claimed-ids-notify-secret").decode()
# How follow-up ids were made until issue 20, by anyone who read the source code.
PUBLIC_NAMESPACE = uuid.UUID("6f1c7f8e-3f0a-4a57-9a43-4b8d3b1f2c10")


def as_caller(url: str, caller: str) -> httpx.AsyncClient:
    headers = {"x-hookhub-gateway-secret": GATEWAY_SECRET, "x-consumer-username": caller}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=10)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, NotifyEndpoint]]:
    """hub-api and every consumer, keyed as a deployment is; (api URL, store URL, endpoint)."""
    tmp: Path = tmp_path_factory.mktemp("claimed-ids")
    endpoint = NotifyEndpoint()
    with fresh_vhost() as amqp_url:
        store_url = f"sqlite:///{tmp}/hookhub.db"
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=store_url,
            HOOKHUB_NOTIFY_URL=endpoint.url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
            HOOKHUB_FOLLOW_UP_KEY=secrets.token_hex(32),
            HOOKHUB_PUBLISH_POLICY="",  # the default: jenkins may send ci.# and deploy.#
        )
        port = free_port()
        api = HubProcess(["api", "--port", str(port)], env, tmp / "api.log")
        try:
            wait_http_ready(f"http://127.0.0.1:{port}/readyz", process=api)
            with ExitStack() as consumers:
                for name in specs.names():
                    consumers.enter_context(running_consumer(name, env, tmp))
                yield f"http://127.0.0.1:{port}", store_url, endpoint
        finally:
            api.stop()
            endpoint.close()


async def test_a_caller_cannot_claim_the_id_of_order_ready_and_silence_it(hub):
    api, store_url, endpoint = hub
    order_id = new_order_id()
    finished_id = f"finished-{order_id}"  # a workshop's ids are easy to guess
    async with as_caller(api, "storefront") as storefront:
        await create_order(storefront, order_id)
    async with as_caller(api, "stripe") as stripe:
        await post_stripe(stripe, stripe_event(order_id))
    store = open_store(store_url)
    try:
        await eventually(lambda: store.get_ticket(order_id))
    finally:
        await store.close()

    # jenkins, allowed only ci.# and deploy.#, sends first an event with the id order.ready
    # would have had: the notifications consumer delivers it under that id.
    claimed = str(uuid.uuid5(PUBLIC_NAMESPACE, f"/events/workshop|{finished_id}|order.ready"))
    async with as_caller(api, "jenkins") as jenkins:
        noise = {"specversion": "1.0", "type": "ci.noise", "id": claimed, "data": {}}
        sent = await jenkins.post(
            "/events", json=noise, headers={"content-type": "application/cloudevents+json"}
        )
        assert sent.status_code == 202, sent.text
    endpoint.wait_for("ci.noise")
    async with as_caller(api, "workshop") as workshop:
        await post_event(workshop, "production.finished", {"order_id": order_id}, id=finished_id)

    [ready] = endpoint.wait_for("order.ready", order_id)

    assert ready.json["id"] != claimed
