"""Bad input gets a clear 4xx and nothing reaches the exchange: a "#"-bound queue stays empty."""

import asyncio
import base64
import json
import time
from collections.abc import Iterator

import httpx
import pytest
from api_processes import RunningApi, running_api
from hookhub.providers import PROVIDERS
from provider_webhooks import webhook

from tests.support.settings import GATEWAY_SECRET
from tests.support.signing import SECRETS_ENV, signed_request

SMALL_LIMIT_BYTES = 1024
UNCONFIGURED = "kiwify"
# Where each provider's proof of origin travels (its signature), to leave it out.
SIGNATURE_FIELD = {
    name: ("params" if where == "query" else "headers", key)
    for name, provider in PROVIDERS.items()
    for where, _, key in [provider.proof[0].partition(":")]
}
WRONG_SECRET = {provider: "not-the-secret" for provider in SIGNATURE_FIELD} | {
    "standardwebhooks": "whsec_" + base64.b64encode(b"not-the-secret").decode(),
    "discord": "33" * 32,  # another application's private key
}
TIMESTAMPED = ("stripe", "standardwebhooks", "mercadopago", "hmac", "slack", "discord")
BODY_SIGNED = (
    *("stripe", "github", "standardwebhooks", "kiwify", "hmac", "pagarme", "shopify"),
    *("slack", "whatsapp", "discord", "twilio"),
)
# What a tamperer changes after signing: the amount, or Twilio's message status.
TAMPERING = {"twilio": (b"received", b"delivered")}
STALE_S = 3600
SHORT_TOLERANCE_S = 60


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


@pytest.fixture(scope="module")
def limited_api(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """A second hub-api with a 1 KiB body limit, a 60 s timestamp tolerance and no secret for
    Kiwify."""
    with running_api(
        amqp_url,
        tmp_path_factory.mktemp("limited-api"),
        HOOKHUB_MAX_BODY_BYTES=str(SMALL_LIMIT_BYTES),
        HOOKHUB_TIMESTAMP_TOLERANCE_S=str(SHORT_TOLERANCE_S),
        **(SECRETS_ENV | {f"HOOKHUB_SECRET_{UNCONFIGURED.upper()}": ""}),
    ) as running:
        yield running


@pytest.fixture
async def limited(limited_api: RunningApi):
    async with limited_api.client() as client:
        yield client


@pytest.fixture
async def everything(capture):
    """A queue bound with "#": whatever reaches the exchange lands here."""
    return await capture("#")


async def assert_nothing_published(queue) -> None:
    await asyncio.sleep(0.05)  # a wrongly published message would already be routed by now
    assert await queue.empty(), "a rejected request reached the exchange"


def event_request(event: object, content_type: str = "application/cloudevents+json") -> dict:
    content = event if isinstance(event, str | bytes) else json.dumps(event)
    return {"url": "/events", "content": content, "headers": {"content-type": content_type}}


async def test_unknown_provider_is_404_and_nothing_published(api, everything):
    response = await api.post(
        "/webhooks/paypal", content=b"{}", headers={"content-type": "application/json"}
    )

    assert response.status_code == 404
    assert response.json()["detail"].startswith("unknown provider 'paypal'; known: stripe, github")
    await assert_nothing_published(everything)


async def test_provider_without_a_secret_is_404_naming_its_variable_and_nothing_published(
    limited, everything
):
    response = await limited.post(**webhook(UNCONFIGURED).request())

    assert response.status_code == 404
    assert response.json()["detail"] == (
        f"provider '{UNCONFIGURED}' is not enabled here: set HOOKHUB_SECRET_{UNCONFIGURED.upper()}"
    )
    await assert_nothing_published(everything)


@pytest.mark.parametrize("provider", SIGNATURE_FIELD)
async def test_missing_signature_is_401_and_nothing_published(api, everything, provider):
    request = webhook(provider).request()
    where, name = SIGNATURE_FIELD[provider]
    del request[where][name]

    response = await api.post(**request)

    assert response.status_code == 401
    assert response.json()["detail"].startswith("signature rejected:")
    await assert_nothing_published(everything)


@pytest.mark.parametrize("provider", SIGNATURE_FIELD)
async def test_signature_made_with_the_wrong_secret_is_401_and_nothing_published(
    api, everything, provider
):
    hook = webhook(provider)
    headers, query, body = signed_request(
        provider, hook.body, **hook.overrides, secret=WRONG_SECRET[provider]
    )

    response = await api.post(hook.request()["url"], content=body, headers=headers, params=query)

    assert response.status_code == 401
    assert response.json()["detail"].startswith("signature rejected:")
    await assert_nothing_published(everything)


@pytest.mark.parametrize("provider", BODY_SIGNED)
async def test_body_changed_after_signing_is_401_and_nothing_published(api, everything, provider):
    request = webhook(provider).request()
    signed_part, tampered = TAMPERING.get(provider, (b"4990.50", b"1.00"))
    assert signed_part in request["content"]
    request["content"] = request["content"].replace(signed_part, tampered)

    response = await api.post(**request)

    assert response.status_code == 401
    assert response.json()["detail"].startswith("signature rejected:")
    await assert_nothing_published(everything)


@pytest.mark.parametrize("provider", TIMESTAMPED)
async def test_stale_timestamp_is_401_and_nothing_published(api, everything, provider):
    hook = webhook(provider)
    stale_s = int(time.time()) - STALE_S
    headers, query, body = signed_request(
        provider, hook.body, **hook.overrides, timestamp_s=stale_s
    )

    response = await api.post(hook.request()["url"], content=body, headers=headers, params=query)

    assert response.status_code == 401
    detail = response.json()["detail"]
    assert detail.startswith("signature rejected:")
    assert any(word in detail.lower() for word in ("tolerance", "too old")), detail
    await assert_nothing_published(everything)


@pytest.mark.parametrize("provider", TIMESTAMPED)
async def test_the_configured_tolerance_holds_for_every_timestamped_scheme(
    api, limited, everything, provider
):
    """Two minutes old: inside the default 300 s, outside a configured 60 s."""
    hook = webhook(provider)
    headers, query, body = signed_request(
        provider, hook.body, **hook.overrides, timestamp_s=int(time.time()) - 120
    )
    url = hook.request()["url"]

    rejected = await limited.post(url, content=body, headers=headers, params=query)
    assert rejected.status_code == 401, rejected.text
    assert "tolerance" in rejected.json()["detail"]
    await assert_nothing_published(everything)

    accepted = await api.post(url, content=body, headers=headers, params=query)
    assert accepted.is_success, accepted.text


async def test_oversized_body_with_honest_content_length_is_413_and_nothing_published(
    limited, everything
):
    hook = webhook("hotmart")
    padded = hook.body.replace(b'"z":{ }', b'"z":"' + b"x" * SMALL_LIMIT_BYTES + b'"')
    headers, query, body = signed_request("hotmart", padded)

    response = await limited.post("/webhooks/hotmart", content=body, headers=headers, params=query)

    assert response.status_code == 413
    assert response.json()["detail"] == f"body is larger than {SMALL_LIMIT_BYTES} bytes"
    await assert_nothing_published(everything)


async def test_oversized_chunked_body_is_413_before_the_body_has_even_ended(
    limited_api, everything
):
    # No Content-Length, and the body never ends: only a limit enforced while reading can answer.
    headers, _, _ = signed_request("hotmart", b"{}")
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    port = httpx.URL(limited_api.url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /webhooks/hotmart HTTP/1.1\r\nhost: hub-api\r\ntransfer-encoding: chunked\r\n"
            + f"x-hookhub-gateway-secret: {GATEWAY_SECRET}\r\n{head}\r\n".encode()
        )
        chunk = b"x" * 512
        for _ in range(4):
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()

        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
        answer = await asyncio.wait_for(reader.readuntil(b"}"), timeout=5)
    finally:
        writer.close()

    assert status_line.startswith(b"HTTP/1.1 413"), status_line
    assert f"body is larger than {SMALL_LIMIT_BYTES} bytes".encode() in answer
    await assert_nothing_published(everything)


async def test_oversized_event_is_413_and_nothing_published(limited, everything):
    response = await limited.post(**event_request({"type": "ci.build", "data": "x" * 2048}))

    assert response.status_code == 413
    assert response.json()["detail"] == f"body is larger than {SMALL_LIMIT_BYTES} bytes"
    await assert_nothing_published(everything)


async def test_webhook_not_sent_as_json_is_415_and_nothing_published(api, everything):
    request = webhook("stripe").request()
    request["headers"]["content-type"] = "application/x-www-form-urlencoded"

    response = await api.post(**request)

    assert response.status_code == 415
    assert response.json()["detail"] == "stripe webhooks must be sent as application/json"
    await assert_nothing_published(everything)


async def test_event_not_sent_as_json_is_415_and_nothing_published(api, everything):
    response = await api.post(**event_request({"type": "ci.build"}, content_type="text/plain"))

    assert response.status_code == 415
    assert response.json()["detail"] == (
        "events must be sent as application/cloudevents+json (structured mode), or with ce-* "
        "headers (binary mode)"
    )
    await assert_nothing_published(everything)


async def test_signed_webhook_that_is_not_json_is_400_and_nothing_published(api, everything):
    headers, query, body = signed_request("stripe", b"id=evt_1&type=charge.succeeded")

    response = await api.post("/webhooks/stripe", content=body, headers=headers, params=query)

    assert response.status_code == 400
    assert response.json()["detail"] == "body is not valid JSON"
    await assert_nothing_published(everything)


async def test_signed_webhook_without_an_event_type_is_422_and_nothing_published(api, everything):
    headers, query, body = signed_request("stripe", b'{"id": "evt_no_type"}')

    response = await api.post("/webhooks/stripe", content=body, headers=headers, params=query)

    assert response.status_code == 422
    assert response.json()["detail"] == "no event type found at json:type"
    await assert_nothing_published(everything)


async def test_event_that_is_not_json_is_422_and_nothing_published(api, everything):
    response = await api.post(**event_request('{"type": "ci.build",'))

    assert response.status_code == 422
    assert response.json()["detail"].startswith("not a valid CloudEvent: body: Invalid JSON")
    await assert_nothing_published(everything)


async def test_event_without_a_type_is_422_and_nothing_published(api, everything):
    response = await api.post(**event_request({"id": "e1", "data": {}}))

    assert response.status_code == 422
    assert response.json()["detail"] == "not a valid CloudEvent: type: Field required"
    await assert_nothing_published(everything)


async def test_order_with_an_amount_no_store_can_hold_is_422_and_nothing_published(api, everything):
    order = {
        "order_id": "o-huge",
        "customer": {"id": "c1"},
        "items": [],
        "amount": 10**30,
        "currency": "BRL",
    }
    response = await api.post(**event_request({"type": "order.created", "data": order}))

    assert response.status_code == 422
    assert response.json()["detail"] == (
        "order.created data does not match its contract: "
        "amount: Input should be less than or equal to 9007199254740991"
    )
    await assert_nothing_published(everything)


@pytest.mark.parametrize(
    "event_type", ["order.*", "ci.#", "order created", "", "order.ready\n", "stripe.x.y\n"]
)
async def test_event_type_that_is_not_a_plain_routing_key_is_422_and_nothing_published(
    api, everything, event_type
):
    response = await api.post(**event_request({"type": event_type}))

    assert response.status_code == 422
    assert response.json()["detail"].startswith("not a valid CloudEvent: type: Value error")
    await assert_nothing_published(everything)


@pytest.mark.parametrize(
    "event_type",
    ["payment.approved", "order.ready", "production.queued", "production.cancelled", "stripe.x"],
)
async def test_reserved_event_type_is_403_and_nothing_published(api, everything, event_type):
    response = await api.post(**event_request({"type": event_type, "data": {"order_id": "o1"}}))

    assert response.status_code == 403
    assert response.json()["detail"] == f"type '{event_type}' is reserved for Hookhub's own events"
    await assert_nothing_published(everything)


@pytest.mark.parametrize("gateway_secret", [None, "not-the-gateway-secret"])
async def test_webhook_that_did_not_come_through_the_gateway_is_401_and_nothing_published(
    hub_api, everything, gateway_secret
):
    request = webhook("stripe").request()
    if gateway_secret:
        request["headers"]["x-hookhub-gateway-secret"] = gateway_secret
    async with httpx.AsyncClient(base_url=hub_api) as direct:
        response = await direct.post(**request)

    assert response.status_code == 401
    assert response.json()["detail"] == "request did not come through the gateway"
    await assert_nothing_published(everything)


async def test_event_that_did_not_come_through_the_gateway_is_401_and_nothing_published(
    hub_api, everything
):
    request = event_request({"type": "ci.build"})
    request["headers"]["x-consumer-username"] = "storefront"
    async with httpx.AsyncClient(base_url=hub_api) as direct:
        response = await direct.post(**request)

    assert response.status_code == 401
    assert response.json()["detail"] == "request did not come through the gateway"
    await assert_nothing_published(everything)


async def test_event_without_an_authenticated_caller_is_401_and_nothing_published(
    hub_api, everything
):
    headers = {"x-hookhub-gateway-secret": GATEWAY_SECRET, "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=hub_api) as gateway_without_consumer:
        response = await gateway_without_consumer.post(
            "/events", content=json.dumps({"type": "ci.build"}), headers=headers
        )

    assert response.status_code == 401
    assert response.json()["detail"] == (
        "no authenticated caller: the gateway sent no X-Consumer-Username"
    )
    await assert_nothing_published(everything)


@pytest.mark.parametrize("caller", ["../consumers/payments", "jenkins/../../consumers/payments"])
async def test_event_from_a_caller_named_like_a_path_is_401_and_nothing_published(
    hub_api, everything, caller
):
    # Its source would be /events/<caller>: no caller's name may make another party's source.
    headers = {"x-hookhub-gateway-secret": GATEWAY_SECRET, "x-consumer-username": caller}
    async with httpx.AsyncClient(base_url=hub_api, headers=headers) as oddly_named:
        response = await oddly_named.post(**event_request({"type": "ci.build"}))

    assert response.status_code == 401
    assert response.json()["detail"] == (
        "the authenticated caller's name is not a plain Kong consumer name"
    )
    await assert_nothing_published(everything)


@pytest.mark.parametrize(("amount", "given"), [(True, "true"), ("12", '"12"'), (12.0, "12.0")])
async def test_order_whose_amount_is_not_a_json_integer_is_422_naming_it_and_nothing_published(
    api, everything, amount, given
):
    order = {
        "order_id": "o-strict",
        "customer": {"id": "c1", "email": "ana@example.com", "name": "Ana"},
        "items": [{"sku": "mug"}],
        "amount": amount,
        "currency": "BRL",
    }
    response = await api.post(**event_request({"type": "order.created", "data": order}))

    assert response.status_code == 422, given
    assert response.json()["detail"].startswith(
        "order.created data does not match its contract: amount: Input should be a valid integer"
    )
    await assert_nothing_published(everything)


async def test_mercadopago_body_naming_an_unsigned_payment_is_401_and_nothing_published(
    api, everything
):
    # Signed for payment 123 (the query's data.id); the body names 999, what payments would fetch.
    body = json.dumps(
        {"action": "payment.updated", "id": 88, "type": "payment", "data": {"id": "999"}}
    ).encode()
    headers, query, body = signed_request("mercadopago", body, data_id="123")

    response = await api.post("/webhooks/mercadopago", content=body, headers=headers, params=query)

    assert response.status_code == 401
    assert response.json()["detail"] == (
        "signature rejected: the body's data.id '999' is not the data.id the signature covers "
        "('123', from the URL's query string)"
    )
    await assert_nothing_published(everything)


async def test_stripe_webhook_whose_body_is_not_utf8_is_401_and_nothing_published(api, everything):
    headers, query, body = signed_request("stripe", b'{"id": "evt_\xff\xfe", "type": "x.y"}')

    response = await api.post("/webhooks/stripe", content=body, headers=headers, params=query)

    assert response.status_code == 401
    assert response.json()["detail"].startswith("signature rejected:")
    await assert_nothing_published(everything)


def hostile_webhook(case: str) -> dict:
    """Signed (or signature-shaped) requests that once made hub-api answer 500."""
    if case == "non-ASCII Stripe-Signature":
        headers, query, body = signed_request("stripe", webhook("stripe").body)
        headers["stripe-signature"] = headers["stripe-signature"][:-1].encode() + b"\xe9"
        return {"url": "/webhooks/stripe", "content": body, "headers": headers, "params": query}
    if case == "webhook-timestamp in milliseconds":
        hook = webhook("standardwebhooks")
        headers, query, body = signed_request("standardwebhooks", hook.body)
        headers["webhook-timestamp"] = str(int(time.time() * 1000))
        return {"url": hook.request()["url"], "content": body, "headers": headers}
    if case == "event id with a lone surrogate":
        body = b'{"webhook_event_id": "\\ud800", "webhook_event_type": "order_approved"}'
    else:  # "JSON nested past the recursion limit"
        body = b"[" * 100_000
    headers, query, body = signed_request("kiwify", body)
    return {"url": "/webhooks/kiwify", "content": body, "headers": headers, "params": query}


@pytest.mark.parametrize(
    ("case", "status", "detail"),
    [
        ("non-ASCII Stripe-Signature", 401, "signature rejected: Stripe-Signature is not ASCII"),
        (
            "webhook-timestamp in milliseconds",
            401,
            "signature rejected: webhook-timestamp is not a number of seconds",
        ),
        ("event id with a lone surrogate", 422, "event id is not valid Unicode"),
        ("JSON nested past the recursion limit", 400, "body is not valid JSON"),
    ],
)
async def test_hostile_webhook_gets_a_clear_4xx_not_a_500_and_nothing_published(
    api, everything, case, status, detail
):
    response = await api.post(**hostile_webhook(case))

    assert (response.status_code, response.json()["detail"]) == (status, detail)
    await assert_nothing_published(everything)


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        ('"data": {"ratio": NaN}', "data holds a number JSON cannot represent"),
        ('"data": {"big": 1e400}', "data holds a number JSON cannot represent"),
        ('"data": {}, "data_base64": "e30="', "send data or data_base64, not both"),
        ('"data_base64": "not base64!"', "data_base64 is not valid base64"),
    ],
)
async def test_event_data_that_cannot_be_sent_faithfully_is_422_and_nothing_published(
    api, everything, data, detail
):
    response = await api.post(**event_request('{"type": "ci.build", ' + data + "}"))

    assert response.status_code == 422
    assert response.json()["detail"] == detail
    await assert_nothing_published(everything)


@pytest.mark.parametrize(
    "too_long",
    ["provider event id", "X-Correlation-ID", "internal event id", "datacontenttype"],
)
async def test_value_longer_than_an_amqp_short_string_is_422_and_nothing_published(
    api, everything, too_long
):
    # message_id, correlation_id and content_type are AMQP short strings: 255 bytes at most.
    long_text = "é" * 128  # 256 bytes
    if too_long == "provider event id":
        headers, query, body = signed_request(
            "stripe", json.dumps({"id": long_text, "type": "charge.succeeded"}).encode()
        )
        request = {"url": "/webhooks/stripe", "content": body, "headers": headers, "params": query}
    elif too_long == "X-Correlation-ID":
        request = webhook("github").request()
        request["headers"]["x-correlation-id"] = "c" * 256
    elif too_long == "internal event id":
        request = event_request({"type": "ci.build", "id": long_text})
    else:
        request = event_request(
            {"type": "ci.build", "datacontenttype": "text/" + "x" * 251, "data": "plain"}
        )

    response = await api.post(**request)

    # A header is refused before the body is read, as too large a header (431).
    assert response.status_code == (431 if too_long == "X-Correlation-ID" else 422)
    assert response.json()["detail"].endswith("is longer than the 255 bytes AMQP allows")
    await assert_nothing_published(everything)
