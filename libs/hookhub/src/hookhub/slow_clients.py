"""Time limits for clients too slow to be anything but a nuisance, for both HTTP services.

uvicorn waits for a request's line and headers forever: twenty clients each sending a header byte
now and then (slowloris) hold twenty connections, and their buffers, for as long as they like.
`with_head_timeout` gives uvicorn's HTTP protocol a time limit on each request's head; the body's
is the app's own (hub-api's `fast_path.BODY_READ_TIMEOUT_S`, the console's `FORM_READ_TIMEOUT_S`).

Handed uvicorn's protocol class, so that the library does not import the server.
"""

import asyncio
from typing import Any

# A request's line and headers must be whole within this long of its first byte, or of the
# connection's opening. Kong, in front, sends a whole head at once.
HEAD_TIMEOUT_S = 5.0
# An idle keep-alive connection is closed after this long (uvicorn's default, said here).
KEEP_ALIVE_TIMEOUT_S = 5


def with_head_timeout(protocol: type[Any], timeout_s: float = HEAD_TIMEOUT_S) -> type[Any]:
    """A subclass of uvicorn's httptools protocol (`HttpToolsProtocol`) that closes a connection
    whose request head is not whole within `timeout_s`: pass it as `uvicorn.Config(http=...)`."""

    class HeadTimeoutProtocol(protocol):  # type: ignore[misc, valid-type]
        _head_timer: asyncio.TimerHandle | None = None

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
