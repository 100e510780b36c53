"""Sign a webhook exactly as each provider in `hookhub.providers.PROVIDERS` would send it.

Every signer takes the raw body (bytes, sent untouched) and returns `Signed(headers, query, body)`,
which unpacks as a tuple: `headers, query, body = signed_request("stripe", body)`. Overrides:
- `secret`: sign with another secret (a wrong signature); defaults to the test hub's secret.
- `timestamp_s`: the signing time in Unix seconds (a stale timestamp); defaults to now.
- provider-specific ones where the provider puts the event id or type outside the body
  (`event_id`, `event_type`) or signs more than the body (`request_id`, `data_id` for Mercado Pago).
"""

import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import standardwebhooks

from conftest import PROVIDER_SECRETS

JSON_HEADERS = {"content-type": "application/json"}


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
) -> Signed:
    """X-Hub-Signature-256: sha256=<HMAC-SHA256 hex of the body>; id and type ride in headers."""
    headers = {
        **JSON_HEADERS,
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


SIGNERS: dict[str, Callable[..., Signed]] = {
    "stripe": sign_stripe,
    "github": sign_github,
    "standardwebhooks": sign_standardwebhooks,
    "mercadopago": sign_mercadopago,
    "hotmart": sign_hotmart,
    "kiwify": sign_kiwify,
    "hmac": sign_hmac,
}


def signed_request(provider: str, body: bytes | str, **overrides: Any) -> Signed:
    """The request `provider` would send with this body: `(headers, query params, body)`."""
    raw = body.encode() if isinstance(body, str) else body
    return SIGNERS[provider](raw, **overrides)
