"""Accepted events: what the caller gets back and what lands on a bound queue."""

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import aio_pika
import pytest
from api_processes import RunningApi, running_api
from hookhub.events import CE_PREFIX, EXCHANGE
from hookhub.providers import PROVIDERS
from provider_webhooks import webhook

from tests.support.archive import archived
from tests.support.signing import SECRETS_ENV, signed_request

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
ORDER = {
    "order_id": "o1",
    "customer": {"id": "c1", "email": "ana@example.com", "name": "Ana"},
    "items": [{"sku": "mug"}],
    "amount": 4990,
    "currency": "BRL",
}
# What each provider's platform is answered once its event is confirmed, where it is not 202.
ANSWERED_200 = {name for name, p in PROVIDERS.items() if p.reply is not None}


@pytest.fixture(scope="module")
def every_provider_api(
    amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    """hub-api with every provider of the table enabled."""
    with running_api(amqp_url, tmp_path_factory.mktemp("every-provider"), **SECRETS_ENV) as running:
        yield running


@pytest.fixture
async def api(every_provider_api: RunningApi):
    async with every_provider_api.client() as client:
        yield client


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_signed_webhook_is_answered_202_with_the_provider_event_id_and_type(api, provider):
    hook = webhook(provider)

    response = await api.post(**hook.request())

    if provider in ANSWERED_200:
        assert response.status_code == 200, response.text
        assert response.headers["x-hookhub-event-id"] == hook.event_id
    else:
        assert response.status_code == 202, response.text
        assert response.json() == {"id": hook.event_id, "type": hook.event_type}


async def test_an_id_with_a_percent_sign_is_given_back_percent_encoded_and_published_as_sent(
    api, capture
):
    # Asaas is answered 200 with the event's id in a header; its id comes from the JSON body.
    event_id = f"evt_{uuid.uuid4().hex[:8]}%20:/"
    body = json.dumps({"id": event_id, "event": "PAYMENT_RECEIVED", "payment": {}}).encode()
    queue = await capture("asaas.PAYMENT_RECEIVED")
    headers, query, body = signed_request("asaas", body)

    response = await api.post("/webhooks/asaas", content=body, headers=headers, params=query)

    assert response.status_code == 200, response.text
    assert unquote(response.headers["x-hookhub-event-id"]) == event_id
    assert (await queue.get()).message_id == event_id


async def test_an_id_no_header_can_carry_is_refused_422_and_nothing_published(api, capture):
    # Accepted, it could never be delivered as a notification's webhook-id: parked for certain.
    event_id = f"evt_日本-{uuid.uuid4().hex[:8]}ç"
    body = json.dumps({"id": event_id, "event": "PAYMENT_RECEIVED", "payment": {}}).encode()
    queue = await capture("asaas.PAYMENT_RECEIVED")
    headers, query, body = signed_request("asaas", body)

    response = await api.post("/webhooks/asaas", content=body, headers=headers, params=query)

    assert response.status_code == 422, response.text
    assert "visible ASCII" in response.json()["detail"]
    assert await queue.empty()


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_signed_webhook_reaches_a_bound_queue_byte_identical_with_the_contract_properties(
    api, capture, provider
):
    hook = webhook(provider)
    queue = await capture(hook.event_type)
    sent_at = datetime.now(UTC)

    request = hook.request()

    response = await api.post(**request)

    assert response.is_success, response.text
    message = await queue.get()
    assert message.body == hook.body
    assert message.routing_key == hook.event_type
    assert message.message_id == hook.event_id
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == request["headers"]["content-type"]
    assert abs(message.timestamp - sent_at) < timedelta(seconds=5)
    headers = message.headers
    assert headers[f"{CE_PREFIX}specversion"] == "1.0"
    assert headers[f"{CE_PREFIX}id"] == hook.event_id
    assert headers[f"{CE_PREFIX}source"] == f"/webhooks/{provider}"
    assert headers[f"{CE_PREFIX}type"] == hook.event_type
    assert abs(datetime.fromisoformat(headers[f"{CE_PREFIX}time"]) - sent_at) < timedelta(seconds=5)
    assert await queue.empty()


async def test_concurrent_webhooks_are_each_confirmed_and_published_once(api, capture):
    hooks = [webhook(provider) for provider in PROVIDERS for _ in range(10)]
    queue = await capture(*{hook.event_type for hook in hooks})

    responses = await asyncio.gather(*(api.post(**hook.request()) for hook in hooks))

    assert [r.is_success for r in responses] == [True] * len(hooks)
    published = [(await queue.get()).message_id for _ in hooks]
    assert sorted(published) == sorted(hook.event_id for hook in hooks)
    assert await queue.empty()


async def test_a_given_correlation_id_is_echoed_and_set_on_the_message(api, capture):
    hook = webhook("stripe")
    queue = await capture(hook.event_type)
    request = hook.request()
    request["headers"]["x-correlation-id"] = "corr-from-the-gateway-1"

    response = await api.post(**request)

    assert response.status_code == 202, response.text
    assert response.headers["x-correlation-id"] == "corr-from-the-gateway-1"
    assert (await queue.get()).correlation_id == "corr-from-the-gateway-1"


async def test_a_missing_correlation_id_is_generated_echoed_and_set_on_the_message(api, capture):
    hook = webhook("github")
    queue = await capture(hook.event_type)

    response = await api.post(**hook.request())

    assert response.status_code == 202, response.text
    generated = response.headers["x-correlation-id"]
    assert uuid.UUID(generated)
    assert (await queue.get()).correlation_id == generated


async def test_traceparent_is_passed_through_to_the_message(api, capture):
    hook = webhook("hmac")
    queue = await capture(hook.event_type)
    request = hook.request()
    request["headers"]["traceparent"] = TRACEPARENT

    response = await api.post(**request)

    assert response.status_code == 202, response.text
    assert (await queue.get()).headers["traceparent"] == TRACEPARENT


async def test_internal_event_is_published_with_its_data_and_cloudevents_attributes(api, capture):
    queue = await capture("order.created")
    event = {
        "specversion": "1.0",
        "type": "order.created",
        "id": f"ord-{uuid.uuid4()}",
        "subject": "order/o1",
        "data": ORDER,
    }

    response = await api.post(
        "/events",
        content=json.dumps(event),
        headers={"content-type": "application/cloudevents+json"},
    )

    assert response.status_code == 202, response.text
    assert response.json() == {"id": event["id"], "type": "order.created"}
    message = await queue.get()
    assert json.loads(message.body) == ORDER
    assert message.message_id == event["id"]
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert message.headers[f"{CE_PREFIX}type"] == "order.created"
    assert message.headers[f"{CE_PREFIX}subject"] == "order/o1"


async def test_internal_event_with_binary_data_base64_is_published_decoded(api, capture):
    # CloudEvents JSON carries binary data in data_base64; SDKs use it whenever data is bytes.
    queue = await capture("ci.artifact.built")
    raw = bytes(range(256))
    event = {
        "type": "ci.artifact.built",
        "datacontenttype": "application/octet-stream",
        "data_base64": base64.b64encode(raw).decode(),
    }

    response = await api.post(
        "/events", content=json.dumps(event), headers={"content-type": "application/json"}
    )

    assert response.status_code == 202, response.text
    message = await queue.get()
    assert message.body == raw
    assert message.content_type == "application/octet-stream"


async def test_data_base64_without_a_content_type_is_not_labelled_json(api, capture):
    queue = await capture("ci.blob")
    event = {"type": "ci.blob", "data_base64": base64.b64encode(b"\x00\xff").decode()}

    response = await api.post(
        "/events", content=json.dumps(event), headers={"content-type": "application/json"}
    )

    assert response.status_code == 202, response.text
    message = await queue.get()
    assert (message.body, message.content_type) == (b"\x00\xff", "application/octet-stream")


async def test_internal_event_source_is_the_gateway_caller_not_what_the_body_claims(api, capture):
    queue = await capture("order.created")
    event = {"type": "order.created", "source": "/forged/payments", "data": ORDER}

    response = await api.post(
        "/events",
        content=json.dumps(event),
        headers={"content-type": "application/json", "x-consumer-username": "storefront"},
    )

    assert response.status_code == 202, response.text
    assert (await queue.get()).headers[f"{CE_PREFIX}source"] == "/events/storefront"


async def test_an_event_no_queue_is_bound_for_is_kept_in_the_archive(api, broker):
    event_type = f"nobody.listens.{uuid.uuid4().hex}"

    response = await api.post(
        "/events",
        content=json.dumps({"type": event_type, "data": {"n": 1}}),
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 202, response.text
    found = await archived(broker, response.json()["id"])
    assert found is not None, f"{response.json()['id']} is not in the archive"
    assert found.routing_key == event_type
    assert found.exchange == EXCHANGE
    assert json.loads(found.body) == {"n": 1}
