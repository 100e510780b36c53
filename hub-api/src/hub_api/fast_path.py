"""`HubApi`: FastAPI, except that the routes marked `serve_directly` are served straight from the
ASGI server, on a `DirectRequest` (a view over the ASGI scope), and answered with a `Reply` sent
as the two ASGI messages.

Why: CPU per event. FastAPI's per-request machinery (its middleware stack, router and dependency
solver), then Starlette's Request and Response objects, cost more than verifying an event. Each
route is still declared once with FastAPI, which builds the OpenAPI document from it, and every
other route (probes, metrics, the document itself, unknown paths) goes through FastAPI as usual.

What a route served directly does NOT get, so that nothing added later is silently skipped on it:
- Middleware of any kind: `app.add_middleware(...)`, `@app.middleware("http")`, and Starlette's own
  error middleware. CORS, GZip, tracing, timing or a request id added that way apply only to the
  other routes; give the ingest routes the same in their endpoint, or drop `serve_directly`.
  (Timing and tracing are given here: the request duration histogram, and with tracing on a
  SERVER span per request that continues the caller's `traceparent`.)
- Dependencies and parameter parsing: the endpoint is awaited as `endpoint(request)` with a
  `DirectRequest`, and FastAPI never sees its signature. `Depends(...)`, `dependencies=[...]` on
  the router, and path, query, header and body parameters are neither solved nor validated (so
  they are documented by the route's `openapi_extra`). What a dependency would give, the endpoint
  reads from `request.app.state` itself.
- Starlette's Request and Response: `request.app` is there, but no `request.url`,
  `request.state`, cookies, forms or background tasks. The endpoint returns a `Reply`;
  `response_model`, `status_code` and `response_class` only document it.
- The app's exception handlers: an exception the endpoint raises is answered by the handler
  registered with `add_direct_exception_handler` for its class (or a base class); one with no such
  handler reaches the server, which answers 500. A method the path does not serve is refused by
  the handler for `HTTPException`, with status 405 and every method the path serves in `Allow`.

Routes served directly are declared where their endpoints live on a `DirectRouter`, as FastAPI's
are on an `APIRouter`, and the app takes them with `include_direct_router`.
"""

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from fastapi.routing import APIRoute
from hookhub import tracing
from starlette.applications import Starlette
from starlette.convertors import Convertor
from starlette.datastructures import QueryParams
from starlette.requests import ClientDisconnect
from starlette.routing import get_route_path
from starlette.types import Receive, Scope, Send

from hub_api.metrics import REQUEST_SECONDS

NO_QUERY = QueryParams()
# The whole body must arrive within this long. Behind Kong (which buffers a request before
# proxying it) a body comes at once; a client that announces more than it sends would otherwise
# hold a task and its buffer until it gives up, minutes later.
BODY_READ_TIMEOUT_S = 5.0


class BodyTooLarge(Exception):
    """The request's body is (or says it is) larger than the limit it was read with."""


class BodyTooSlow(Exception):
    """The request's body did not arrive whole within `BODY_READ_TIMEOUT_S`."""


class DirectRequest:
    """What a route served directly reads of its request, straight from the ASGI scope."""

    __slots__ = ("scope", "path_params", "headers", "_receive")

    def __init__(self, scope: Scope, receive: Receive, path_params: dict[str, Any]) -> None:
        self.scope = scope
        self.path_params = path_params
        # Decoded once, by name: ASGI servers give names lower-cased, and the first of a repeated
        # header wins, as with Starlette's `Headers.get`.
        self.headers: dict[str, str] = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in reversed(scope["headers"])
        }
        self._receive = receive

    @property
    def app(self) -> Starlette:
        """The app serving the request (its state is `request.app.state`)."""
        return self.scope["app"]

    @property
    def path(self) -> str:
        return self.scope["path"]

    @property
    def query(self) -> QueryParams:
        """The query string's parameters; the last of a repeated one wins a lookup."""
        query_string = self.scope["query_string"]
        return QueryParams(query_string) if query_string else NO_QUERY

    @property
    def target(self) -> str:
        """The path and raw query string as sent (for schemes that sign the URL)."""
        target = self.scope["raw_path"].decode("latin-1")
        if query_string := self.scope["query_string"]:
            target += "?" + query_string.decode("latin-1")
        return target

    async def body(self, limit_bytes: int) -> bytes:
        """The whole body; `BodyTooLarge` as soon as it is known to exceed `limit_bytes`.

        Enforced while reading: a client lying about (or omitting) Content-Length still cannot
        make us buffer more than the limit. `ClientDisconnect` if the client leaves first,
        `BodyTooSlow` if the body is not whole within `BODY_READ_TIMEOUT_S`.
        """
        declared = self.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit_bytes:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(BODY_READ_TIMEOUT_S):
                while True:
                    message = await self._receive()
                    if message["type"] == "http.request":
                        chunk = message.get("body", b"")
                        size += len(chunk)
                        if size > limit_bytes:
                            raise BodyTooLarge
                        chunks.append(chunk)
                        if not message.get("more_body", False):
                            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
                    elif message["type"] == "http.disconnect":
                        raise ClientDisconnect
        except TimeoutError:
            raise BodyTooSlow from None


@dataclass(frozen=True, slots=True)
class Reply:
    """An answer from a route served directly, sent as Starlette's `Response` would send it: the
    headers given, then `content-length` and `content-type` (`; charset=utf-8` on a text type),
    so that a client gets the same bytes either way."""

    status: int
    body: bytes
    media_type: str
    headers: Mapping[str, str] | None = None

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        headers = self.headers or {}
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        given = {name for name, _ in raw}
        if b"content-length" not in given and self.status >= 200 and self.status not in (204, 304):
            raw.append((b"content-length", str(len(self.body)).encode()))
        if b"content-type" not in given:
            raw.append((b"content-type", _content_type(self.media_type)))
        return raw


@functools.cache
def _content_type(media_type: str) -> bytes:
    if media_type.startswith("text/") and "charset=" not in media_type.lower():
        media_type += "; charset=utf-8"
    return media_type.encode("latin-1")


DirectEndpoint = Callable[[DirectRequest], Awaitable[Reply]]
DirectHandler = Callable[[DirectRequest, Any], Reply]


@dataclass(frozen=True, slots=True)
class _Declaration:
    path: str
    method: str
    declared: dict[str, Any]
    endpoint: DirectEndpoint


class DirectRouter:
    """Routes to serve directly, declared apart from any app (as on FastAPI's `APIRouter`) and
    served by each app that includes them with `HubApi.include_direct_router`."""

    def __init__(self) -> None:
        self.declarations: list[_Declaration] = []

    def serve_directly(
        self, path: str, method: str, **declared: Any
    ) -> Callable[[DirectEndpoint], DirectEndpoint]:
        """Decorator, as `HubApi.serve_directly`, for the apps that will include this router."""

        def register(endpoint: DirectEndpoint) -> DirectEndpoint:
            self.declarations.append(_Declaration(path, method, declared, endpoint))
            return endpoint

        return register


@dataclass(frozen=True, slots=True)
class _DirectRoute:
    path: str  # the template, e.g. /webhooks/{provider}: the metrics' route label
    path_regex: re.Pattern[str]
    convertors: dict[str, Convertor[Any]]
    methods: frozenset[str]
    endpoint: DirectEndpoint


class HubApi(FastAPI):
    """FastAPI, with `serve_directly` for the routes that must cost the least per request."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._direct_routes: list[_DirectRoute] = []
        self._direct_handlers: dict[type[Exception], DirectHandler] = {}

    def serve_directly(
        self, path: str, method: str, **declared: Any
    ) -> Callable[[DirectEndpoint], DirectEndpoint]:
        """Decorator, as `@app.post(path, **declared)` would be: the route is declared with
        FastAPI for the OpenAPI document (its operation named and described by the endpoint's
        name and docstring) and served without FastAPI's machinery."""

        def register(endpoint: DirectEndpoint) -> DirectEndpoint:
            self.add_api_route(path, _declared(endpoint), methods=[method], **declared)
            route = self.router.routes[-1]
            assert isinstance(route, APIRoute)
            methods = frozenset(route.methods or ())
            self._direct_routes.append(
                _DirectRoute(
                    route.path, route.path_regex, route.param_convertors, methods, endpoint
                )
            )
            return endpoint

        return register

    def include_direct_router(self, router: DirectRouter) -> None:
        """Serve the router's routes directly, in the order they were declared."""
        for route in router.declarations:
            self.serve_directly(route.path, route.method, **route.declared)(route.endpoint)

    def add_direct_exception_handler(
        self, exc_class: type[Exception], handler: DirectHandler
    ) -> None:
        """`handler(request, exc) -> Reply` answers `exc_class` (and its subclasses) raised by a
        route served directly."""
        self._direct_handlers[exc_class] = handler

    def direct_exception_handler(
        self, exc_class: type[Exception]
    ) -> Callable[[DirectHandler], DirectHandler]:
        """Decorator form of `add_direct_exception_handler`."""

        def register(handler: DirectHandler) -> DirectHandler:
            self.add_direct_exception_handler(exc_class, handler)
            return handler

        return register

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope["app"] = self  # as Starlette sets it, for `DirectRequest.app`
            route_path = get_route_path(scope)
            allowed: set[str] = set()
            for route in self._direct_routes:
                match = route.path_regex.match(route_path)
                if match is None:
                    continue
                if scope["method"] in route.methods:
                    params = {
                        name: route.convertors[name].convert(value)
                        for name, value in match.groupdict().items()
                    }
                    started = time.perf_counter()
                    request = DirectRequest(scope, receive, params)
                    if tracing.on():
                        status = await self._serve_traced(route, request, send)
                    else:
                        status = await self._serve(route.endpoint, request, send)
                    # As a timing middleware would, which these routes do not pass through.
                    REQUEST_SECONDS.labels(route.path, str(status)).observe(
                        time.perf_counter() - started
                    )
                    return
                allowed |= route.methods  # the path, with another method
            if allowed:
                # Starlette would name only the first route's methods; one path may have several.
                error = HTTPException(
                    405, "Method Not Allowed", {"Allow": ", ".join(sorted(allowed))}
                )
                await self._answer_error(DirectRequest(scope, receive, {}), error, send)
                return
        await super().__call__(scope, receive, send)

    async def _serve_traced(self, route: _DirectRoute, request: DirectRequest, send: Send) -> int:
        method, path = request.scope["method"], request.path
        with tracing.serving(method, route.path, path, request.headers) as span:
            status = await self._serve(route.endpoint, request, send)
            tracing.answered(span, status)
            return status

    async def _serve(self, endpoint: DirectEndpoint, request: DirectRequest, send: Send) -> int:
        """Answer the request; the status answered."""
        try:
            reply = await endpoint(request)
        except Exception as exc:
            return await self._answer_error(request, exc, send)
        await _send(send, reply)
        return reply.status

    async def _answer_error(self, request: DirectRequest, exc: Exception, send: Send) -> int:
        for cls in type(exc).__mro__:
            if (handler := self._direct_handlers.get(cls)) is not None:
                reply = handler(request, exc)
                await _send(send, reply)
                return reply.status
        raise exc


def _declared(endpoint: DirectEndpoint) -> Callable[[], Awaitable[Response]]:
    """What FastAPI is given for a route served directly: the endpoint's name and docstring, and
    no parameters or return type of its own to read (the declaration documents them)."""

    async def declared() -> Response:
        raise RuntimeError(f"{endpoint.__name__} is served directly, never through FastAPI")

    declared.__name__ = endpoint.__name__
    declared.__qualname__ = endpoint.__qualname__
    declared.__doc__ = endpoint.__doc__
    return declared


async def _send(send: Send, reply: Reply) -> None:
    await send(
        {"type": "http.response.start", "status": reply.status, "headers": reply.raw_headers()}
    )
    await send({"type": "http.response.body", "body": reply.body})
