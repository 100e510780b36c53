"""`/livez`, `/readyz` and `/metrics` for a consumer process, like hub-api's."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


def probes_app(is_ready: Callable[[], Awaitable[bool]]):  # type: ignore[no-untyped-def]
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
            status, body, ctype = 200, generate_latest(), CONTENT_TYPE_LATEST.encode()
        else:
            status, body, ctype = 404, b'{"detail": "not found"}', b"application/json"
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]}
        )
        await send({"type": "http.response.body", "body": body})

    return app


async def serve_probes(
    is_ready: Callable[[], Awaitable[bool]], port: int, stop: asyncio.Event
) -> None:
    config = uvicorn.Config(
        probes_app(is_ready),
        host="0.0.0.0",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    # The consumer owns SIGTERM/SIGINT (to drain first); the probe server must not take them.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
