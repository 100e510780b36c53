"""Time and size limits for clients too slow or too large to be anything but a nuisance, for
both HTTP services.

uvicorn waits for a request's line and headers forever, and with httptools buffers them whatever
their size: twenty clients each sending a header byte now and then (slowloris) hold twenty
connections, and their buffers, for as long as they like. `with_head_timeout` gives uvicorn's HTTP
protocol a time limit and a size limit on each request's head; the body's are the app's own
(hub-api's `fast_path.BODY_READ_TIMEOUT_S`, the console's `FORM_READ_TIMEOUT_S`).

Handed uvicorn's protocol class, so that the library does not import the server.
"""

import asyncio
from typing import Any

# A request's line and headers must be whole within this long of its first byte, or of the
# connection's opening. Kong, in front, sends a whole head at once.
HEAD_TIMEOUT_S = 5.0
# A request's line and headers together: far above anything Kong passes on (its own buffers are
# 8 KiB a line), far below what would cost memory. The services' own limits on the headers they
# read are smaller still (hub-api: 431 naming the header).
MAX_HEAD_BYTES = 1024 * 1024
# An idle keep-alive connection is closed after this long (uvicorn's default, said here).
KEEP_ALIVE_TIMEOUT_S = 5
_TOO_LARGE_TEXT = b"the request's headers are over 1 MiB long\n"
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(_TOO_LARGE_TEXT), _TOO_LARGE_TEXT)
)


def with_head_timeout(protocol: type[Any], timeout_s: float = HEAD_TIMEOUT_S) -> type[Any]:
    """A subclass of uvicorn's httptools protocol (`HttpToolsProtocol`) that closes a connection
    whose request head is not whole within `timeout_s`, and answers 431 to one whose head passes
    `MAX_HEAD_BYTES`: pass it as `uvicorn.Config(http=...)`."""

    class HeadTimeoutProtocol(protocol):  # type: ignore[misc, valid-type]
        _head_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0

        def data_received(self, data: bytes) -> None:
            if self._head_timer is not None:  # a head is being read
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    self._disarm_head_timer()
                    if not self.transport.is_closing():
                        self.transport.write(TOO_LARGE)
                        self.transport.close()
                    return
            super().data_received(data)

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm_head_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm_head_timer()  # the next request on a kept-alive connection

        def on_headers_complete(self) -> None:
            self._disarm_head_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head_timer()
            super().connection_lost(exc)

        def _arm_head_timer(self) -> None:
            self._disarm_head_timer()
            self._head_bytes = 0
            self._head_timer = self.loop.call_later(timeout_s, self._head_too_slow)

        def _disarm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            if not self.transport.is_closing():
                self.transport.close()

    HeadTimeoutProtocol.__name__ = HeadTimeoutProtocol.__qualname__ = (
        f"HeadTimeout{protocol.__name__}"
    )
    return HeadTimeoutProtocol
