"""A provider's webhook, and the event it becomes; or the handshake hub-api answers itself.

Plain functions over headers, query and body, read from the provider table
(`hookhub.providers.PROVIDERS`), so every rule is tested in memory. A request that breaks a rule
raises `Rejected`, and nothing is published.
"""

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from hookhub import events
from hookhub.events import Event
from hookhub.providers import (
    FORM,
    PROVIDERS,
    VERIFY_TOKEN_SUFFIX,
    Handshake,
    Provider,
    Received,
    body_hash_id,
    locate,
    reads_body,
)
from hookhub.settings import Settings

from hub_api.headers import correlation_id, media_type
from hub_api.rejections import Rejected, check_headers, sendable
from hub_api.signatures import VERIFIERS, SignatureError, SignedRequest


@dataclass(frozen=True, slots=True)
class EnabledProvider:
    """A provider this hub takes webhooks from, and the secret it verifies them with."""

    spec: Provider
    secret: str


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer of hub-api's own: to a handshake (nothing published), or the reply a platform
    needs once its event is confirmed (`hookhub.providers.Reply`)."""

    status: int
    media_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Webhook:
    """A verified webhook's event to publish and, where the platform needs something other than
    Hookhub's `202 {"id", "type"}`, the answer to give once it is confirmed."""

    event: Event
    answer: Answer | None = None


def check_webhook(
    provider: str, headers: Mapping[str, str], settings: Settings, method: str = "POST"
) -> EnabledProvider:
    """The refusals a webhook gets before its body is read (so they cost no upload): an unknown
    or disabled provider, a media type the provider does not send, a header that would become
    an AMQP property over its limit (431)."""
    spec = PROVIDERS.get(provider)
    if spec is None:
        raise Rejected(404, f"unknown provider '{provider}'; known: {', '.join(PROVIDERS)}")
    secret = settings.provider_secret(provider)
    if secret is None:
        raise Rejected(
            404,
            f"provider '{provider}' is not enabled here: set HOOKHUB_SECRET_{provider.upper()}",
        )
    if method == "POST" and media_type(headers) not in spec.media_types:
        raise Rejected(415, f"{provider} webhooks must be sent as {' or '.join(spec.media_types)}")
    check_headers(headers)
    return EnabledProvider(spec, secret)


def webhook_event(
    provider: EnabledProvider,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    timestamp_tolerance_s: float,
    target: str = "",
) -> Webhook | Answer:
    """A webhook (that passed `check_webhook`) verified by its provider's own signature scheme:
    the event to publish, the body byte-for-byte, of type `<provider>.<the provider's type>`; or
    the `Answer` to its handshake, with nothing to publish. `headers` are keyed by lower-case
    name; `target` is the path and raw query string as requested (for schemes that sign the URL).
    """
    spec = provider.spec
    try:
        VERIFIERS[spec.scheme](
            SignedRequest(headers, query, body, target), provider.secret, timestamp_tolerance_s
        )
    except SignatureError as exc:
        raise Rejected(401, f"signature rejected: {exc}") from None
    received = _received(spec, headers, query, body)
    if (handshake := spec.handshake) and handshake.method == "POST":
        if locate(handshake.when, received) == handshake.equals:
            return _handshake_answer(handshake, received)
    provider_type = locate(spec.event_type, received)
    if provider_type is None:
        raise Rejected(422, f"no event type found at {spec.event_type}")
    if spec.type_names:
        provider_type = spec.type_names.get(provider_type, provider_type)
    if "/" in provider_type:  # Shopify's topics are paths (orders/create), Slack's commands too
        provider_type = provider_type.strip("/").replace("/", ".")
    event_type = f"{spec.name}.{provider_type}"
    if not events.is_valid_type(event_type):
        raise Rejected(422, f"event type '{event_type}' is not a valid routing key")
    event = sendable(
        Event(
            id=locate(spec.event_id, received) or body_hash_id(body),
            source=f"/webhooks/{spec.name}",
            type=event_type,
            data=body,
            content_type=headers.get("content-type", "").strip() or events.JSON,
            correlation_id=correlation_id(headers),
            traceparent=headers.get("traceparent"),
            tracestate=headers.get("tracestate"),
        )
    )
    return Webhook(event, _reply(spec, event, received))


def webhook_handshake(
    provider: EnabledProvider, query: Mapping[str, str], settings: Settings
) -> Answer:
    """The answer to a provider's GET handshake (Meta's `hub.challenge`), given only when the
    verify token matches the one configured; nothing is published."""
    spec = provider.spec
    handshake = spec.handshake
    if handshake is None or handshake.method != "GET":
        raise Rejected(405, f"{spec.name} webhooks are POSTed; {spec.name} sends no GET handshake")
    received = Received({}, query, {}, None)
    if locate(handshake.when, received) != handshake.equals:
        where = handshake.when.partition(":")[2]
        raise Rejected(400, f"not a {spec.name} handshake: {where} must be '{handshake.equals}'")
    secret_name = spec.name + VERIFY_TOKEN_SUFFIX
    token = settings.provider_secret(secret_name)
    if token is None:
        raise Rejected(
            404,
            f"{spec.name}'s handshake is not set up here: set HOOKHUB_SECRET_{secret_name.upper()} "
            "to the verify token given in the provider's dashboard",
        )
    given = locate(handshake.token, received) or ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise Rejected(403, f"{handshake.token.partition(':')[2]} does not match")
    return _handshake_answer(handshake, received)


def _received(
    spec: Provider, headers: Mapping[str, str], query: Mapping[str, str], body: bytes
) -> Received:
    """What the locators read; the body is parsed only for providers whose table row needs it."""
    form: dict[str, str] = {}
    payload: Any = None
    if reads_body(spec.name):
        if media_type(headers) == FORM:
            try:
                form = dict(parse_qsl(body.decode(), keep_blank_values=True))
            except UnicodeDecodeError:
                raise Rejected(400, "the form body is not UTF-8") from None
            if spec.form_json and spec.form_json in form:
                payload = _json(form[spec.form_json], f"the form's {spec.form_json} field")
        else:
            payload = _json(body, "body")
    return Received(headers, query, form, payload)


def _json(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
        raise Rejected(400, f"{what} is not valid JSON") from None


def _handshake_answer(handshake: Handshake, received: Received) -> Answer:
    if not handshake.echo:
        return Answer(200, handshake.media_type, handshake.body)
    challenge = locate(handshake.echo, received)
    if challenge is None:
        raise Rejected(400, f"the handshake has no {handshake.echo.partition(':')[2]} to answer")
    return Answer(200, handshake.media_type, challenge.encode())


def _reply(spec: Provider, event: Event, received: Received) -> Answer | None:
    reply = spec.reply
    if reply is None:
        return None
    body = reply.body
    if reply.by:
        body = reply.bodies.get(locate(reply.by, received) or "", body)
    if body is None:
        body = json.dumps({"id": event.id, "type": event.type}, separators=(",", ":")).encode()
    return Answer(reply.status, reply.media_type, body)
