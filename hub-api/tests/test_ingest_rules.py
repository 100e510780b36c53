"""The ingest rules in memory: the event a request becomes, or the status and detail it is refused
with. No server and no broker; test_api_*.py check the same answers over HTTP."""

import base64
import json

import pytest
from hookhub.events import CATALOGUE, JSON, Event
from hookhub.providers import PROVIDERS
from hookhub.settings import Settings
from hub_api.ingest import (
    Rejected,
    check_internal_event,
    check_webhook,
    internal_event,
    may_publish,
    webhook_event,
)
from provider_webhooks import webhook

from conftest import PROVIDER_SECRETS
from tests.support.signing import Signed, signed_request

SETTINGS = Settings(provider_secrets=PROVIDER_SECRETS)
CLOUDEVENTS = {"content-type": "application/cloudevents+json"}


def ingest_webhook(provider: str, signed: Signed, settings: Settings = SETTINGS) -> Event:
    enabled = check_webhook(provider, signed.headers, settings)
    return webhook_event(
        enabled, signed.headers, signed.query, signed.body, settings.timestamp_tolerance_s
    )


def ingest_event(
    cloud_event: dict, caller: str | None = "jenkins", headers: dict[str, str] | None = None
) -> Event:
    body = json.dumps(cloud_event).encode()
    all_headers = {**CLOUDEVENTS, **(headers or {})}
    check_internal_event(all_headers)
    return internal_event(body, all_headers, caller)


def rejection(ingest, *args, **kwargs) -> tuple[int, str]:
    with pytest.raises(Rejected) as refused:
        ingest(*args, **kwargs)
    return refused.value.status, refused.value.detail


def test_a_signed_stripe_webhook_becomes_a_stripe_event_with_the_body_byte_for_byte():
    hook = webhook("stripe")

    event = ingest_webhook("stripe", signed_request("stripe", hook.body))

    assert (event.type, event.id, event.source) == (
        "stripe.payment_intent.succeeded",
        hook.event_id,
        "/webhooks/stripe",
    )
    assert event.data == hook.body
    assert event.content_type == JSON


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_providers_signed_webhook_becomes_its_provider_namespaced_event(provider):
    hook = webhook(provider)

    event = ingest_webhook(provider, signed_request(provider, hook.body, **hook.overrides))

    assert (event.type, event.id, event.data) == (hook.event_type, hook.event_id, hook.body)


def test_a_webhook_keeps_the_given_correlation_id_and_traceparent():
    headers, query, body = signed_request("hmac", b"{}")
    headers |= {"x-correlation-id": "corr-1", "traceparent": "00-abc-def-01"}

    event = ingest_webhook("hmac", Signed(headers, query, body))

    assert (event.correlation_id, event.traceparent) == ("corr-1", "00-abc-def-01")


def test_a_webhook_without_an_id_is_identified_by_the_hash_of_its_body():
    body = b'{"webhook_event_type": "order_approved"}'

    first = ingest_webhook("kiwify", signed_request("kiwify", body))
    again = ingest_webhook("kiwify", signed_request("kiwify", body))

    assert first.id == again.id


def test_an_unknown_provider_is_404_naming_the_known_ones():
    status, detail = rejection(ingest_webhook, "paypal", signed_request("stripe", b"{}"))

    assert status == 404
    assert detail == f"unknown provider 'paypal'; known: {', '.join(PROVIDERS)}"


def test_a_provider_without_a_secret_is_404_naming_its_variable():
    without_kiwify = Settings(
        provider_secrets={k: v for k, v in PROVIDER_SECRETS.items() if k != "kiwify"}
    )
    hook = webhook("kiwify")

    status, detail = rejection(
        ingest_webhook, "kiwify", signed_request("kiwify", hook.body), without_kiwify
    )

    assert (status, detail) == (
        404,
        "provider 'kiwify' is not enabled here: set HOOKHUB_SECRET_KIWIFY",
    )


def test_a_webhook_not_sent_as_json_is_415():
    headers, query, body = signed_request("stripe", webhook("stripe").body)
    headers["content-type"] = "application/x-www-form-urlencoded"

    status, detail = rejection(ingest_webhook, "stripe", Signed(headers, query, body))

    assert (status, detail) == (415, "stripe webhooks must be sent as application/json")


def test_a_webhook_signed_with_the_wrong_secret_is_401():
    signed = signed_request("stripe", webhook("stripe").body, secret="not-the-secret")

    status, detail = rejection(ingest_webhook, "stripe", signed)

    assert status == 401
    assert detail.startswith("signature rejected:")


def test_a_signed_webhook_that_is_not_json_is_400():
    signed = signed_request("stripe", b"id=evt_1&type=charge.succeeded")

    assert rejection(ingest_webhook, "stripe", signed) == (400, "body is not valid JSON")


def test_a_signed_webhook_without_an_event_type_is_422_naming_where_it_looked():
    signed = signed_request("stripe", b'{"id": "evt_no_type"}')

    assert rejection(ingest_webhook, "stripe", signed) == (422, "no event type found at json:type")


def test_an_event_id_longer_than_amqp_allows_is_422():
    signed = signed_request("hmac", b"{}", event_id="e" * 256)

    status, detail = rejection(ingest_webhook, "hmac", signed)

    assert (status, detail) == (422, "event id is longer than the 255 bytes AMQP allows")


def test_an_event_id_with_a_lone_surrogate_is_422():
    body = b'{"webhook_event_id": "\\ud800", "webhook_event_type": "order_approved"}'

    status, detail = rejection(ingest_webhook, "kiwify", signed_request("kiwify", body))

    assert (status, detail) == (422, "event id is not valid Unicode")


def test_an_internal_event_gets_its_caller_as_source_and_its_data_as_json():
    event = ingest_event(
        {"type": "ci.build", "id": "b1", "source": "/forged", "data": {"ok": True}},
        caller="jenkins",
    )

    assert (event.type, event.id, event.source) == ("ci.build", "b1", "/events/jenkins")
    assert (event.data, event.content_type) == (b'{"ok":true}', JSON)


def test_an_internal_event_without_a_caller_comes_from_anonymous():
    assert ingest_event({"type": "ci.build"}, caller=None).source == "/events/anonymous"


@pytest.mark.parametrize("event_type", ["payment.approved", "payment.captured", "stripe.x"])
def test_a_type_reserved_for_hookhub_is_403_naming_it(event_type):
    status, detail = rejection(ingest_event, {"type": event_type, "id": "e1"})

    assert (status, detail) == (403, f"type '{event_type}' is reserved for Hookhub's own events")


def test_every_type_a_consumer_emits_is_refused_and_internal_ones_are_allowed():
    for event_type, (emitter, _) in CATALOGUE.items():
        assert may_publish(event_type) == (emitter == "internal"), event_type
    assert not may_publish("payment.captured")  # the namespace, not just the listed types
    assert may_publish("ci.pipeline.finished")


def test_no_type_in_a_providers_namespace_may_be_published():
    assert [p for p in PROVIDERS if may_publish(f"{p}.anything")] == []


def test_an_internal_event_not_sent_as_cloudevents_json_is_415():
    status, detail = rejection(check_internal_event, {"content-type": "text/plain"})

    assert (status, detail) == (415, "events must be sent as application/cloudevents+json")


def test_an_internal_event_without_a_type_is_422():
    status, detail = rejection(ingest_event, {"id": "e1", "data": {}})

    assert (status, detail) == (422, "not a valid CloudEvent: type: Field required")


def test_data_base64_is_published_decoded_as_bytes_of_no_known_type():
    raw = bytes(range(256))

    event = ingest_event({"type": "ci.blob", "data_base64": base64.b64encode(raw).decode()})

    assert (event.data, event.content_type) == (raw, "application/octet-stream")


def test_data_base64_keeps_the_content_type_it_was_sent_with():
    cloud_event = {
        "type": "ci.report",
        "datacontenttype": "text/html",
        "data_base64": base64.b64encode(b"<p>ok</p>").decode(),
    }

    event = ingest_event(cloud_event)

    assert (event.data, event.content_type) == (b"<p>ok</p>", "text/html")


def test_data_base64_that_is_not_base64_is_422():
    status, detail = rejection(ingest_event, {"type": "ci.blob", "data_base64": "not base64!"})

    assert (status, detail) == (422, "data_base64 is not valid base64")


def test_data_and_data_base64_together_are_422():
    cloud_event = {"type": "ci.blob", "data": "x", "data_base64": "eA=="}

    assert rejection(ingest_event, cloud_event) == (422, "send data or data_base64, not both")


def test_a_correlation_id_longer_than_amqp_allows_is_422():
    too_long = {"x-correlation-id": "c" * 256}

    status, detail = rejection(ingest_event, {"type": "ci.build"}, headers=too_long)

    assert (status, detail) == (422, "correlation id is longer than the 255 bytes AMQP allows")


def test_an_order_that_breaks_its_contract_is_422_naming_the_field():
    status, detail = rejection(
        ingest_event, {"type": "order.created", "data": {"order_id": "o-1", "amount": "lots"}}
    )

    assert (status, detail) == (
        422,
        "order.created data does not match its contract: customer: Field required",
    )


def test_a_finished_order_without_an_order_id_is_422():
    status, detail = rejection(ingest_event, {"type": "production.finished", "data": {}})

    assert status == 422 and "order_id: Field required" in detail


def test_a_well_formed_order_passes_its_contract():
    order = {"order_id": "o-1", "customer": {}, "items": [], "amount": 4990, "currency": "BRL"}

    assert ingest_event({"type": "order.created", "data": order}).type == "order.created"
