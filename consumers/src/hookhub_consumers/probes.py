"""`/livez`, `/readyz` and `/metrics` for a consumer process, like hub-api's."""

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import uvicorn
from hookhub.logs import log
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hookhub_consumers.store import Store

# Readiness writes to the store at most this often, and waits this long for the write.
STORE_CHECK_INTERVAL_S = 5.0
STORE_CHECK_TIMEOUT_S = 2.0


def probes_app(  # type: ignore[no-untyped-def]
    is_ready: Callable[[], Awaitable[bool]], refresh: Callable[[], Awaitable[None]]
):
    """A bare ASGI app: three GET endpoints do not need a web framework."""

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/livez":
            status, body, ctype = 200, b'{"status": "alive"}', b"application/json"
        elif path == "/readyz":
            ready = await is_ready()
            status = 200 if ready else 503
            body = b'{"status": "ready"}' if ready else b'{"status": "not consuming"}'
            ctype = b"application/json"
        elif path == "/metrics":
            await refresh()  # the gauges read at scrape time (queue depths)
            status, body, ctype = 200, generate_latest(), CONTENT_TYPE_LATEST.encode()
        else:
            status, body, ctype = 404, b'{"detail": "not found"}', b"application/json"
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]}
        )
        await send({"type": "http.response.body", "body": body})

    return app


class ProbesNotServed(RuntimeError):
    """The probe server could not listen (its port taken, most often)."""


@contextlib.asynccontextmanager
async def serving_probes(
    is_ready: Callable[[], Awaitable[bool]],
    refresh: Callable[[], Awaitable[None]],
    port: int,
) -> AsyncIterator[None]:
    """The probes served on `port` while the block runs; raises ProbesNotServed at once when
    they cannot be (a consumer nobody can see is ready must not run unseen)."""
    config = uvicorn.Config(
        probes_app(is_ready, refresh),
        host="0.0.0.0",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    # The consumer owns SIGTERM/SIGINT (to drain first); the probe server must not take them.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    # Bound here: uvicorn, failing to bind, would raise SystemExit out of the event loop.
    listening = socket.socket()
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(("0.0.0.0", port))
    except OSError as error:
        listening.close()
        raise ProbesNotServed(f"the probes could not listen on port {port}: {error}") from None
    task = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        yield
    finally:
        server.should_exit = True
        await task


class StoreCheck:
    """Whether the store takes writes, by a real small write at most once per interval. Callers
    in between get the last answer; callers while one runs share it, and wait for it at most
    STORE_CHECK_TIMEOUT_S (a store that waits out its lock counts as not ready meanwhile)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._check: asyncio.Task[bool] | None = None
        self._next_check_at = 0.0

    async def __call__(self) -> bool:
        due = time.monotonic() >= self._next_check_at
        if self._check is None or (self._check.done() and due):
            self._next_check_at = time.monotonic() + STORE_CHECK_INTERVAL_S
            self._check = asyncio.create_task(self._write(), name="store-check")
        try:
            return await asyncio.wait_for(asyncio.shield(self._check), STORE_CHECK_TIMEOUT_S)
        except TimeoutError:
            return False

    async def _write(self) -> bool:
        try:
            await self.store.check_writable()
        except Exception as error:
            log.warning("store.unavailable", error=f"{type(error).__name__}: {error}")
            return False
        return True
