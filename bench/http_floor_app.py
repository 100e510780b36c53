"""The HTTP floor: uvicorn reading each request's body and answering 202, publishing nothing.

Not a way to ingest anything: what one request costs the server before any work, so that
hub-api's CPU per request can be split into what HTTP itself costs and what the rest does, and
a ratio against raw aio-pika (no HTTP at all) read for what it is. A bare ASGI callable, under
the same uvicorn flags as hub-api and the FastStream app (1 worker, uvloop, httptools).
"""

from typing import Any

HEADERS = [(b"content-length", b"0")]
ACCEPTED = {"type": "http.response.start", "status": 202, "headers": HEADERS}
READY = {"type": "http.response.start", "status": 200, "headers": HEADERS}  # any GET: started
EMPTY = {"type": "http.response.body", "body": b""}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # the whole body, as every other case reads it
        message = await receive()
        more = message.get("more_body", False)
    await send(ACCEPTED if scope["method"] == "POST" else READY)
    await send(EMPTY)
