"""The publisher API: route → verify → publish, and the probes.

A `202` means the broker has confirmed the event durably. A 4xx means nothing was published:
fix the request. A 503 (+ Retry-After) means it was not confirmed: send it again with the same
id (a confirm that timed out may still land; the consumers drop the repeat by its id).
"""

import base64
import binascii
import functools
import gc
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.routing import APIRoute
from hookhub import events
from hookhub.broker import Broker, BrokerUnavailable
from hookhub.events import Event
from hookhub.observability import log
from hookhub.providers import (
    PROVIDERS,
    SignatureError,
    SignedRequest,
    body_hash_id,
    locate,
    needs_json,
)
from hookhub.settings import Settings
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

GATEWAY_SECRET_HEADER = "x-hookhub-gateway-secret"
CONSUMER_HEADER = "x-consumer-username"
CORRELATION_HEADER = "x-correlation-id"
WEBHOOK_MEDIA_TYPES = ("application/json",)
EVENT_MEDIA_TYPES = ("application/cloudevents+json", "application/json")
# message_id, correlation_id and content_type are AMQP short strings; a longer one cannot be sent.
MAX_SHORT_STRING_BYTES = 255

REQUESTS = Counter(
    "hookhub_requests_total",
    "Ingest requests by route, provider and status",
    ["route", "provider", "status"],
)
PUBLISH_SECONDS = Histogram(
    "hookhub_publish_seconds",
    "Time from publish to the broker's confirm",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


@functools.cache
def _requests(route: str, provider: str, status: str) -> Counter:
    """The labelled counter, looked up once per label set rather than on every request."""
    return REQUESTS.labels(route, provider, status)


class Accepted(BaseModel):
    id: str = Field(description="The event id: the provider's own where it has one")
    type: str = Field(description="The CloudEvents type, which is also the routing key")


class CloudEventIn(BaseModel):
    """An internal event, CloudEvents JSON (structured mode). `source` is ignored: Hookhub sets it
    from the authenticated caller."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=events.new_event_id, min_length=1, max_length=200)
    type: str
    subject: str | None = None
    datacontenttype: str = events.JSON
    data: Any = None
    data_base64: str | None = None

    @field_validator("type")
    @classmethod
    def _type_is_a_routing_key(cls, value: str) -> str:
        if not events.is_valid_type(value):
            raise ValueError("type must be dot-separated words of letters, digits, '_' or '-'")
        return value


class Rejected(HTTPException):
    """A 4xx or 503 answer; `event_id` is the event's, once the request got as far as one."""

    def __init__(
        self, status: int, detail: str, headers: dict[str, str] | None, event_id: str | None
    ):
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.event_id = event_id


def _reject(status: int, detail: str, event_id: str | None = None, **headers: str) -> Rejected:
    return Rejected(status, detail, headers or None, event_id)


def _unsendable(event: Event) -> str | None:
    """Why the event's strings cannot go out as AMQP properties, if they cannot."""
    for name, value, limit in (
        ("event id", event.id, MAX_SHORT_STRING_BYTES),
        ("correlation id", event.correlation_id, MAX_SHORT_STRING_BYTES),
        ("content type", event.content_type, MAX_SHORT_STRING_BYTES),
        ("subject", event.subject, None),
    ):
        if not value:
            continue
        try:
            size = len(value.encode())
        except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape
            return f"{name} is not valid Unicode"
        if limit is not None and size > limit:
            return f"{name} is longer than the {limit} bytes AMQP allows"
    return None


def _event_data(cloud_event: CloudEventIn) -> bytes:
    """The message body: `data_base64` decoded, JSON `data` serialised, or text `data` as is."""
    if cloud_event.data_base64 is not None:
        if cloud_event.data is not None:
            raise _reject(422, "send data or data_base64, not both", event_id=cloud_event.id)
        try:
            return base64.b64decode(cloud_event.data_base64, validate=True)
        except binascii.Error:
            raise _reject(422, "data_base64 is not valid base64", event_id=cloud_event.id) from None
    if cloud_event.datacontenttype.split(";")[0].strip().endswith("json"):
        try:
            return json.dumps(cloud_event.data, separators=(",", ":"), allow_nan=False).encode()
        except ValueError:  # NaN or Infinity, which JSON has no way to say
            raise _reject(
                422, "data holds a number JSON cannot represent", event_id=cloud_event.id
            ) from None
    if isinstance(cloud_event.data, str):
        return cloud_event.data.encode()
    raise _reject(
        422, "data must be a string unless datacontenttype is JSON", event_id=cloud_event.id
    )


def _event_content_type(cloud_event: CloudEventIn) -> str:
    """The datacontenttype sent; for data_base64 without one, bytes of no known type."""
    if (
        cloud_event.data_base64 is not None
        and "datacontenttype" not in cloud_event.model_fields_set
    ):
        return "application/octet-stream"
    return cloud_event.datacontenttype


def _headers(request: Request) -> dict[str, str]:
    """The request's headers, decoded once, by lower-case name; the first of a repeated one wins.

    ASGI servers give names lower-cased; what every check below reads comes from this one dict.
    """
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in reversed(request.scope["headers"])
    }


def _media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _read_body(request: Request, headers: Mapping[str, str], limit_bytes: int) -> bytes:
    # Enforced while reading: a client lying about (or omitting) Content-Length still cannot make
    # us buffer more than the limit.
    too_large = _reject(413, f"body is larger than {limit_bytes} bytes")
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit_bytes:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


Endpoint = Callable[..., Any]


class HubApi(FastAPI):
    """FastAPI, except that the ingest routes are called straight from the server.

    Each ingest route is still declared once, with FastAPI, which builds the OpenAPI document from
    it. But FastAPI's per-request machinery (its middleware stack, router and dependency solver)
    was most of hub-api's CPU per event, so a route marked with `serve_directly` is matched here
    first and its endpoint awaited with a plain `Request`; a rejection it raises is answered by
    the app's own `HTTPException` handler, as FastAPI would. Everything else goes through FastAPI.
    """

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
            for route in self._routes_served_directly():
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    scope["app"] = self
                    await self._serve(route, Request(scope, receive), send)
                    return
        await super().__call__(scope, receive, send)

    async def _serve(self, route: APIRoute, request: Request, send: Send) -> None:
        try:
            response = await route.endpoint(request=request, **request.path_params)
        except HTTPException as exc:
            response = await self.exception_handlers[HTTPException](request, exc)
        await response(request.scope, request.receive, send)


def create_app(settings: Settings) -> HubApi:
    """The ASGI app. With `settings.gateway_secret` unset, requests are not checked for it (dev)."""
    broker = Broker(settings)
    gateway_secret = (
        settings.gateway_secret.get_secret_value().encode()
        if settings.gateway_secret is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await broker.start()
        await broker.wait_ready(settings.connect_timeout_s)
        # What start-up built (FastAPI, pydantic models, every import) lives as long as the process.
        # Frozen out of the collector, it is no longer walked by each full collection: those
        # walks were pauses of tens of ms that made most of the p99 under load.
        gc.collect()
        gc.freeze()
        yield
        await broker.close()

    app = HubApi(
        title="Hookhub",
        version="0.1.0",
        summary="One door for webhooks and internal events; answers once RabbitMQ confirmed.",
        lifespan=lifespan,
    )
    app.state.broker = broker

    def through_gateway(headers: Mapping[str, str]) -> str | None:
        """Checks the secret Kong injects; returns the caller Kong authenticated."""
        if gateway_secret is not None:
            given = headers.get(GATEWAY_SECRET_HEADER, "").encode()
            if not hmac.compare_digest(given, gateway_secret):
                raise _reject(401, "request did not come through the gateway")
        return headers.get(CONSUMER_HEADER)

    async def publish(event: Event, route: str, provider: str) -> Response:
        if problem := _unsendable(event):
            raise _reject(422, problem, event_id=event.id)
        # The ids go on the lines themselves rather than through bound context vars: nothing
        # else logs while an event is published, and binding cost more than the line itself.
        ids = {"event_id": event.id, "correlation_id": event.correlation_id, "type": event.type}
        started = time.perf_counter()
        try:
            await broker.publish(event)
        except BrokerUnavailable as exc:
            _requests(route, provider, "503").inc()
            log.warning("event.not_published", reason=str(exc), **ids)
            raise _reject(
                503,
                "the event was not accepted: the message broker is unavailable; retry later",
                event_id=event.id,
                **{"Retry-After": str(settings.retry_after_s)},
            ) from None
        PUBLISH_SECONDS.observe(time.perf_counter() - started)
        _requests(route, provider, "202").inc()
        log.info("event.accepted", provider=provider, **ids)
        body = Accepted(id=event.id, type=event.type).model_dump_json()
        return Response(
            body,
            status_code=202,
            media_type="application/json",
            headers={CORRELATION_HEADER: event.correlation_id or ""},
        )

    @app.exception_handler(HTTPException)
    async def count_rejections(request: Request, exc: HTTPException) -> Response:
        if exc.status_code != 503:
            route = "webhooks" if request.url.path.startswith("/webhooks") else "events"
            provider = request.path_params.get("provider", "-")
            _requests(route, provider if provider in PROVIDERS else "-", str(exc.status_code)).inc()
            log.info(
                "request.rejected",
                status=exc.status_code,
                detail=exc.detail,
                path=request.url.path,
                event_id=getattr(exc, "event_id", None),
                correlation_id=request.headers.get(CORRELATION_HEADER),
            )
        return Response(
            json.dumps({"detail": exc.detail}),
            status_code=exc.status_code,
            media_type="application/json",
            headers=exc.headers,
        )

    @app.serve_directly
    @app.post(
        "/webhooks/{provider}",
        status_code=202,
        response_model=Accepted,
        responses={
            401: {"description": "not through the gateway, or missing, wrong or stale signature"},
            404: {"description": "unknown or unconfigured provider"},
            413: {"description": "body over the size limit"},
            415: {"description": "not application/json"},
            422: {"description": "no event type in the payload, or an id too long for AMQP"},
            503: {"description": "not confirmed by the broker: send again with the same id"},
        },
    )
    async def receive_webhook(provider: str, request: Request) -> Response:
        """Verify a provider's webhook by its own signature scheme and publish it byte-for-byte.

        The event type is `<provider>.<the provider's event type>` and is also the routing key.
        """
        headers = _headers(request)
        through_gateway(headers)
        spec = PROVIDERS.get(provider)
        if spec is None:
            raise _reject(404, f"unknown provider '{provider}'; known: {', '.join(PROVIDERS)}")
        secret = settings.provider_secret(provider)
        if secret is None:
            raise _reject(
                404,
                f"provider '{provider}' is not enabled here: set HOOKHUB_SECRET_{provider.upper()}",
            )
        if _media_type(headers) not in WEBHOOK_MEDIA_TYPES:
            raise _reject(415, f"{provider} webhooks must be sent as application/json")
        body = await _read_body(request, headers, settings.max_body_bytes)
        try:
            spec.verify(
                SignedRequest(headers, request.query_params, body),
                secret,
                settings.timestamp_tolerance_s,
            )
        except SignatureError as exc:
            raise _reject(401, f"signature rejected: {exc}") from None
        payload: Any = None
        if needs_json(spec):
            try:
                payload = json.loads(body)
            except (ValueError, RecursionError):  # RecursionError: nested past Python's limit
                raise _reject(400, "body is not valid JSON") from None
        provider_type = locate(spec.event_type, headers, payload)
        if provider_type is None:
            raise _reject(422, f"no event type found at {spec.event_type}")
        event_type = f"{provider}.{provider_type}"
        if not events.is_valid_type(event_type):
            raise _reject(422, f"event type '{event_type}' is not a valid routing key")
        event = Event(
            id=locate(spec.event_id, headers, payload) or body_hash_id(body),
            source=f"/webhooks/{provider}",
            type=event_type,
            data=body,
            content_type=events.JSON,
            correlation_id=headers.get(CORRELATION_HEADER) or str(uuid.uuid4()),
            traceparent=headers.get("traceparent"),
        )
        return await publish(event, "webhooks", provider)

    @app.serve_directly
    @app.post(
        "/events",
        status_code=202,
        response_model=Accepted,
        responses={
            401: {"description": "not through the gateway"},
            403: {"description": "the type is reserved for Hookhub's own consumers"},
            413: {"description": "body over the size limit"},
            415: {"description": "not CloudEvents JSON"},
            422: {"description": "not a valid CloudEvent"},
            503: {"description": "not confirmed by the broker: send again with the same id"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    m: {"schema": CloudEventIn.model_json_schema()} for m in EVENT_MEDIA_TYPES
                },
            }
        },
    )
    async def receive_event(request: Request) -> Response:
        """Publish an internal event given as CloudEvents JSON (structured mode).

        The event's source is the caller Kong authenticated (`/events/<consumer>`), never what
        the body claims. Types emitted by Hookhub's consumers (`payment.*`, `order.ready`, ...)
        and provider namespaces (`stripe.*`, ...) are refused.
        """
        headers = _headers(request)
        caller = through_gateway(headers)
        if gateway_secret is not None and not caller:
            raise _reject(401, "no authenticated caller: the gateway sent no X-Consumer-Username")
        if _media_type(headers) not in EVENT_MEDIA_TYPES:
            raise _reject(415, "events must be sent as application/cloudevents+json")
        body = await _read_body(request, headers, settings.max_body_bytes)
        try:
            cloud_event = CloudEventIn.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise _reject(422, f"not a valid CloudEvent: {problems}") from None
        namespace = cloud_event.type.split(".", 1)[0]
        if events.is_reserved(cloud_event.type) or namespace in PROVIDERS:
            raise _reject(
                403,
                f"type '{cloud_event.type}' is reserved for Hookhub's own events",
                event_id=cloud_event.id,
            )
        data = _event_data(cloud_event)
        event = Event(
            id=cloud_event.id,
            source=f"/events/{caller or 'anonymous'}",
            type=cloud_event.type,
            data=data,
            content_type=_event_content_type(cloud_event),
            subject=cloud_event.subject,
            correlation_id=headers.get(CORRELATION_HEADER) or str(uuid.uuid4()),
            traceparent=headers.get("traceparent"),
        )
        return await publish(event, "events", "-")

    @app.get("/livez", tags=["probes"])
    async def livez() -> dict[str, str]:
        """The process is up and serving."""
        return {"status": "alive"}

    @app.get("/readyz", tags=["probes"], responses={503: {"description": "broker not usable"}})
    async def readyz() -> Response:
        """Ready while the broker connection and channel are usable and confirms arrive."""
        ready = await broker.check()
        return Response(
            json.dumps({"status": "ready" if ready else "broker unavailable"}),
            status_code=200 if ready else 503,
            media_type="application/json",
        )

    @app.get("/metrics", tags=["probes"])
    async def metrics() -> Response:
        """Prometheus metrics: requests, publish latency, broker state."""
        _ = broker.ready  # refreshes the broker gauge
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
