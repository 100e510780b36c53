"""Sign a webhook exactly as each provider in `hookhub.providers.PROVIDERS` would send it.

Every signer takes the raw body (bytes, sent untouched) and returns `Signed(headers, query, body)`,
which unpacks as a tuple: `headers, query, body = signed_request("stripe", body)`. Overrides:
- `secret`: sign with another secret (a wrong signature); defaults to the test hub's secret
  (Discord's is the private key's seed, in hex: the hub holds the public key).
- `timestamp_s`: the signing time in Unix seconds (a stale timestamp); defaults to now.
- provider-specific ones where the provider puts the event id or type outside the body
  (`event_id`, `event_type`) or signs more than the body (`request_id`, `data_id` for Mercado Pago,
  `url` for Twilio).

`SECRETS` holds every provider's test secret, and `SECRETS_ENV` the hub settings that enable them
all (the session's hub-api in conftest enables only the first providers).
"""

import base64
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import nacl.signing
import standardwebhooks
from slack_sdk.signature import SignatureVerifier

from tests.support.settings import PROVIDER_SECRETS

JSON_HEADERS = {"content-type": "application/json"}
FORM_HEADERS = {"content-type": "application/x-www-form-urlencoded"}
DISCORD_SEED = "11" * 32  # the test application's private key; the hub holds its public key
SECRETS: dict[str, str] = {
    **PROVIDER_SECRETS,
    "asaas": "test-asaas-access-token-7Hq2xVb9",
    "pagarme": "sk_test_pagarme_secret_key",
    "shopify": "test-shopify-client-secret",
    "slack": "test-slack-signing-secret",
    "whatsapp": "test-meta-app-secret",
    "whatsapp_verify_token": "test-meta-verify-token",
    "telegram": "test-telegram-secret-token",
    "discord": nacl.signing.SigningKey(bytes.fromhex(DISCORD_SEED)).verify_key.encode().hex(),
    "twilio": "test-twilio-auth-token",
}
SECRETS_ENV = {f"HOOKHUB_SECRET_{name.upper()}": secret for name, secret in SECRETS.items()}
TWILIO_URL = "https://hooks.example.com/webhooks/twilio?apikey=kong-key-for-twilio"


class Signed(NamedTuple):
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes


def _now_s(timestamp_s: int | None) -> int:
    return int(time.time()) if timestamp_s is None else timestamp_s


def _hmac_hex(secret: str, message: bytes, digest: str = "sha256") -> str:
    return hmac.new(secret.encode(), message, digest).hexdigest()


def sign_stripe(
    body: bytes, *, secret: str = PROVIDER_SECRETS["stripe"], timestamp_s: int | None = None
) -> Signed:
    """Stripe-Signature: t=<unix>,v1=<HMAC-SHA256 hex of "<t>.<body>">."""
    ts = _now_s(timestamp_s)
    signature = _hmac_hex(secret, f"{ts}.".encode() + body)
    return Signed({**JSON_HEADERS, "stripe-signature": f"t={ts},v1={signature}"}, {}, body)


def sign_github(
    body: bytes,
    *,
    secret: str = PROVIDER_SECRETS["github"],
    event_type: str = "push",
    event_id: str | None = None,
    content_type: str = "application/json",
) -> Signed:
    """X-Hub-Signature-256: sha256=<HMAC-SHA256 hex of the body>; id and type ride in headers.
    GitHub's default content type is a form, `payload=<the JSON, URL-encoded>`."""
    headers = {
        "content-type": content_type,
        "x-hub-signature-256": "sha256=" + _hmac_hex(secret, body),
        "x-github-event": event_type,
        "x-github-delivery": event_id or str(uuid.uuid4()),
    }
    return Signed(headers, {}, body)


def sign_standardwebhooks(
    body: bytes,
    *,
    secret: str = PROVIDER_SECRETS["standardwebhooks"],
    timestamp_s: int | None = None,
    event_id: str | None = None,
) -> Signed:
    """webhook-id, webhook-timestamp and webhook-signature, signed by the library."""
    ts = _now_s(timestamp_s)
    msg_id = event_id or f"msg_{uuid.uuid4().hex}"
    signature = standardwebhooks.Webhook(secret).sign(
        msg_id, datetime.fromtimestamp(ts, tz=UTC), body.decode()
    )
    headers = {
        **JSON_HEADERS,
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature,
    }
    return Signed(headers, {}, body)


def sign_mercadopago(
    body: bytes,
    *,
    secret: str = PROVIDER_SECRETS["mercadopago"],
    timestamp_s: int | None = None,
    request_id: str | None = None,
    data_id: str | None = None,
) -> Signed:
    """x-signature: ts=<unix>,v1=<HMAC-SHA256 hex of the manifest>, the manifest being
    "id:<data.id>;request-id:<x-request-id>;ts:<ts>;".

    Mercado Pago puts `data.id` (and `type`) in the notification URL's query as well as the body;
    the data id defaults to the body's `data.id`.
    """
    ts = _now_s(timestamp_s)
    request_id = request_id or str(uuid.uuid4())
    if data_id is None:
        data_id = str((json.loads(body).get("data") or {}).get("id", ""))
    signed_id = data_id.lower() if data_id.isalnum() else data_id
    manifest = (f"id:{signed_id};" if signed_id else "") + f"request-id:{request_id};ts:{ts};"
    headers = {
        **JSON_HEADERS,
        "x-request-id": request_id,
        "x-signature": f"ts={ts},v1={_hmac_hex(secret, manifest.encode())}",
    }
    query = {"data.id": data_id, "type": "payment"} if data_id else {}
    return Signed(headers, query, body)


def sign_hotmart(body: bytes, *, secret: str = PROVIDER_SECRETS["hotmart"]) -> Signed:
    """X-Hotmart-Hottok: the shared token itself (Hotmart signs nothing over the body)."""
    return Signed({**JSON_HEADERS, "x-hotmart-hottok": secret}, {}, body)


def sign_kiwify(body: bytes, *, secret: str = PROVIDER_SECRETS["kiwify"]) -> Signed:
    """?signature=<HMAC-SHA1 hex of the body, keyed with the webhook token>."""
    return Signed(dict(JSON_HEADERS), {"signature": _hmac_hex(secret, body, "sha1")}, body)


def sign_hmac(
    body: bytes,
    *,
    secret: str = PROVIDER_SECRETS["hmac"],
    timestamp_s: int | None = None,
    event_type: str = "test.happened",
    event_id: str | None = None,
) -> Signed:
    """Hookhub's generic scheme: X-Hookhub-Signature: sha256=<HMAC-SHA256 hex of "<ts>.<body>">."""
    ts = str(_now_s(timestamp_s))
    headers = {
        **JSON_HEADERS,
        "x-hookhub-timestamp": ts,
        "x-hookhub-signature": "sha256=" + _hmac_hex(secret, ts.encode() + b"." + body),
        "x-hookhub-event-type": event_type,
        "x-hookhub-event-id": event_id or str(uuid.uuid4()),
    }
    return Signed(headers, {}, body)


def sign_asaas(body: bytes, *, secret: str = SECRETS["asaas"]) -> Signed:
    """asaas-access-token: the authentication token set on the webhook (no body signature)."""
    return Signed({**JSON_HEADERS, "asaas-access-token": secret}, {}, body)


def sign_pagarme(body: bytes, *, secret: str = SECRETS["pagarme"]) -> Signed:
    """X-Hub-Signature: sha1=<HMAC-SHA1 hex of the body, keyed with the secret key>."""
    headers = {**JSON_HEADERS, "x-hub-signature": "sha1=" + _hmac_hex(secret, body, "sha1")}
    return Signed(headers, {}, body)


def sign_shopify(
    body: bytes,
    *,
    secret: str = SECRETS["shopify"],
    event_type: str = "orders/create",
    event_id: str | None = None,
) -> Signed:
    """X-Shopify-Hmac-Sha256: base64 of the HMAC-SHA256 of the body; topic and id in headers."""
    digest = hmac.new(secret.encode(), body, "sha256").digest()
    headers = {
        **JSON_HEADERS,
        "x-shopify-hmac-sha256": base64.b64encode(digest).decode(),
        "x-shopify-topic": event_type,
        "x-shopify-webhook-id": event_id or str(uuid.uuid4()),
        "x-shopify-shop-domain": "hookhub-test.myshopify.com",
    }
    return Signed(headers, {}, body)


def sign_slack(
    body: bytes, *, secret: str = SECRETS["slack"], timestamp_s: int | None = None
) -> Signed:
    """X-Slack-Signature, made by Slack's own SDK (v0 over "v0:<ts>:<body>"); a body that is a
    form (interactivity, slash commands) is sent as one."""
    ts = str(_now_s(timestamp_s))
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    content = JSON_HEADERS if body.lstrip().startswith(b"{") else FORM_HEADERS
    headers = {**content, "x-slack-request-timestamp": ts, "x-slack-signature": signature or ""}
    return Signed(headers, {}, body)


def sign_whatsapp(body: bytes, *, secret: str = SECRETS["whatsapp"]) -> Signed:
    """X-Hub-Signature-256: sha256=<HMAC-SHA256 hex of the body, keyed with the app secret>."""
    return Signed(
        {**JSON_HEADERS, "x-hub-signature-256": "sha256=" + _hmac_hex(secret, body)}, {}, body
    )


def sign_telegram(body: bytes, *, secret: str = SECRETS["telegram"]) -> Signed:
    """X-Telegram-Bot-Api-Secret-Token: the secret_token given to setWebhook."""
    return Signed({**JSON_HEADERS, "x-telegram-bot-api-secret-token": secret}, {}, body)


def sign_discord(
    body: bytes, *, secret: str = DISCORD_SEED, timestamp_s: int | None = None
) -> Signed:
    """X-Signature-Ed25519: Ed25519 of "<X-Signature-Timestamp><body>" by the app's private key."""
    ts = str(_now_s(timestamp_s))
    signed = nacl.signing.SigningKey(bytes.fromhex(secret)).sign(ts.encode() + body)
    headers = {
        **JSON_HEADERS,
        "x-signature-ed25519": signed.signature.hex(),
        "x-signature-timestamp": ts,
    }
    return Signed(headers, {}, body)


def twilio_signature(secret: str, url: str, params: list[tuple[str, str]]) -> str:
    """Twilio's documented scheme: base64 HMAC-SHA1 of the URL, then each POST parameter's name
    and value, sorted by name."""
    message = url + "".join(name + value for name, value in sorted(params))
    return base64.b64encode(hmac.new(secret.encode(), message.encode(), "sha1").digest()).decode()


def sign_twilio(
    body: bytes,
    *,
    secret: str = SECRETS["twilio"],
    url: str = TWILIO_URL,
    event_id: str | None = None,
) -> Signed:
    """X-Twilio-Signature over the URL Twilio was given (Kong's key in its query) and the form's
    parameters. The Host header is the URL's, as Kong passes it on (preserve_host)."""
    parts = urlsplit(url)
    headers = {
        **FORM_HEADERS,
        "host": parts.netloc,
        "x-twilio-signature": twilio_signature(secret, url, parse_qsl(body.decode())),
        "i-twilio-idempotency-token": event_id or str(uuid.uuid4()),
    }
    return Signed(headers, dict(parse_qsl(parts.query)), body)


SIGNERS: dict[str, Callable[..., Signed]] = {
    "stripe": sign_stripe,
    "github": sign_github,
    "standardwebhooks": sign_standardwebhooks,
    "mercadopago": sign_mercadopago,
    "hotmart": sign_hotmart,
    "kiwify": sign_kiwify,
    "hmac": sign_hmac,
    "asaas": sign_asaas,
    "pagarme": sign_pagarme,
    "shopify": sign_shopify,
    "slack": sign_slack,
    "whatsapp": sign_whatsapp,
    "telegram": sign_telegram,
    "discord": sign_discord,
    "twilio": sign_twilio,
}


def signed_request(provider: str, body: bytes | str, **overrides: Any) -> Signed:
    """The request `provider` would send with this body: `(headers, query params, body)`."""
    raw = body.encode() if isinstance(body, str) else body
    return SIGNERS[provider](raw, **overrides)
