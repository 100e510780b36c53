"""The signature schemes webhook providers sign with: one verifier each, and `VERIFIERS`, the
table from a scheme's name (`hookhub.providers.Scheme`) to its verifier.

Everything here is pure: a verifier takes the raw request, the secret and the timestamp tolerance,
and either returns or raises `SignatureError`. `hookhub.providers.PROVIDERS` says which provider
signs with which scheme. Only hub-api verifies, so only hub-api's image carries the libraries
the schemes need (stripe, PyNaCl, standardwebhooks).
"""

import base64
import hmac
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl

import nacl.exceptions
import nacl.signing
import standardwebhooks
import stripe
from hookhub.providers import Scheme


class SignatureError(Exception):
    """The request is not provably from the provider: missing, wrong or stale signature."""


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """What a scheme may look at: lower-cased headers, query parameters and the raw body; and
    `target`, the path and raw query string as the sender addressed them (Twilio signs the URL)."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    target: str = ""


Verifier = Callable[[SignedRequest, str, int], None]


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


def _hmac(secret: str, message: bytes, digest: str = "sha256") -> bytes:
    return hmac.new(secret.encode(), message, digest).digest()


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


def verify_hub_signature_256(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # GitHub and Meta (WhatsApp, Instagram, Messenger): sha256=<HMAC-SHA256 hex of the body>.
    # Neither signs a timestamp; a replayed delivery keeps its id, which the consumers deduplicate.
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
    # The signature covers the query's data.id, but the payments consumer fetches the payment
    # named by the body's: a body naming another payment than the one signed is not signed.
    body_id = _mercadopago_body_id(request.body)
    signed_id = request.query.get("data.id", "")
    if body_id is not None and body_id != signed_id:
        raise SignatureError(
            f"the body's data.id {body_id[:64]!r} is not the data.id the signature covers "
            f"({signed_id[:64]!r}, from the URL's query string)"
        )


def _mercadopago_body_id(body: bytes) -> str | None:
    """The body's `data.id` as text (Mercado Pago sends it as a string or a number); None when
    the body holds none, or is not JSON (which the webhook's reading refuses with 400)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    data = payload.get("data") if isinstance(payload, dict) else None
    found = data.get("id") if isinstance(data, dict) else None
    if found is None:
        return None
    return found if isinstance(found, str) else json.dumps(found)


def token_header(header: str) -> Verifier:
    """A shared token sent as is in `header` (Hotmart, Telegram, Asaas): it proves the sender
    knows the secret, but signs neither the body nor a time."""

    def verify(request: SignedRequest, secret: str, tolerance_s: int) -> None:
        if not _same(secret, _require(request, header)):
            raise SignatureError(f"{header} does not match")

    return verify


def verify_kiwify(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # Kiwify appends ?signature=<HMAC-SHA1 hex of the body, keyed with the webhook token>.
    given = request.query.get("signature")
    if not given:
        raise SignatureError("missing signature query parameter")
    if not _same(_hmac_hex(secret, request.body, "sha1"), given):
        raise SignatureError("signature does not match the body")


def verify_pagarme(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # X-Hub-Signature: sha1=<HMAC-SHA1 hex of the body, keyed with the account's secret key>.
    given = _require(request, "x-hub-signature")
    if not _same("sha1=" + _hmac_hex(secret, request.body, "sha1"), given):
        raise SignatureError("X-Hub-Signature does not match the body")


def verify_slack(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # X-Slack-Signature: v0=<HMAC-SHA256 hex of "v0:<X-Slack-Request-Timestamp>:<body>">.
    ts = _require(request, "x-slack-request-timestamp")
    given = _require(request, "x-slack-signature")
    _check_timestamp(ts, tolerance_s)
    if not _same("v0=" + _hmac_hex(secret, b"v0:" + ts.encode() + b":" + request.body), given):
        raise SignatureError("X-Slack-Signature does not match")


def verify_shopify(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # X-Shopify-Hmac-Sha256: base64 of the HMAC-SHA256 of the body, keyed with the app's secret.
    given = _require(request, "x-shopify-hmac-sha256")
    if not _same(base64.b64encode(_hmac(secret, request.body)).decode(), given):
        raise SignatureError("X-Shopify-Hmac-Sha256 does not match the body")


def verify_discord(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # Ed25519, by the application's public key (the "secret" here), over timestamp + body.
    signature = _require(request, "x-signature-ed25519")
    ts = _require(request, "x-signature-timestamp")
    _check_timestamp(ts, tolerance_s)
    try:
        key = nacl.signing.VerifyKey(bytes.fromhex(secret))
    except (ValueError, TypeError):
        raise SignatureError(
            "the configured key is not a hex Ed25519 public key: set HOOKHUB_SECRET_DISCORD to "
            "the application's PUBLIC KEY"
        ) from None
    try:
        key.verify(ts.encode() + request.body, bytes.fromhex(signature))
    except (ValueError, TypeError, nacl.exceptions.BadSignatureError):
        raise SignatureError("X-Signature-Ed25519 does not match") from None


def verify_twilio(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # X-Twilio-Signature: base64 of the HMAC-SHA1 of the URL Twilio was given (query string and
    # all) followed by each POST parameter's name and value, sorted by name. The URL is rebuilt
    # from the Host header (Kong preserves it) and the target; TLS may end in front of us, so
    # either scheme may be the one Twilio signed.
    given = _require(request, "x-twilio-signature")
    host = _require(request, "host")
    try:
        params = parse_qsl(request.body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise SignatureError("the form body is not UTF-8") from None
    signed_params = "".join(name + value for name, value in sorted(params)).encode()
    for scheme in ("https", "http"):
        url = f"{scheme}://{host}{request.target}".encode()
        if _same(base64.b64encode(_hmac(secret, url + signed_params, "sha1")).decode(), given):
            return
    raise SignatureError("X-Twilio-Signature does not match the URL and parameters")


def verify_hmac(request: SignedRequest, secret: str, tolerance_s: int) -> None:
    # Hookhub's generic scheme for senders without one of their own:
    # X-Hookhub-Signature: sha256=<HMAC-SHA256 hex of "<X-Hookhub-Timestamp>.<body>">
    ts = _require(request, "x-hookhub-timestamp")
    given = _require(request, "x-hookhub-signature")
    _check_timestamp(ts, tolerance_s)
    if not _same("sha256=" + _hmac_hex(secret, ts.encode() + b"." + request.body), given):
        raise SignatureError("X-Hookhub-Signature does not match")


VERIFIERS: dict[Scheme, Verifier] = {
    Scheme.STRIPE: verify_stripe,
    Scheme.HUB_SIGNATURE_256: verify_hub_signature_256,
    Scheme.STANDARD_WEBHOOKS: verify_standard_webhooks,
    Scheme.MERCADOPAGO: verify_mercadopago,
    Scheme.HOTMART_HOTTOK: token_header("x-hotmart-hottok"),
    Scheme.KIWIFY: verify_kiwify,
    Scheme.ASAAS_ACCESS_TOKEN: token_header("asaas-access-token"),
    Scheme.PAGARME: verify_pagarme,
    Scheme.SHOPIFY: verify_shopify,
    Scheme.SLACK: verify_slack,
    Scheme.TELEGRAM_SECRET_TOKEN: token_header("x-telegram-bot-api-secret-token"),
    Scheme.DISCORD: verify_discord,
    Scheme.TWILIO: verify_twilio,
    Scheme.HMAC: verify_hmac,
}
