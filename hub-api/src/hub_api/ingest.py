"""What may come in, and the event it becomes: a provider's webhook or an internal CloudEvent.

Plain functions over headers, query and body, with no web framework and no broker, so every rule is
tested in memory. A request that breaks a rule raises `Rejected`: hub-api answers with its status
and detail, and publishes nothing. An `Event` returned here can be published as it is.
"""

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hookhub import contracts, events
from hookhub.events import Event
from hookhub.providers import (
    PROVIDERS,
    Provider,
    SignatureError,
    SignedRequest,
    body_hash_id,
    locate,
    needs_json,
)
from hookhub.settings import Settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CORRELATION_HEADER = "x-correlation-id"
WEBHOOK_MEDIA_TYPES = ("application/json",)
EVENT_MEDIA_TYPES = ("application/cloudevents+json", "application/json")
# message_id, correlation_id and content_type are AMQP short strings; a longer one cannot be sent.
MAX_SHORT_STRING_BYTES = 255


class Rejected(Exception):
    """The request is refused and nothing is published: the HTTP status and detail to answer with,
    the event's id once the request got as far as one, and headers to send (`Retry-After`)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        event_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.event_id = event_id
        self.headers = headers


class CloudEventIn(BaseModel):
    """An internal event, CloudEvents JSON (structured mode). `source` is ignored: Hookhub sets it
    from the authenticated caller."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=events.new_event_id, min_length=1, max_length=200)
    type: str
    subject: str | None = None
    datacontenttype: str = events.JSON
    data: Any = None
    data_base64: str | None = None

    @field_validator("type")
    @classmethod
    def _type_is_a_routing_key(cls, value: str) -> str:
        if not events.is_valid_type(value):
            raise ValueError("type must be dot-separated words of letters, digits, '_' or '-'")
        return value


def may_publish(event_type: str) -> bool:
    """Whether a caller of /events may publish this type. Not one Hookhub's consumers emit (the
    catalogue's, and their whole namespaces): a caller claiming it would forge a payment or a
    finished order. Not one in a provider's namespace: it would pass for a verified webhook."""
    namespace = event_type.split(".", 1)[0]
    emitter = events.CATALOGUE.get(event_type, ("internal", ""))[0]
    return (
        emitter == "internal"
        and namespace not in events.CONSUMER_NAMESPACES
        and namespace not in PROVIDERS
    )


@dataclass(frozen=True, slots=True)
class EnabledProvider:
    """A provider this hub takes webhooks from, and the secret it verifies them with."""

    spec: Provider
    secret: str


def check_webhook(provider: str, headers: Mapping[str, str], settings: Settings) -> EnabledProvider:
    """The refusals a webhook gets before its body is read (so they cost no upload): an unknown
    or disabled provider, a body that is not JSON."""
    spec = PROVIDERS.get(provider)
    if spec is None:
        raise Rejected(404, f"unknown provider '{provider}'; known: {', '.join(PROVIDERS)}")
    secret = settings.provider_secret(provider)
    if secret is None:
        raise Rejected(
            404,
            f"provider '{provider}' is not enabled here: set HOOKHUB_SECRET_{provider.upper()}",
        )
    if _media_type(headers) not in WEBHOOK_MEDIA_TYPES:
        raise Rejected(415, f"{provider} webhooks must be sent as application/json")
    return EnabledProvider(spec, secret)


def webhook_event(
    provider: EnabledProvider,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    body: bytes,
    timestamp_tolerance_s: float,
) -> Event:
    """A webhook (that passed `check_webhook`) verified by its provider's own signature scheme, as
    the event to publish: the body byte-for-byte, of type `<provider>.<the provider's event
    type>`. `headers` are keyed by lower-case name."""
    spec = provider.spec
    try:
        spec.verify(SignedRequest(headers, query, body), provider.secret, timestamp_tolerance_s)
    except SignatureError as exc:
        raise Rejected(401, f"signature rejected: {exc}") from None
    payload: Any = None
    if needs_json(spec):
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
            raise Rejected(400, "body is not valid JSON") from None
    provider_type = locate(spec.event_type, headers, payload)
    if provider_type is None:
        raise Rejected(422, f"no event type found at {spec.event_type}")
    event_type = f"{spec.name}.{provider_type}"
    if not events.is_valid_type(event_type):
        raise Rejected(422, f"event type '{event_type}' is not a valid routing key")
    return _sendable(
        Event(
            id=locate(spec.event_id, headers, payload) or body_hash_id(body),
            source=f"/webhooks/{spec.name}",
            type=event_type,
            data=body,
            content_type=events.JSON,
            correlation_id=headers.get(CORRELATION_HEADER) or str(uuid.uuid4()),
            traceparent=headers.get("traceparent"),
        )
    )


def check_internal_event(headers: Mapping[str, str]) -> None:
    """The refusal an internal event gets before its body is read: not CloudEvents JSON."""
    if _media_type(headers) not in EVENT_MEDIA_TYPES:
        raise Rejected(415, "events must be sent as application/cloudevents+json")


def internal_event(body: bytes, headers: Mapping[str, str], caller: str | None) -> Event:
    """A CloudEvent (that passed `check_internal_event`) sent to /events by `caller`, whom the
    gateway authenticated, as the event to publish. Its source is the caller's, never what the
    body claims."""
    try:
        cloud_event = CloudEventIn.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise Rejected(422, f"not a valid CloudEvent: {problems}") from None
    if not may_publish(cloud_event.type):
        raise Rejected(
            403,
            f"type '{cloud_event.type}' is reserved for Hookhub's own events",
            event_id=cloud_event.id,
        )
    data = _event_data(cloud_event)
    if problem := contracts.violation(cloud_event.type, data):
        raise Rejected(422, problem, event_id=cloud_event.id)
    return _sendable(
        Event(
            id=cloud_event.id,
            source=f"/events/{caller or 'anonymous'}",
            type=cloud_event.type,
            data=data,
            content_type=_event_content_type(cloud_event),
            subject=cloud_event.subject,
            correlation_id=headers.get(CORRELATION_HEADER) or str(uuid.uuid4()),
            traceparent=headers.get("traceparent"),
        )
    )


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _sendable(event: Event) -> Event:
    """The event, once its strings are known to fit in AMQP properties."""
    if problem := _unsendable(event):
        raise Rejected(422, problem, event_id=event.id)
    return event


def _unsendable(event: Event) -> str | None:
    """Why the event's strings cannot go out as AMQP properties, if they cannot."""
    for name, value, limit in (
        ("event id", event.id, MAX_SHORT_STRING_BYTES),
        ("correlation id", event.correlation_id, MAX_SHORT_STRING_BYTES),
        ("content type", event.content_type, MAX_SHORT_STRING_BYTES),
        ("subject", event.subject, None),
    ):
        if not value:
            continue
        try:
            size = len(value.encode())
        except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape
            return f"{name} is not valid Unicode"
        if limit is not None and size > limit:
            return f"{name} is longer than the {limit} bytes AMQP allows"
    return None


def _event_data(cloud_event: CloudEventIn) -> bytes:
    """The message body: `data_base64` decoded, JSON `data` serialised, or text `data` as is."""
    if cloud_event.data_base64 is not None:
        if cloud_event.data is not None:
            raise Rejected(422, "send data or data_base64, not both", event_id=cloud_event.id)
        try:
            return base64.b64decode(cloud_event.data_base64, validate=True)
        except binascii.Error:
            raise Rejected(
                422, "data_base64 is not valid base64", event_id=cloud_event.id
            ) from None
    if cloud_event.datacontenttype.split(";")[0].strip().endswith("json"):
        try:
            return json.dumps(cloud_event.data, separators=(",", ":"), allow_nan=False).encode()
        except ValueError:  # NaN or Infinity, which JSON has no way to say
            raise Rejected(
                422, "data holds a number JSON cannot represent", event_id=cloud_event.id
            ) from None
    if isinstance(cloud_event.data, str):
        return cloud_event.data.encode()
    raise Rejected(
        422, "data must be a string unless datacontenttype is JSON", event_id=cloud_event.id
    )


def _event_content_type(cloud_event: CloudEventIn) -> str:
    """The datacontenttype sent; for data_base64 without one, bytes of no known type."""
    if (
        cloud_event.data_base64 is not None
        and "datacontenttype" not in cloud_event.model_fields_set
    ):
        return "application/octet-stream"
    return cloud_event.datacontenttype
