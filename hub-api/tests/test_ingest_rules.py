"""The ingest rules in memory: the event a request becomes, or the status and detail it is refused
with. No server and no broker; test_api_*.py check the same answers over HTTP."""

import base64
import json
import urllib.parse

import pytest
from hookhub import specs
from hookhub.contracts import CONTRACTS
from hookhub.events import JSON, Event
from hookhub.providers import PROVIDERS
from hookhub.publish_policy import DEFAULT
from hookhub.settings import Settings
from hub_api.ingest import (
    NotAllowed,
    check_internal_event,
    internal_event,
    is_reserved,
    may_publish,
)
from hub_api.rejections import Rejected
from hub_api.webhooks import Answer, Webhook, check_webhook, webhook_event, webhook_handshake
from provider_webhooks import webhook

from tests.support.signing import SECRETS, Signed, signed_request

SETTINGS = Settings(provider_secrets=SECRETS)
CLOUDEVENTS = {"content-type": "application/cloudevents+json"}


def receive_webhook(
    provider: str, signed: Signed, settings: Settings = SETTINGS, target: str = ""
) -> Webhook | Answer:
    enabled = check_webhook(provider, signed.headers, settings)
    if not target and provider == "twilio":
        target = "/webhooks/twilio?" + "&".join(f"{k}={v}" for k, v in signed.query.items())
    return webhook_event(
        enabled, signed.headers, signed.query, signed.body, settings.timestamp_tolerance_s, target
    )


def ingest_webhook(provider: str, signed: Signed, settings: Settings = SETTINGS) -> Event:
    received = receive_webhook(provider, signed, settings)
    assert isinstance(received, Webhook), received
    return received.event


def ingest_event(
    cloud_event: dict,
    caller: str | None = "jenkins",
    headers: dict[str, str] | None = None,
    policy: dict[str, tuple[str, ...]] | None = None,
) -> Event:
    body = json.dumps(cloud_event).encode()
    all_headers = {**CLOUDEVENTS, **(headers or {})}
    check_internal_event(all_headers)
    return internal_event(body, all_headers, caller, policy)


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
    without_kiwify = Settings(provider_secrets={k: v for k, v in SECRETS.items() if k != "kiwify"})
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


def test_every_type_a_consumer_emits_is_reserved_and_internal_ones_are_not():
    for event_type, (emitter, _) in specs.catalogue().items():
        assert is_reserved(event_type) == (emitter != "internal"), event_type
    assert is_reserved("payment.captured")  # the namespace, not just the listed types
    assert not is_reserved("ci.pipeline.finished")


def test_every_type_in_a_providers_namespace_is_reserved():
    assert [p for p in PROVIDERS if not is_reserved(f"{p}.anything")] == []


@pytest.mark.parametrize(
    ("caller", "event_type", "allowed"),
    [
        ("storefront", "order.created", True),
        ("storefront", "order.amended", True),  # a pending order's change (payments decides)
        ("workshop", "order.amended", False),
        ("jenkins", "order.amended", False),
        ("storefront", "production.finished", False),
        ("workshop", "production.finished", True),
        ("workshop", "order.created", False),
        ("jenkins", "ci", True),
        ("jenkins", "ci.pipeline.finished", True),
        ("jenkins", "deploy.production.finished", True),
        ("jenkins", "order.created", False),
        ("jenkins", "production.finished", False),
        ("jenkins", "cinema.ticket", False),
        ("nobody", "ci.pipeline.finished", False),
        (None, "ci.pipeline.finished", False),
    ],
)
def test_the_default_policy_lets_each_caller_publish_its_own_types_only(
    caller, event_type, allowed
):
    assert may_publish(DEFAULT, caller, event_type) is allowed


def test_a_type_the_policy_refuses_is_403_naming_the_caller_the_type_and_what_it_may_publish():
    with pytest.raises(NotAllowed) as refused:
        ingest_event({"type": "order.created", "data": {}}, caller="jenkins", policy=DEFAULT)

    assert (refused.value.status, refused.value.detail, refused.value.caller) == (
        403,
        "caller 'jenkins' may not publish 'order.created' (publish policy: ci.#, deploy.#)",
        "jenkins",
    )


def test_a_reserved_type_stays_refused_where_the_policy_allows_everything():
    status, detail = rejection(
        ingest_event, {"type": "payment.approved"}, caller="ops", policy={"ops": ("#",)}
    )

    assert (status, detail) == (403, "type 'payment.approved' is reserved for Hookhub's own events")


def test_without_a_policy_any_caller_publishes_any_type_that_is_not_reserved():
    event = ingest_event({"type": "production.finished", "data": {"order_id": "o1"}}, policy=None)

    assert (event.type, event.source) == ("production.finished", "/events/jenkins")


@pytest.mark.parametrize(
    "caller",
    ["../consumers/payments", "x/../../consumers/payments", "/consumers/payments", "a|b", " ", ""],
)
def test_a_caller_name_that_is_not_a_plain_name_is_401_so_no_source_passes_for_anothers(caller):
    status, detail = rejection(ingest_event, {"type": "ci.build"}, caller=caller)

    assert (status, detail) == (
        401,
        "the authenticated caller's name is not a plain Kong consumer name",
    )


@pytest.mark.parametrize("caller", ["jenkins", "storefront", "payments", "consumers", None])
def test_no_internal_event_has_the_source_of_a_consumer_or_a_webhook(caller):
    event = ingest_event(
        {"type": "ci.build", "source": "/consumers/payments"},
        caller=caller,
        headers={"ce-source": "/consumers/payments"},
    )

    assert event.source.startswith("/events/")
    assert not event.source.startswith(("/consumers/", "/webhooks/"))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_no_webhook_has_the_source_of_a_consumer(provider):
    hook = webhook(provider)
    signed = signed_request(provider, hook.body, **hook.overrides)

    received = receive_webhook(provider, signed)

    assert isinstance(received, Webhook)
    assert received.event.source == f"/webhooks/{provider}"


@pytest.mark.parametrize("amount", [True, False, "12", "4990", 12.0, 12.5, None])
def test_an_amount_that_is_not_a_json_integer_is_422_naming_it(amount):
    order = {
        "order_id": "o-1",
        "customer": {"id": "c1"},
        "items": [],
        "amount": amount,
        "currency": "BRL",
    }

    status, detail = rejection(ingest_event, {"type": "order.created", "data": order})

    assert status == 422
    assert detail.startswith("order.created data does not match its contract: amount: ")


@pytest.mark.parametrize("order_id", [1000, True, None])
def test_an_order_id_that_is_not_a_json_string_is_422_naming_it(order_id):
    status, detail = rejection(
        ingest_event, {"type": "production.finished", "data": {"order_id": order_id}}
    )

    assert status == 422
    assert detail.startswith("production.finished data does not match its contract: order_id: ")


def test_every_contract_is_strict():
    assert [name for name, c in CONTRACTS.items() if not c.model_config.get("strict")] == []


def test_a_mercadopago_body_naming_another_payment_than_the_signed_one_is_401():
    body = json.dumps(
        {"action": "payment.updated", "id": 1, "type": "payment", "data": {"id": "999"}}
    ).encode()
    signed = signed_request("mercadopago", body, data_id="123")

    status, detail = rejection(receive_webhook, "mercadopago", signed)

    assert (status, detail) == (
        401,
        "signature rejected: the body's data.id '999' is not the data.id the signature covers "
        "('123', from the URL's query string)",
    )


def test_a_mercadopago_body_with_an_id_when_the_query_signs_none_is_401():
    body = json.dumps({"action": "payment.updated", "id": 1, "data": {"id": 999}}).encode()
    signed = signed_request("mercadopago", body, data_id="")

    status, detail = rejection(receive_webhook, "mercadopago", signed)

    assert status == 401
    assert "the body's data.id '999' is not the data.id the signature covers ('', " in detail


def test_a_mercadopago_numeric_body_id_equal_to_the_signed_one_is_accepted():
    body = json.dumps(
        {"action": "payment.updated", "id": 7, "type": "payment", "data": {"id": 1319395474}}
    ).encode()

    event = ingest_webhook("mercadopago", signed_request("mercadopago", body))

    assert (event.type, event.id) == ("mercadopago.payment.updated", "7")


def test_an_internal_event_neither_cloudevents_json_nor_binary_mode_is_415():
    status, detail = rejection(check_internal_event, {"content-type": "text/plain"})

    assert (status, detail) == (
        415,
        "events must be sent as application/cloudevents+json (structured mode), or with ce-* "
        "headers (binary mode)",
    )


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


# CloudEvents binary mode ---------------------------------------------------------------------


def binary_event(body: bytes, content_type: str = "application/json", **attributes: str) -> Event:
    headers = {"content-type": content_type, "ce-specversion": "1.0", "ce-source": "/ci"}
    headers |= {f"ce-{name}": value for name, value in attributes.items()}
    check_internal_event(headers)
    return internal_event(body, headers, "jenkins")


def test_a_binary_mode_event_takes_its_type_and_id_from_the_ce_headers_not_the_body():
    body = b'{"type": "ci.misread", "id": "INJECTED", "data": {"x": 1}}'

    event = binary_event(body, type="ci.pipeline.finished", id="build-42")

    assert (event.type, event.id, event.source) == (
        "ci.pipeline.finished",
        "build-42",
        "/events/jenkins",
    )
    assert (event.data, event.content_type) == (body, "application/json")


def test_a_binary_mode_event_keeps_any_media_type_and_its_bytes():
    event = binary_event(b"\x00\xffraw", "application/octet-stream", type="ci.blob", id="b1")

    assert (event.data, event.content_type) == (b"\x00\xffraw", "application/octet-stream")


def test_binary_mode_header_values_are_percent_decoded_as_the_binding_encodes_them():
    event = binary_event(b"{}", type="ci.build", id="b%20c", subject="job%2Fm%C3%A9")

    assert (event.id, event.subject) == ("b c", "job/mé")


def test_a_binary_mode_event_without_ce_type_is_422_naming_the_header():
    status, detail = rejection(binary_event, b"{}", id="b1")

    assert (status, detail) == (422, "not a valid CloudEvent: ce-type: Field required")


def test_a_binary_mode_event_of_a_reserved_type_is_403():
    status, _ = rejection(binary_event, b"{}", type="payment.approved", id="p1")

    assert status == 403


def test_a_binary_mode_order_is_held_to_its_contract():
    status, detail = rejection(binary_event, b'{"order_id": "o-1"}', type="order.created")

    assert status == 422 and "customer: Field required" in detail


def test_a_structured_event_is_read_from_its_body_even_with_ce_headers():
    headers = {"ce-specversion": "1.0", "ce-type": "ci.from.header"}

    event = ingest_event({"type": "ci.from.body", "id": "s1"}, headers=headers)

    assert (event.type, event.id) == ("ci.from.body", "s1")


def test_a_batch_of_cloudevents_is_415_saying_to_send_each_on_its_own():
    headers = {"content-type": "application/cloudevents-batch+json"}

    status, detail = rejection(check_internal_event, headers)

    assert status == 415 and "send each event in its own request" in detail


# Forms ---------------------------------------------------------------------------------------


def test_a_github_form_delivery_is_published_as_sent_with_its_form_content_type():
    body = b"payload=" + urllib.parse.quote_plus('{"zen":"Keep it logically awesome."}').encode()
    signed = signed_request(
        "github",
        body,
        event_type="ping",
        event_id="d-1",
        content_type="application/x-www-form-urlencoded",
    )

    event = ingest_webhook("github", signed)

    assert (event.type, event.id, event.data) == ("github.ping", "d-1", body)
    assert event.content_type == "application/x-www-form-urlencoded"


def test_a_slack_interactivity_form_takes_its_type_and_id_from_the_payload_field():
    payload = {"type": "block_actions", "trigger_id": "13345224609.738474920.8088930838d88f008e0"}
    body = b"payload=" + urllib.parse.quote_plus(json.dumps(payload)).encode()

    event = ingest_webhook("slack", signed_request("slack", body))

    assert (event.type, event.id) == ("slack.block_actions", payload["trigger_id"])


def test_a_form_to_a_provider_that_sends_only_json_is_415():
    signed = signed_request("telegram", b'{"update_id": 1}')
    signed.headers["content-type"] = "application/x-www-form-urlencoded"

    status, detail = rejection(ingest_webhook, "telegram", signed)

    assert (status, detail) == (415, "telegram webhooks must be sent as application/json")


def test_a_twilio_message_signed_over_another_url_is_401():
    hook = webhook("twilio")
    signed = signed_request("twilio", hook.body, **hook.overrides)

    status, _ = rejection(receive_webhook, "twilio", signed, target="/webhooks/twilio")

    assert status == 401


# Handshakes and replies ----------------------------------------------------------------------


def test_slack_url_verification_is_answered_with_its_challenge():
    # Slack's documented example of the handshake
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = (
        '{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"' + challenge + '",'
        '"type":"url_verification"}'
    ).encode()

    answer = receive_webhook("slack", signed_request("slack", body))

    assert answer == Answer(200, "text/plain", challenge.encode())


def test_a_forged_slack_url_verification_is_401_not_answered():
    body = b'{"challenge":"c","type":"url_verification"}'

    status, _ = rejection(receive_webhook, "slack", signed_request("slack", body, secret="x"))

    assert status == 401


def test_discord_ping_is_answered_with_pong():
    answer = receive_webhook("discord", signed_request("discord", b'{"id":"1","type":1}'))

    assert answer == Answer(200, JSON, b'{"type":1}')


@pytest.mark.parametrize(
    ("interaction", "event_type", "reply"),
    [
        (2, "discord.application_command", b'{"type":5}'),
        (3, "discord.message_component", b'{"type":6}'),
        (5, "discord.modal_submit", b'{"type":5}'),
    ],
)
def test_a_discord_interaction_is_published_and_deferred(interaction, event_type, reply):
    body = json.dumps({"id": "1234", "type": interaction, "token": "t"}).encode()

    received = receive_webhook("discord", signed_request("discord", body))

    assert isinstance(received, Webhook)
    assert (received.event.type, received.event.id) == (event_type, "1234")
    assert received.answer == Answer(200, JSON, reply)


def test_asaas_gets_a_200_with_the_accepted_event():
    hook = webhook("asaas")

    received = receive_webhook("asaas", signed_request("asaas", hook.body))

    assert isinstance(received, Webhook)
    assert received.answer is not None and received.answer.status == 200
    assert json.loads(received.answer.body) == {"id": hook.event_id, "type": hook.event_type}


def test_providers_without_a_reply_of_their_own_get_hookhubs_202():
    hook = webhook("stripe")

    assert receive_webhook("stripe", signed_request("stripe", hook.body)).answer is None


def test_meta_subscription_handshake_echoes_the_challenge_when_the_token_matches():
    query = {"hub.mode": "subscribe", "hub.verify_token": SECRETS["whatsapp_verify_token"]}

    answer = webhook_handshake(
        check_webhook("whatsapp", {}, SETTINGS, "GET"),
        query | {"hub.challenge": "1158201444"},
        SETTINGS,
    )

    assert answer == Answer(200, "text/plain", b"1158201444")


def test_meta_subscription_handshake_with_another_token_is_403():
    query = {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"}
    enabled = check_webhook("whatsapp", {}, SETTINGS, "GET")

    assert rejection(webhook_handshake, enabled, query, SETTINGS) == (
        403,
        "hub.verify_token does not match",
    )


def test_meta_subscription_handshake_without_a_configured_token_is_404_naming_the_variable():
    settings = Settings(provider_secrets={"whatsapp": SECRETS["whatsapp"]})
    query = {"hub.mode": "subscribe", "hub.verify_token": "t", "hub.challenge": "1"}
    enabled = check_webhook("whatsapp", {}, settings, "GET")

    status, detail = rejection(webhook_handshake, enabled, query, settings)

    assert status == 404 and "HOOKHUB_SECRET_WHATSAPP_VERIFY_TOKEN" in detail


def test_a_get_to_a_provider_without_a_get_handshake_is_405():
    enabled = check_webhook("stripe", {}, SETTINGS, "GET")

    status, _ = rejection(webhook_handshake, enabled, {"hub.mode": "subscribe"}, SETTINGS)

    assert status == 405


def test_a_handshake_of_a_provider_without_a_secret_is_404():
    settings = Settings(provider_secrets={})

    status, _ = rejection(check_webhook, "whatsapp", {}, settings, "GET")

    assert status == 404


# Types and ids from the table ----------------------------------------------------------------


def test_a_telegram_update_is_typed_by_its_kind_and_identified_by_update_id():
    body = b'{"update_id": 7001, "callback_query": {"id": "4382", "data": "buy"}}'

    event = ingest_webhook("telegram", signed_request("telegram", body))

    assert (event.type, event.id) == ("telegram.callback_query", "7001")


def test_a_shopify_topic_becomes_dot_separated_words():
    signed = signed_request("shopify", b"{}", event_type="orders/paid", event_id="w-1")

    assert ingest_webhook("shopify", signed).type == "shopify.orders.paid"


def test_a_whatsapp_delivery_retried_with_the_same_body_keeps_its_id():
    hook = webhook("whatsapp")

    first = ingest_webhook("whatsapp", signed_request("whatsapp", hook.body))
    again = ingest_webhook("whatsapp", signed_request("whatsapp", hook.body))

    assert first.id == again.id == hook.event_id
