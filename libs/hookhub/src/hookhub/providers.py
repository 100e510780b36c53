"""The webhook providers Hookhub accepts, as one table, and the signature schemes they use.

Everything here is pure: a scheme takes the raw request and the secret and either returns or raises
`SignatureError`. hub-api, the Kong config tests and the payments consumer all read `PROVIDERS`.
"""

import hashlib
import hmac
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import standardwebhooks
import stripe


class SignatureError(Exception):
    """The request is not provably from the provider: missing, wrong or stale signature."""


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a scheme may look at: lower-cased headers, query parameters and the raw body."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


Scheme = Callable[[SignedRequest, str, int], None]


def _require(request: SignedRequest, header: str) -> str:
    value = request.headers.get(header)
    if not value:
        raise SignatureError(f"missing {header} header")
    return value


def _check_timestamp(timestamp: str, tolerance_s: int) -> None:
    try:
        seconds = float(timestamp)
    except ValueError:
        raise SignatureError("timestamp is not a number") from None
    if not math.isfinite(seconds):
        raise SignatureError("timestamp is not a number")
    if seconds > 1e12:  # some providers send milliseconds
        seconds /= 1000
    if abs(time.time() - seconds) > tolerance_s:
        raise SignatureError(f"timestamp is outside the {tolerance_s}s tolerance")


def _hmac_hex(secret: str, message: bytes, digest: str = "sha256") -> str:
    return hmac.new(secret.encode(), message, digest).hexdigest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())


def verify_stripe(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    header = _require(request, "stripe-signature")
    if not header.isascii():  # the library's compare_digest raises TypeError on anything else
        raise SignatureError("Stripe-Signature is not ASCII")
    try:
        stripe.WebhookSignature.verify_header(request.body, header, secret, tolerance_s)
    except stripe.SignatureVerificationError as exc:
        raise SignatureError(f"Stripe-Signature: {exc.user_message or exc}") from None
    except UnicodeDecodeError:  # the library decodes the body before checking it
        raise SignatureError("Stripe-Signature: the body is not UTF-8") from None


def verify_github(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # GitHub signs no timestamp; a replayed delivery keeps its X-GitHub-Delivery id, which the
    # consumers deduplicate.
    given = _require(request, "x-hub-signature-256")
    if not _same("sha256=" + _hmac_hex(secret, request.body), given):
        raise SignatureError("X-Hub-Signature-256 does not match the body")


def verify_standard_webhooks(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # The library signs; the tolerance is ours (its verify() has a fixed 5 minutes), so
    # HOOKHUB_TIMESTAMP_TOLERANCE_S holds for every provider. Svix sends svix-* names.
    msg_id, timestamp, signatures = (
        request.headers.get(name) or request.headers.get(name.replace("webhook-", "svix-"))
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (msg_id and timestamp and signatures):
        raise SignatureError("needs webhook-id, webhook-timestamp and webhook-signature headers")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 11:
        raise SignatureError("webhook-timestamp is not a number of seconds")
    _check_timestamp(timestamp, tolerance_s)
    try:
        expected = standardwebhooks.Webhook(secret).sign(
            msg_id, datetime.fromtimestamp(int(timestamp), UTC), request.body.decode()
        )
    except UnicodeDecodeError:
        raise SignatureError("webhook-signature: the body is not UTF-8") from None
    # Space-separated "<version>,<base64>" signatures, one per secret during a rotation.
    if not any(_same(expected, given) for given in signatures.split()):
        raise SignatureError("webhook-signature does not match")


def verify_mercadopago(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # x-signature: "ts=<unix>,v1=<hex>", HMAC-SHA256 over the manifest
    # "id:<data.id>;request-id:<x-request-id>;ts:<ts>;" (parts whose value is absent are left out).
    parts = dict(
        item.strip().split("=", 1)
        for item in _require(request, "x-signature").split(",")
        if "=" in item
    )
    ts, given = parts.get("ts"), parts.get("v1")
    if not ts or not given:
        raise SignatureError("x-signature needs ts and v1")
    _check_timestamp(ts, tolerance_s)
    data_id = request.query.get("data.id", "")
    if data_id.isalnum():
        data_id = data_id.lower()
    manifest = ""
    if data_id:
        manifest += f"id:{data_id};"
    if request_id := request.headers.get("x-request-id"):
        manifest += f"request-id:{request_id};"
    manifest += f"ts:{ts};"
    if not _same(_hmac_hex(secret, manifest.encode()), given):
        raise SignatureError("x-signature does not match")


def verify_hottok(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # Hotmart sends a shared token, not a signature over the body.
    if not _same(secret, _require(request, "x-hotmart-hottok")):
        raise SignatureError("X-Hotmart-Hottok does not match")


def verify_kiwify(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # Kiwify appends ?signature=<HMAC-SHA1 hex of the body, keyed with the webhook token>.
    given = request.query.get("signature")
    if not given:
        raise SignatureError("missing signature query parameter")
    if not _same(_hmac_hex(secret, request.body, "sha1"), given):
        raise SignatureError("signature does not match the body")


def verify_hmac(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # Hookhub's generic scheme for senders without one of their own:
    # X-Hookhub-Signature: sha256=<HMAC-SHA256 hex of "<X-Hookhub-Timestamp>.<body>">
    ts = _require(request, "x-hookhub-timestamp")
    given = _require(request, "x-hookhub-signature")
    _check_timestamp(ts, tolerance_s)
    if not _same("sha256=" + _hmac_hex(secret, ts.encode() + b"." + request.body), given):
        raise SignatureError("X-Hookhub-Signature does not match")


@dataclass(frozen=True, slots=True)
class Provider:
    """One webhook provider. Locators say where the event id and type are: `header:<name>` or
    `json:<dotted.path>`, alternatives separated by `|`; an id found nowhere is the body's hash."""

    name: str
    verify: Scheme
    event_id: str
    event_type: str
    # Kong: the provider can only be given a URL (no custom header), so its key rides in ?apikey=
    key_in_query: bool = False
    payment: bool = False  # the payments consumer reads this provider's events


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("stripe", verify_stripe, "json:id", "json:type", key_in_query=True, payment=True),
        Provider(
            "github",
            verify_github,
            "header:x-github-delivery",
            "header:x-github-event",
            key_in_query=True,
        ),
        Provider(
            "standardwebhooks",
            verify_standard_webhooks,
            "header:webhook-id|header:svix-id",
            "json:type",
        ),
        Provider(
            "mercadopago",
            verify_mercadopago,
            "json:id",
            "json:action|json:type",
            key_in_query=True,
            payment=True,
        ),
        Provider(
            "hotmart", verify_hottok, "json:id", "json:event", key_in_query=True, payment=True
        ),
        Provider(
            "kiwify",
            verify_kiwify,
            # Not order_id: an order's approval and its later refund share it, and the refund
            # would be dropped as a duplicate. Without an event id the body's hash is the id.
            "json:webhook_event_id",
            "json:webhook_event_type|json:order_status",
            key_in_query=True,
            payment=True,
        ),
        Provider("hmac", verify_hmac, "header:x-hookhub-event-id", "header:x-hookhub-event-type"),
    )
}


def value_at(payload: Any, path: str) -> Any:
    """The value at a dotted path in parsed JSON (`data.object.id`), None where it leads nowhere."""
    value = payload
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def locate(locator: str, headers: Mapping[str, str], payload: Any) -> str | None:
    """The first non-empty value a locator finds in the headers or the parsed JSON body."""
    for alternative in locator.split("|"):
        where, _, path = alternative.partition(":")
        value: Any = None
        if where == "header":
            value = headers.get(path)
        elif where == "json":
            value = value_at(payload, path)
        if value not in (None, "") and not isinstance(value, dict | list):
            return str(value)
    return None


def body_hash_id(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


def needs_json(provider: Provider) -> bool:
    return "json:" in provider.event_id + provider.event_type
