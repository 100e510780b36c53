"""`Rejected`: a request refused, with nothing published; and the refusals any event gets,
whichever route built it, when what would become its AMQP properties and headers could not be
sent on, or not delivered afterwards (`sendable`, `check_headers`).

Plain, with no web framework: `hub_api.ingest` and `hub_api.webhooks` raise `Rejected`, and the
routes answer it with its status and detail (`hub_api.routes`).

Why bounds at the door: every attribute of an event rides in the message's content-header frame.
One over the broker's frame_max makes RabbitMQ close the whole connection, failing every publish
in flight; one a little under it is published, then closes the consumers' connection when a
retry or a follow-up adds its own headers. So each attribute has a limit and so has their sum,
all far under the library's own check (`hookhub.broker.MAX_PROPERTIES_BYTES`, 32 KiB).
"""

from collections.abc import Mapping

from hookhub.broker import MAX_PROPERTIES_BYTES
from hookhub.events import Event

from hub_api.headers import CORRELATION_HEADER

# message_id, correlation_id and content_type are AMQP short strings; a longer one cannot be sent.
MAX_SHORT_STRING_BYTES = 255
# W3C trace context: a traceparent is 55 characters today (more room for a later version); a
# tracestate is propagated up to 512 characters by every vendor.
MAX_TRACEPARENT_BYTES = 128
MAX_TRACESTATE_BYTES = 512
MAX_SUBJECT_BYTES = 1024
MAX_SOURCE_BYTES = 1024
# Everything a request puts in the message's properties together: room to spare under the
# library's bound for the headers retries and follow-ups add later.
MAX_ATTRIBUTES_BYTES = 4 * 1024
assert MAX_ATTRIBUTES_BYTES * 4 <= MAX_PROPERTIES_BYTES

# The request headers that become AMQP properties or headers, and their limits: refused with 431
# before the body is read. (ce-id and ce-type are bounded by the CloudEvent's own validation.)
HEADER_LIMITS: dict[str, int] = {
    "traceparent": MAX_TRACEPARENT_BYTES,
    "tracestate": MAX_TRACESTATE_BYTES,
    CORRELATION_HEADER: MAX_SHORT_STRING_BYTES,
    "ce-subject": MAX_SUBJECT_BYTES,
    "ce-id": MAX_SHORT_STRING_BYTES,
    "ce-type": MAX_SHORT_STRING_BYTES,
    "content-type": MAX_SHORT_STRING_BYTES,
}


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


def check_headers(headers: Mapping[str, str]) -> None:
    """431 for a request header that would become an AMQP property over its limit, or for all of
    them together over `MAX_ATTRIBUTES_BYTES`; cheap, so checked before the body is read."""
    total = 0
    for name, limit in HEADER_LIMITS.items():
        size = len(headers.get(name, ""))  # latin-1 as the server decoded it: one byte a char
        if size > limit:
            raise Rejected(431, f"header {name} is longer than the {limit} bytes {_allowed(limit)}")
        total += size
    if total > MAX_ATTRIBUTES_BYTES:
        raise Rejected(
            431,
            f"headers {', '.join(HEADER_LIMITS)} are longer together than the "
            f"{MAX_ATTRIBUTES_BYTES} bytes accepted",
        )


def sendable(event: Event) -> Event:
    """The event, once its attributes are known to fit in AMQP properties, each and together,
    and its id to be deliverable as an HTTP header value later (`deliverable_id`)."""
    if problem := _unsendable(event):
        raise Rejected(422, problem, event_id=event.id if deliverable_id(event.id) else None)
    return event


def deliverable_id(event_id: str) -> bool:
    """Whether an id can go on as an HTTP header (a notification's `webhook-id`, the
    `X-Hookhub-Event-Id` of an answer): visible ASCII, with single spaces only between words.
    An id with CR/LF, NUL or anything outside ASCII would be accepted here and then fail every
    delivery attempt until it is parked."""
    return bool(event_id) and all(
        word and all("!" <= c <= "~" for c in word) for word in event_id.split(" ")
    )


def _allowed(limit: int) -> str:
    return "AMQP allows" if limit == MAX_SHORT_STRING_BYTES else "accepted"


def _unsendable(event: Event) -> str | None:
    """Why the event's attributes cannot go out as AMQP properties, if they cannot."""
    total = 0
    for name, value, limit in (
        ("event id", event.id, MAX_SHORT_STRING_BYTES),
        ("correlation id", event.correlation_id, MAX_SHORT_STRING_BYTES),
        ("content type", event.content_type, MAX_SHORT_STRING_BYTES),
        ("subject", event.subject, MAX_SUBJECT_BYTES),
        ("source", event.source, MAX_SOURCE_BYTES),
        ("traceparent", event.traceparent, MAX_TRACEPARENT_BYTES),
        ("tracestate", event.tracestate, MAX_TRACESTATE_BYTES),
    ):
        if not value:
            continue
        try:
            size = len(value.encode())
        except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape
            return f"{name} is not valid Unicode"
        if size > limit:
            return f"{name} is longer than the {limit} bytes {_allowed(limit)}"
        total += size
    if total > MAX_ATTRIBUTES_BYTES:
        return (
            "the event's id, correlation id, content type, subject, source and trace context "
            f"are longer together than the {MAX_ATTRIBUTES_BYTES} bytes accepted"
        )
    if not deliverable_id(event.id):
        return (
            "event id must be visible ASCII (spaces only between words): no control characters"
            ", CR/LF, NUL or non-ASCII, which could never be delivered as a header"
        )
    return None
