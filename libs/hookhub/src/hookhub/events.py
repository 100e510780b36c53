"""The event contract on the wire, and the catalogue of event types Hookhub itself knows.

An event travels as one AMQP message: the body is the payload exactly as received (webhooks) or
the event's data (internal events); the CloudEvents attributes ride in the message properties and
in headers named as the CloudEvents AMQP binding names them (`cloudEvents:<attribute>`).
"""

import base64
import functools
import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage

from hookhub import tracing
from hookhub.failures import original_routing_key
from hookhub.logs import log
from hookhub.settings import get_settings

EXCHANGE = "hookhub.events"
SPEC_VERSION = "1.0"
CE_PREFIX = "cloudEvents:"
JSON = "application/json"
APP_ID = "hookhub"

# A type doubles as the routing key, so it is limited to what a topic binding can match word by
# word: dot-separated words, no wildcards. AMQP caps routing keys at 255 bytes.
TYPE_PATTERN = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
MAX_TYPE_LENGTH = 255

# What callers send that the consumers understand (hub-api checks their data: `contracts`). The
# types the consumers emit, and their deadlines, are in each consumer's spec; `specs.catalogue()`
# joins the two into the catalogue the docs, the AsyncAPI document and hub-api's rule read.
INBOUND: dict[str, str] = {
    "order.created": "a storefront created an order (data: order_id, customer, items, amount, "
    "currency)",
    "order.amended": "a storefront changed an order not paid yet (data: as order.created's, all "
    "of it)",
    "production.finished": "the workshop finished an order (data: order_id)",
    "ci.*": "a CI pipeline reports (free-form data, delivered as is)",
}

# What follow-up ids are keyed with where HOOKHUB_FOLLOW_UP_KEY is unset (dev, tests): public, so
# anyone could compute them; a deployment sets its own key.
DEV_FOLLOW_UP_KEY = b"hookhub-dev-follow-up-key: public, set HOOKHUB_FOLLOW_UP_KEY"
_UUID_VERSION_8 = 8 << 76  # RFC 9562 version 8: "custom", here an HMAC
_UUID_VARIANT = 0b10 << 62  # the RFC's variant


def follow_up_id(key: bytes, source: str, cause_id: str, type: str) -> str:
    """The id of the event of `type` caused by the event (`source`, `cause_id`): a UUID made of
    HMAC-SHA256(key, the three) (version 8, 122 bits of the MAC). The same in every process that
    has the key, so a cause handled twice emits the same follow-up; not computable without it,
    so no caller can publish an id a follow-up will have."""
    # JSON keeps the three apart: "a|b" + "c" and "a" + "b|c" are different messages.
    message = json.dumps([source, cause_id, type], ensure_ascii=False).encode()
    mac = int.from_bytes(hmac.new(key, message, hashlib.sha256).digest()[:16])
    mac &= ~(0xF << 76) & ~(0b11 << 62)
    return str(uuid.UUID(int=mac | _UUID_VERSION_8 | _UUID_VARIANT))


@functools.cache
def follow_up_key() -> bytes:
    """This process's follow-up key (HOOKHUB_FOLLOW_UP_KEY); the public dev key, with a warning,
    where it is unset."""
    key = get_settings().follow_up_key
    if key is None:
        log.warning(
            "follow_up_key.dev_key",
            reason="HOOKHUB_FOLLOW_UP_KEY is not set: follow-up ids are computable by anyone; "
            "set it to the deployment's secret (openssl rand -hex 32) in every consumer",
        )
        return DEV_FOLLOW_UP_KEY
    return key.get_secret_value().strip().encode()


def is_valid_type(event_type: str) -> bool:
    return len(event_type) <= MAX_TYPE_LENGTH and bool(TYPE_PATTERN.fullmatch(event_type))


def new_event_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Event:
    """One event as Hookhub carries it: CloudEvents attributes plus the untouched body."""

    id: str
    source: str
    type: str
    data: bytes
    content_type: str = JSON
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    subject: str | None = None
    correlation_id: str | None = None
    # W3C trace context: the caller's, or (tracing on) the span this event was emitted in.
    traceparent: str | None = None
    tracestate: str | None = None
    # A deadline's delay: the broker holds the message this long (its TTL) before it is due.
    delay_s: float | None = None
    # The id of the event this one was emitted because of (a CloudEvents extension attribute):
    # how the event log links a cause to its follow-ups.
    causation_id: str | None = None

    @property
    def routing_key(self) -> str:
        return self.type

    def to_properties(self) -> aiormq.spec.Basic.Properties:
        """The AMQP properties that carry the event's attributes; the body is `data`.

        Built straight as aiormq's (pamqp's) frame properties, which the broker publishes with:
        an aio-pika `Message` on the way cost a fifth of the publish's CPU in hub-api.
        """
        headers: dict[str, str] = {
            f"{CE_PREFIX}specversion": SPEC_VERSION,
            f"{CE_PREFIX}id": self.id,
            f"{CE_PREFIX}source": self.source,
            f"{CE_PREFIX}type": self.type,
            f"{CE_PREFIX}time": self.time.isoformat(),
        }
        if self.subject:
            headers[f"{CE_PREFIX}subject"] = self.subject
        if self.traceparent:
            headers["traceparent"] = self.traceparent
            if self.tracestate:
                headers["tracestate"] = self.tracestate
        if self.causation_id:
            headers[f"{CE_PREFIX}causationid"] = self.causation_id
        return aiormq.spec.Basic.Properties(
            content_type=self.content_type,
            headers=headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT.value,
            priority=0,  # what aio-pika sets by default: the same bytes either way
            correlation_id=self.correlation_id,
            message_id=self.id,
            timestamp=self.time,
            message_type=self.type,
            app_id=APP_ID,
            expiration=None if self.delay_s is None else str(round(self.delay_s * 1000)),
        )

    def to_message(self) -> aio_pika.Message:
        """The same message for aio-pika's own publish: the properties of `to_properties`."""
        properties = self.to_properties()
        return aio_pika.Message(
            self.data,
            content_type=properties.content_type,
            message_id=properties.message_id,
            type=properties.message_type,
            correlation_id=properties.correlation_id,
            timestamp=properties.timestamp,
            delivery_mode=properties.delivery_mode,
            app_id=properties.app_id,
            headers=properties.headers,
            expiration=self.delay_s,
        )

    @classmethod
    def from_message(cls, message: AbstractIncomingMessage) -> "Event":
        headers = message.headers or {}

        def attr(name: str) -> str | None:
            value = headers.get(f"{CE_PREFIX}{name}")
            return value.decode() if isinstance(value, bytes) else value

        def plain(name: str) -> str | None:
            value = headers.get(name)
            return value.decode() if isinstance(value, bytes) else value

        time_text = attr("time")
        return cls(
            id=attr("id") or message.message_id or new_event_id(),
            source=attr("source") or "unknown",
            # A message with no type of its own (published by something other than Hookhub) is
            # of the type it was routed by, which a retried copy keeps in a header.
            type=attr("type") or message.type or original_routing_key(message) or "unknown",
            data=message.body,
            content_type=message.content_type or JSON,
            time=datetime.fromisoformat(time_text) if time_text else datetime.now(UTC),
            subject=attr("subject"),
            correlation_id=message.correlation_id,
            traceparent=plain("traceparent"),
            tracestate=plain("tracestate"),
            causation_id=attr("causationid"),
        )

    def to_json(self) -> str:
        """The event as one JSON document, for keeping it in a store's outbox."""
        return json.dumps(
            {
                "id": self.id,
                "source": self.source,
                "type": self.type,
                "data": base64.b64encode(self.data).decode(),
                "content_type": self.content_type,
                "time": self.time.isoformat(),
                "subject": self.subject,
                "correlation_id": self.correlation_id,
                "traceparent": self.traceparent,
                "tracestate": self.tracestate,
                "delay_s": self.delay_s,
                "causation_id": self.causation_id,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> "Event":
        fields = json.loads(text)
        return cls(
            **{
                **fields,
                "data": base64.b64decode(fields["data"]),
                "time": datetime.fromisoformat(fields["time"]),
            }
        )

    def follow_up(
        self,
        *,
        type: str,
        source: str,
        data: bytes,
        subject: str | None = None,
        key: bytes | None = None,
    ) -> "Event":
        """A domain event caused by this one: same correlation and trace, a time of now.

        Its id is derived from the cause, keyed (`follow_up_id`; `key` defaults to the
        process's `follow_up_key()`), so a consumer that crashes after publishing and handles the
        cause again publishes the very same event, which downstream consumers deduplicate, and no
        caller can claim that id first. With tracing on, its trace context is the span current
        now (the consumer's), which it keeps in the outbox until it is published.
        """
        traced = tracing.current_headers()
        traceparent, tracestate = traced or (self.traceparent, self.tracestate)
        return replace(
            self,
            id=follow_up_id(key or follow_up_key(), self.source, self.id, type),
            type=type,
            source=source,
            data=data,
            content_type=JSON,
            time=datetime.now(UTC),
            subject=subject if subject is not None else self.subject,
            delay_s=None,
            causation_id=self.id,
            traceparent=traceparent,
            tracestate=tracestate,
        )
