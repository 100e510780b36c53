"""`Rejected`: a request refused, with nothing published; and the refusal any event gets, whichever
route built it, when its strings do not fit in AMQP properties (`sendable`).

Plain, with no web framework: `hub_api.ingest` and `hub_api.webhooks` raise `Rejected`, and the
routes answer it with its status and detail (`hub_api.routes`).
"""

from hookhub.events import Event

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


def sendable(event: Event) -> Event:
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
