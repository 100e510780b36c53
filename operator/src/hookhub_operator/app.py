"""The operator service's wiring: the API and console routers, the event log and broker they
share, the answers to expected failures, and the probes. Pages and queries live in their own
modules."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from hookhub import dlq, gateway
from hookhub.addresses import CONNECT_ERRORS
from hookhub.logs import log
from hookhub.settings import Settings
from hookhub_endpoints.model import EndpointError
from hookhub_endpoints.registry import open_registry
from hookhub_eventlog.journey import SharedId
from hookhub_eventlog.people import ForgottenEvent
from hookhub_eventlog.store import EventQuery, open_event_log
from hookhub_eventlog.store.base import BadPattern, SearchTooSlow
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hookhub_operator import (
    api,
    console,
    csrf,
    endpoints,
    endpoints_api,
    endpoints_console,
    people,
)
from hookhub_operator.auth import Refused
from hookhub_operator.deps import BrokerDown, BrokerLink, OperatorDep, Service
from hookhub_operator.reads import BadFilter, NotFound

API_PREFIX = "/api"
PROBES = ("/livez", "/readyz", "/metrics")
# Refusals after which the rest of the request is not read: the connection is closed.
CLOSING = (408, 413)


class SecurityHeaders:
    """The console's security headers (`console.SECURITY_HEADERS`: its CSP first) on every
    answer, pages, JSON, errors and docs alike, where a route set none of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [
            (name.lower().encode(), value.encode())
            for name, value in console.SECURITY_HEADERS.items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                given = {name for name, _ in message.get("headers", [])}
                missing = [(n, v) for n, v in self.headers if n not in given]
                message = {**message, "headers": [*message.get("headers", []), *missing]}
            await send(message)

        await self.app(scope, receive, send_secured)


def _answer(request: Request, status: int, detail: str) -> Response:
    """JSON for the API, a page for the console."""
    path = request.url.path
    headers = {"connection": "close"} if status in CLOSING else {}
    if path.startswith(API_PREFIX) or path in PROBES:
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)
    operator = getattr(request.state, "operator", None)
    page = console.page(request, "error.html", operator, status, status=status, detail=detail)
    page.headers.update(headers)
    return page


def _with_kong_security(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, saying how a client authenticates: Kong's key, in `apikey`."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "kong": {
                "type": "apiKey",
                "in": "header",
                "name": "apikey",
                "description": "The Kong key of a consumer in the `operators` or "
                "`operators-readonly` group (Kong checks it and names the caller to this service)",
            }
        }
        schema["security"] = [{"kong": []}]
        app.openapi_schema = schema
    return app.openapi_schema


def create_app(settings: Settings, *, providers_known: bool | None = None) -> FastAPI:
    """The ASGI app. With `settings.gateway_secret` unset, requests are not checked for it (dev).
    `providers_known`: whether this process sees the providers' secrets (default: when any is
    set), so that the providers page can say which are enabled."""
    secret = gateway.gateway_secret(settings)
    csrf_key = csrf.key_of(settings)  # CsrfKeyMissing behind the gateway without one: at start

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        link = BrokerLink(settings.amqp_url, settings.connect_timeout_s)
        event_log = open_event_log(settings.store_url)
        app.state.service = Service(
            settings=settings,
            event_log=event_log,
            broker=link,
            gateway_secret=secret,
            csrf_key=csrf_key,
            providers_known=(
                bool(settings.provider_secrets) if providers_known is None else providers_known
            ),
        )
        app.state.endpoint_registry = open_registry(settings)  # outbound endpoints
        yield
        await app.state.endpoint_registry.close()
        await link.close()
        await event_log.close()

    app = FastAPI(
        title="Hookhub operator API",
        version="0.1.0",
        summary="The event log's read API: find events, read them back, follow their journey, "
        "look into parking lots; and the outbound endpoints, read and managed. Reached through "
        "Kong's /operator route.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN: ours is served below
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    app.openapi = lambda: _with_kong_security(app)  # type: ignore[method-assign]
    app.add_middleware(SecurityHeaders)
    app.include_router(api.router)
    app.include_router(console.router)
    # People (#24): a person's API, page and forget.
    app.include_router(people.api)
    app.include_router(people.pages)

    @app.exception_handler(ForgottenEvent)
    async def forgotten(request: Request, exc: ForgottenEvent) -> Response:
        return _answer(request, 410, str(exc))

    # Outbound endpoints (hookhub_endpoints): their API, console pages and refusals.
    app.include_router(endpoints_api.router)
    app.include_router(endpoints_console.router)
    app.add_exception_handler(EndpointError, lambda r, e: _answer(r, 422, str(e)))
    app.add_exception_handler(endpoints.NameTaken, lambda r, e: _answer(r, 409, str(e)))

    @app.get(f"{API_PREFIX}/docs", include_in_schema=False, response_class=HTMLResponse)
    async def api_docs(request: Request, operator: OperatorDep) -> Response:
        """The read API's operations on a console page (no script, nothing from elsewhere), and
        its OpenAPI document at the prefix Kong's route adds."""
        return console.page(
            request, "api_docs.html", operator, document=app.openapi(), api_prefix=API_PREFIX
        )

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return _answer(request, exc.status, exc.detail)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return _answer(request, 404, str(exc))

    @app.exception_handler(SharedId)
    async def shared_id(request: Request, exc: SharedId) -> Response:
        """The API lists the events with the id (409); the console lets the operator choose."""
        if request.url.path.startswith(API_PREFIX):
            events = [api.EventOut.of(e).model_dump(mode="json") for e in exc.events]
            return JSONResponse({"detail": str(exc), "events": events}, status_code=409)
        operator = getattr(request.state, "operator", None)
        return console.page(
            request, "shared_id.html", operator, 409, event_id=exc.event_id, events=exc.events
        )

    @app.exception_handler(BadFilter)
    async def bad_filter(request: Request, exc: BadFilter) -> Response:
        return _answer(request, 422, str(exc))

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, exc: ClientDisconnect) -> Response:
        # An operator's browser that gave up on a form: ordinary, and the answer goes nowhere.
        log.info("request.client_left", path=request.url.path)
        return Response(status_code=400)

    @app.exception_handler(BadPattern)
    async def bad_pattern(request: Request, exc: BadPattern) -> Response:
        return _answer(request, 422, str(exc))

    @app.exception_handler(SearchTooSlow)
    async def too_slow(request: Request, exc: SearchTooSlow) -> Response:
        return _answer(request, 503, str(exc))

    @app.exception_handler(dlq.ReplayFailed)
    async def replay_failed(request: Request, exc: dlq.ReplayFailed) -> Response:
        return _answer(request, 503, str(exc))

    async def broker_down(request: Request, exc: Exception) -> Response:
        detail = str(exc) if isinstance(exc, BrokerDown) else "RabbitMQ did not answer; try again"
        return _answer(request, 503, detail)

    for error in (BrokerDown, *CONNECT_ERRORS):
        app.add_exception_handler(error, broker_down)

    @app.exception_handler(aio_pika.exceptions.ChannelNotFoundEntity)
    async def queue_missing(request: Request, exc: Exception) -> Response:
        return _answer(request, 503, f"{exc}: run `hookhub topology declare`")

    @app.get("/livez", include_in_schema=False)
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        """Ready while the broker answers and the event log can be read."""
        service: Service = request.app.state.service
        try:
            await service.broker.connection()
            await service.event_log.find_events(EventQuery(limit=1))
        except Exception as error:  # any failure means not ready; the reason is in the answer
            body = {"status": "not ready", "reason": type(error).__name__}
            return Response(json.dumps(body), status_code=503, media_type="application/json")
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
