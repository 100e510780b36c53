"""The HTTP headers hub-api reads and sets beyond Kong's (`hookhub.gateway`): their names, how a
request's media type is read, and how a value is written into a response header."""

import os
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


def correlation_id(headers: Mapping[str, str]) -> str:
    """The caller's correlation id, or a new random UUID (version 4) for an event that has none.
    The same text as `str(uuid.uuid4())`, without building a `UUID` object for each request."""
    if given := headers.get(CORRELATION_HEADER):
        return given
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
