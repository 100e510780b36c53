"""What may come in at /events, and the event it becomes: an internal CloudEvent, and who may
publish which type (the publish policy, `hookhub.publish_policy`, and the types no caller may).
(A provider's webhook is `hub_api.webhooks`; the refusal both raise is `hub_api.rejections`.)

Plain functions over headers and body, with no web framework and no broker, so every rule is tested
in memory. A request that breaks a rule raises `Rejected`: hub-api answers with its status and
detail, and publishes nothing. An `Event` returned here can be published as it is.
"""

import base64
import binascii
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import unquote

from hookhub import contracts, events, specs
from hookhub.events import Event
from hookhub.providers import PROVIDERS
from hookhub.publish_policy import CALLER_PATTERN, PublishPolicy
from hookhub.topology import binding_matches
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hub_api.headers import correlation_id, media_type
from hub_api.rejections import Rejected, sendable

STRUCTURED = "application/cloudevents+json"
BATCHED = "application/cloudevents-batch+json"
EVENT_MEDIA_TYPES = (STRUCTURED, "application/json")
# Binary mode (the CloudEvents HTTP binding): the attributes ride in ce-* headers, the body is data.
BINARY_PREFIX = "ce-"
BINARY_MARKER = "ce-specversion"
# Not attributes in binary mode: the body is the data, Content-Type its datacontenttype.
NOT_ATTRIBUTES = frozenset({"data", "data_base64", "datacontenttype"})


class CloudEventIn(BaseModel):
    """An internal event, CloudEvents JSON (structured mode). `source` is ignored: Hookhub sets it
    from the authenticated caller."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=events.new_event_id, min_length=1, max_length=200)
    # The pattern is checked by the validator (for its message); here it goes into the schema.
    type: str = Field(
        json_schema_extra={
            "pattern": f"^{events.TYPE_PATTERN.pattern}$",
            "maxLength": events.MAX_TYPE_LENGTH,
        }
    )
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


class NotAllowed(Rejected):
    """403: the publish policy does not let this caller publish this type."""

    def __init__(self, caller: str | None, detail: str, event_id: str) -> None:
        super().__init__(403, detail, event_id=event_id)
        self.caller = caller


def is_reserved(event_type: str) -> bool:
    """Whether no caller of /events may publish this type, whatever the policy says. One a
    consumer emits, in a namespace one owns, or a deadline (the consumers' specs say which): a
    caller claiming it would forge a payment or a finished order. One in a provider's namespace:
    it would pass for a verified webhook."""
    return specs.reserved(event_type) is not None or event_type.split(".", 1)[0] in PROVIDERS


def may_publish(policy: PublishPolicy, caller: str | None, event_type: str) -> bool:
    """Whether the publish policy lets `caller` publish `event_type` (reserved types aside)."""
    for pattern in policy.get(caller or "", ()):
        # A pattern that is the type itself (order.created) needs no word-by-word match.
        if pattern == event_type or _matches(pattern, event_type):
            return True
    return False


@functools.lru_cache(maxsize=4096)
def _matches(pattern: str, event_type: str) -> bool:
    # A word-by-word match costs about 4 µs; a caller sends the same few types again and again.
    # Bounded: types a caller makes up only push older answers out.
    return binding_matches(pattern, event_type)


def not_allowed(policy: PublishPolicy, caller: str | None, event_type: str) -> str:
    """The 403's detail: who, what, and what the policy lets that caller publish."""
    patterns = policy.get(caller or "", ())
    allowed = ", ".join(patterns) if patterns else "nothing"
    return f"caller '{caller}' may not publish '{event_type}' (publish policy: {allowed})"


def source_of(caller: str | None) -> str:
    """The source of an event `caller` sent to /events. A caller's name is a plain word (Kong's
    consumer names are), so no name makes the source of a webhook or a consumer's follow-up."""
    if caller is None:
        return "/events/anonymous"
    if not CALLER_PATTERN.fullmatch(caller):
        raise Rejected(401, "the authenticated caller's name is not a plain Kong consumer name")
    return f"/events/{caller}"


def check_internal_event(headers: Mapping[str, str]) -> None:
    """The refusal an internal event gets before its body is read: a batch, or neither
    CloudEvents JSON (structured mode) nor `ce-*` headers (binary mode)."""
    given = media_type(headers)
    if given == BATCHED:
        # A batch could only be published in part when the broker fails midway, and a 202
        # promises the whole: each event gets its own request, its own 202 or refusal.
        raise Rejected(
            415,
            f"batched CloudEvents ({BATCHED}) are not accepted: send each event in its own "
            "request, in structured or binary mode",
        )
    if given not in EVENT_MEDIA_TYPES and not is_binary_mode(headers):
        raise Rejected(
            415,
            f"events must be sent as {STRUCTURED} (structured mode), or with ce-* headers "
            "(binary mode)",
        )


def is_binary_mode(headers: Mapping[str, str]) -> bool:
    """CloudEvents binary mode: a `ce-specversion` header and no structured media type."""
    return BINARY_MARKER in headers and media_type(headers) != STRUCTURED


def internal_event(
    body: bytes,
    headers: Mapping[str, str],
    caller: str | None,
    policy: PublishPolicy | None = None,
) -> Event:
    """A CloudEvent (that passed `check_internal_event`) sent to /events by `caller`, whom the
    gateway authenticated, as the event to publish, once `policy` lets the caller publish its
    type (None: no gateway, every caller may publish every type that is not reserved). Its
    source is the caller's, never what the request claims. In binary mode the attributes come
    from the `ce-*` headers only and the body, whatever it holds, is the data, byte-for-byte."""
    source = source_of(caller)
    binary = is_binary_mode(headers)
    if binary:
        cloud_event = _validated(lambda: CloudEventIn.model_validate(_ce_headers(headers)), "ce-")
    else:
        cloud_event = _validated(lambda: CloudEventIn.model_validate_json(body), "")
    if is_reserved(cloud_event.type):
        raise Rejected(
            403,
            f"type '{cloud_event.type}' is reserved for Hookhub's own events",
            event_id=cloud_event.id,
        )
    if policy is not None and not may_publish(policy, caller, cloud_event.type):
        detail = not_allowed(policy, caller, cloud_event.type)
        raise NotAllowed(caller, detail, cloud_event.id)
    if binary:
        data = body
        content_type = headers.get("content-type", "").strip() or "application/octet-stream"
    else:
        data = _event_data(cloud_event)
        content_type = _event_content_type(cloud_event)
    if problem := contracts.violation(cloud_event.type, data):
        raise Rejected(422, problem, event_id=cloud_event.id)
    return sendable(
        Event(
            id=cloud_event.id,
            source=source,
            type=cloud_event.type,
            data=data,
            content_type=content_type,
            subject=cloud_event.subject,
            correlation_id=correlation_id(headers),
            traceparent=headers.get("traceparent"),
            tracestate=headers.get("tracestate"),
        )
    )


def _ce_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The attributes of a binary-mode event: its ce-* headers, percent-decoded as the binding
    encodes them; data and datacontenttype are never attributes there (the body and its type)."""
    return {
        name[len(BINARY_PREFIX) :]: unquote(value)
        for name, value in headers.items()
        if name.startswith(BINARY_PREFIX) and name[len(BINARY_PREFIX) :] not in NOT_ATTRIBUTES
    }


def _validated(validate: Callable[[], CloudEventIn], prefix: str) -> CloudEventIn:
    try:
        return validate()
    except ValidationError as exc:
        problems = "; ".join(
            f"{prefix}{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise Rejected(422, f"not a valid CloudEvent: {problems}") from None


def _event_data(cloud_event: CloudEventIn) -> bytes:
    """The message body: `data_base64` decoded, JSON `data` serialised, or text `data` as is."""
    if cloud_event.data_base64 is not None:
        if cloud_event.data is not None:
            raise Rejected(422, "send data or data_base64, not both", event_id=cloud_event.id)
        try:
            return base64.b64decode(cloud_event.data_base64, validate=True)
        except (binascii.Error, ValueError):  # ValueError: a character outside ASCII
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
