"""`hookhub api`: run hub-api on uvicorn (registered with the `hookhub` command as a plugin)."""

import asyncio

import typer
import uvicorn
from hookhub import tracing
from hookhub.commands import (
    RUN_PANEL,
    AllowNoGateway,
    Host,
    Port,
    load_settings,
    require_gateway_secret,
    run,
)
from hookhub.settings import Settings
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hub_api.app import create_app

# A request's line and headers must arrive within this long of its first byte (or of the
# connection's opening). uvicorn waits for them forever: twenty clients sending a header byte now
# and then would hold twenty connections, and their buffers, for as long as they like.
HEAD_TIMEOUT_S = 5.0
# An idle keep-alive connection is closed after this long (uvicorn's default, said here).
KEEP_ALIVE_TIMEOUT_S = 5


class HeadTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request head is not whole within
    `HEAD_TIMEOUT_S`. (The body has its own time, `fast_path.BODY_READ_TIMEOUT_S`.)"""

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
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
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def uvicorn_server(settings: Settings, host: str, port: int) -> uvicorn.Server:
    """hub-api on uvicorn as production runs it: uvloop, httptools with a time limit on each
    request's head (`HeadTimeoutProtocol`; the body's is the app's), no access log (the app logs
    each event itself), ten seconds to finish requests in flight on shutdown."""
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http=HeadTimeoutProtocol,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def api(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    allow_no_gateway: AllowNoGateway = False,
) -> None:
    """Run hub-api, the publisher, behind the gateway."""
    settings = load_settings()
    require_gateway_secret(settings, allow_no_gateway, "hub-api can pose as any caller")
    tracing.configure("hookhub-api")
    run(uvicorn_server(settings, host, port).serve)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=RUN_PANEL)(api)
