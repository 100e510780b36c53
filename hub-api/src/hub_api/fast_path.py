"""`HubApi`: FastAPI, except that the routes marked `serve_directly` are called straight from the
server.

Why: FastAPI's per-request machinery (its middleware stack, router and dependency solver) was most
of hub-api's CPU per event, so the ingest routes skip it. Each is still declared once with FastAPI,
which builds the OpenAPI document from it, and every other route goes through FastAPI as usual.

What a route served directly does NOT get, so that nothing added later is silently skipped on it:
- Middleware of any kind: `app.add_middleware(...)`, `@app.middleware("http")`, and Starlette's own
  error middleware. CORS, GZip, tracing, timing or a request id added that way apply only to the
  other routes; give the ingest routes the same in their endpoint, or drop `serve_directly`.
- Dependencies and parameter parsing: the endpoint is awaited as `endpoint(request=<Request>)`
  and reads its path parameters from `request.path_params`. `Depends(...)`, `dependencies=[...]`
  on the route or router, and path, query, header and body parameters are neither solved nor
  validated (so they are documented by the route's `openapi_extra`, not its signature).
- Response handling: the endpoint must return a `Response`; `response_model` and `status_code`
  only document it.
- Error handling: an exception it raises is answered by the app's exception handler for its class
  (or a base class), as Starlette would; one with no handler reaches the server, which answers 500.
"""

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

Endpoint = Callable[..., Any]


class HubApi(FastAPI):
    """FastAPI, with `serve_directly` for the routes that must cost the least per request."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._direct_endpoints: list[Endpoint] = []
        self._direct_routes: list[APIRoute] | None = None

    def serve_directly(self, endpoint: Endpoint) -> Endpoint:
        """Decorator, above `@app.post(...)`: serve this route without FastAPI's machinery."""
        self._direct_endpoints.append(endpoint)
        self._direct_routes = None
        return endpoint

    def _routes_served_directly(self) -> list[APIRoute]:
        if self._direct_routes is None:
            self._direct_routes = [
                route
                for route in self.router.routes
                if isinstance(route, APIRoute) and route.endpoint in self._direct_endpoints
            ]
        return self._direct_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            allowed: set[str] = set()
            for route in self._routes_served_directly():
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    scope["app"] = self
                    await self._serve(route, Request(scope, receive), send)
                    return
                if match is Match.PARTIAL:  # the path, with another method
                    allowed |= route.methods or set()
            if allowed:
                # Starlette would name only the first route's methods; one path may have several.
                await self._refuse_method(scope, receive, send, allowed)
                return
        await super().__call__(scope, receive, send)

    async def _refuse_method(
        self, scope: Scope, receive: Receive, send: Send, allowed: set[str]
    ) -> None:
        scope["app"] = self
        request = Request(scope, receive)
        error = HTTPException(405, "Method Not Allowed", {"Allow": ", ".join(sorted(allowed))})
        handler = self._exception_handler(error)
        if handler is None:
            raise error
        response = await handler(request, error)
        await response(scope, receive, send)

    async def _serve(self, route: APIRoute, request: Request, send: Send) -> None:
        try:
            response = await route.endpoint(request=request)
        except Exception as exc:
            handler = self._exception_handler(exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(request.scope, request.receive, send)

    def _exception_handler(self, exc: Exception) -> Callable[..., Any] | None:
        for cls in type(exc).__mro__:
            if cls in self.exception_handlers:
                return self.exception_handlers[cls]
        return None
