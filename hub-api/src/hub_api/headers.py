"""The HTTP headers hub-api reads and sets beyond Kong's (`hookhub.gateway`): their names, how a
request's media type is read, and how a value is written into a response header."""

from collections.abc import Mapping
from urllib.parse import quote

CORRELATION_HEADER = "x-correlation-id"
# Where the event id goes when a platform gets an answer of its own rather than the 202's body.
EVENT_ID_HEADER = "x-hookhub-event-id"

# What an HTTP field value carries as it is: visible ASCII but the percent sign.
_FIELD_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def media_type(headers: Mapping[str, str]) -> str:
    """The request's media type, lower-cased, without parameters."""
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def header_value(text: str) -> str:
    """`text` for a response header: as it is when it is visible ASCII, else percent-encoded
    UTF-8 (RFC 3986), as an id taken from a provider's JSON body may need."""
    return quote(text, safe=_FIELD_SAFE)
