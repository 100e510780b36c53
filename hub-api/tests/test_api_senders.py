"""Senders as they really send, over HTTP against the real broker: CloudEvents in binary mode from
the `cloudevents` SDK, form bodies, repeated deliveries, and the bots' handshakes, which hub-api
answers itself and never publishes."""

import asyncio
import json
import uuid
from collections.abc import Iterator
from urllib.parse import quote_plus

import pytest
from api_processes import RunningApi, running_api
from cloudevents.core.bindings import http as ce_http
from cloudevents.core.v1.event import CloudEvent
from hookhub.events import CE_PREFIX
from provider_webhooks import webhook

from tests.support.signing import SECRETS, SECRETS_ENV, signed_request


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


@pytest.fixture
async def everything(capture):
    """A queue bound with "#": whatever reaches the exchange lands here."""
    return await capture("#")


async def assert_nothing_published(queue) -> None:
    await asyncio.sleep(0.05)  # a wrongly published message would already be routed by now
    assert await queue.empty(), "a request answered without publishing reached the exchange"


def sdk_request(message: ce_http.HTTPMessage) -> dict:
    return {"url": "/events", "content": message.body, "headers": dict(message.headers)}


# CloudEvents ---------------------------------------------------------------------------------


async def test_a_binary_mode_event_from_the_sdk_is_published_with_its_header_attributes(
    api, capture
):
    queue = await capture("ci.pipeline.finished")
    data = {"type": "ci.misread", "id": "INJECTED", "data": {"result": "SUCCESS"}}
    attributes = {
        "type": "ci.pipeline.finished",
        "source": "/jenkins",
        "id": f"build-{uuid.uuid4()}",
        "datacontenttype": "application/json",
    }
    event = CloudEvent(attributes, data)
    message = ce_http.to_binary_event(event)

    response = await api.post(**sdk_request(message))

    assert response.status_code == 202, response.text
    assert response.json() == {"id": event.get_id(), "type": "ci.pipeline.finished"}
    published = await queue.get()
    assert published.body == message.body
    assert json.loads(published.body) == data
    assert (published.message_id, published.routing_key) == (event.get_id(), event.get_type())
    assert published.headers[f"{CE_PREFIX}source"] == "/events/tests"
    assert published.content_type == "application/json"
    assert await queue.empty()


async def test_a_binary_mode_body_that_looks_like_a_cloudevent_chooses_nothing(api, everything):
    body = json.dumps({"specversion": "1.0", "type": "ci.misread", "id": "INJECTED"})
    headers = {"content-type": "application/json", "ce-specversion": "1.0", "ce-source": "/x"}

    response = await api.post("/events", content=body, headers=headers)

    assert response.status_code == 422
    assert response.json()["detail"] == "not a valid CloudEvent: ce-type: Field required"
    await assert_nothing_published(everything)


async def test_a_structured_mode_event_from_the_sdk_is_published_with_its_data(api, capture):
    queue = await capture("ci.deploy.done")
    event = CloudEvent(
        {"type": "ci.deploy.done", "source": "/jenkins", "subject": "main"}, {"env": "prod"}
    )

    response = await api.post(**sdk_request(ce_http.to_structured_event(event)))

    assert response.status_code == 202, response.text
    published = await queue.get()
    assert json.loads(published.body) == {"env": "prod"}
    assert (published.message_id, published.headers[f"{CE_PREFIX}subject"]) == (
        event.get_id(),
        "main",
    )


async def test_a_batch_of_cloudevents_is_415_and_nothing_published(api, everything):
    batch = [{"specversion": "1.0", "type": "ci.a", "id": "1", "source": "/s"}]

    response = await api.post(
        "/events",
        content=json.dumps(batch),
        headers={"content-type": "application/cloudevents-batch+json"},
    )

    assert response.status_code == 415
    assert "send each event in its own request" in response.json()["detail"]
    await assert_nothing_published(everything)


# Forms ---------------------------------------------------------------------------------------


async def test_a_github_delivery_sent_as_a_form_is_published_byte_for_byte(api, capture):
    queue = await capture("github.push")
    delivery = str(uuid.uuid4())
    body = b"payload=" + quote_plus('{"ref":"refs/heads/main","note":"café"}').encode()
    headers, query, body = signed_request(
        "github", body, event_id=delivery, content_type="application/x-www-form-urlencoded"
    )

    response = await api.post("/webhooks/github", content=body, headers=headers, params=query)

    assert response.status_code == 202, response.text
    published = await queue.get()
    assert (published.body, published.message_id) == (body, delivery)
    assert published.content_type == "application/x-www-form-urlencoded"


async def test_a_repeated_github_delivery_is_accepted_again_under_the_same_id(api, capture):
    # hub-api keeps no state: a redelivery is published again with its X-GitHub-Delivery as
    # message_id, and each consumer's processed-marker drops the repeat (docs/sending-events.md,
    # "Webhooks from providers").
    hook = webhook("github")
    queue = await capture(hook.event_type)
    request = hook.request()

    first = await api.post(**request)
    again = await api.post(**request)

    assert (first.status_code, again.status_code) == (202, 202)
    assert first.json() == again.json() == {"id": hook.event_id, "type": hook.event_type}
    assert [(await queue.get()).message_id for _ in range(2)] == [hook.event_id] * 2
    assert await queue.empty()


async def test_a_twilio_message_is_answered_with_empty_twiml_and_published(api, capture):
    hook = webhook("twilio")
    queue = await capture(hook.event_type)

    response = await api.post(**hook.request())

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert response.text.endswith("<Response/>")
    published = await queue.get()
    assert (published.body, published.message_id) == (hook.body, hook.event_id)


async def test_a_twilio_message_signed_for_another_host_is_401_and_nothing_published(
    api, everything
):
    request = webhook("twilio").request()
    request["headers"]["host"] = "attacker.example.net"

    response = await api.post(**request)

    assert response.status_code == 401
    await assert_nothing_published(everything)


# Handshakes ----------------------------------------------------------------------------------


async def test_slack_url_verification_is_answered_with_the_challenge_and_not_published(
    api, everything
):
    body = json.dumps(
        {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1a", "type": "url_verification"}
    )
    headers, query, body = signed_request("slack", body)

    response = await api.post("/webhooks/slack", content=body, headers=headers, params=query)

    assert (response.status_code, response.text) == (200, "3eZbrw1a")
    await assert_nothing_published(everything)


async def test_a_stale_slack_url_verification_is_401_and_not_answered(api, everything):
    body = '{"challenge": "c", "type": "url_verification"}'
    headers, query, body = signed_request("slack", body, timestamp_s=1531420618)

    response = await api.post("/webhooks/slack", content=body, headers=headers, params=query)

    assert response.status_code == 401
    assert "c" not in response.json()
    await assert_nothing_published(everything)


async def test_discord_ping_is_answered_with_pong_and_not_published(api, everything):
    headers, query, body = signed_request("discord", '{"id":"1","type":1,"version":1}')

    response = await api.post("/webhooks/discord", content=body, headers=headers, params=query)

    assert (response.status_code, response.json()) == (200, {"type": 1})
    await assert_nothing_published(everything)


async def test_a_discord_ping_signed_by_another_key_is_401(api, everything):
    headers, query, body = signed_request("discord", '{"type":1}', secret="33" * 32)

    response = await api.post("/webhooks/discord", content=body, headers=headers, params=query)

    assert response.status_code == 401
    await assert_nothing_published(everything)


async def test_a_discord_command_is_published_and_deferred(api, capture):
    hook = webhook("discord")
    queue = await capture(hook.event_type)

    response = await api.post(**hook.request())

    assert (response.status_code, response.json()) == (200, {"type": 5})
    assert (await queue.get()).message_id == hook.event_id


async def test_meta_subscription_handshake_echoes_the_challenge_and_publishes_nothing(
    api, everything
):
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": SECRETS["whatsapp_verify_token"],
        "hub.challenge": "1158201444",
    }

    response = await api.get("/webhooks/whatsapp", params=query)

    assert (response.status_code, response.text) == (200, "1158201444")
    await assert_nothing_published(everything)


async def test_meta_subscription_handshake_with_a_wrong_token_is_403(api):
    query = {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}

    response = await api.get("/webhooks/whatsapp", params=query)

    assert response.status_code == 403
    assert response.json() == {"detail": "hub.verify_token does not match"}


async def test_a_handshake_is_not_answered_for_a_provider_without_its_secret(hub_api):
    # The session's hub-api has no secret for Meta: the challenge is not echoed.
    query = {"hub.mode": "subscribe", "hub.verify_token": "t", "hub.challenge": "1"}
    async with RunningApi(None, hub_api).client() as client:  # type: ignore[arg-type]
        response = await client.get("/webhooks/whatsapp", params=query)

    assert response.status_code == 404
    assert "HOOKHUB_SECRET_WHATSAPP" in response.json()["detail"]
