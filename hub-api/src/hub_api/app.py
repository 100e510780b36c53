"""hub-api's HTTP side: route → gateway check → body → `ingest` (verify, build the event) → publish.

A `202` means the broker has confirmed the event durably. A 4xx means nothing was published:
fix the request. A 503 (+ Retry-After) means it was not confirmed: send it again with the same
id (a confirm that timed out may still land; the consumers drop the repeat by its id).
"""

import functools
import gc
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Response
from hookhub import gateway, tracing
from hookhub.broker import Broker, BrokerUnavailable
from hookhub.events import JSON, Event
from hookhub.gateway import CONSUMER_HEADER
from hookhub.observability import log
from hookhub.providers import PROVIDERS
from hookhub.settings import Settings
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from hub_api import ingest, openapi, webhooks
from hub_api.fast_path import BodyTooLarge, DirectRequest, HubApi, Reply
from hub_api.headers import CORRELATION_HEADER, EVENT_ID_HEADER, header_value
from hub_api.openapi import Accepted
from hub_api.rejections import Rejected
from hub_api.webhooks import Answer

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


async def _read_body(request: DirectRequest, limit_bytes: int) -> bytes:
    try:
        return await request.body(limit_bytes)
    except BodyTooLarge:
        raise Rejected(413, f"body is larger than {limit_bytes} bytes") from None


def _refusal(
    request: DirectRequest,
    status: int,
    detail: Any,
    headers: Mapping[str, str] | None,
    event_id: str | None,
) -> Reply:
    """Every 4xx and 503 answer, counted and logged (a 503 was already, where publish failed)."""
    if status != 503:
        route = "webhooks" if request.path.startswith("/webhooks") else "events"
        provider = request.path_params.get("provider", "-")
        _requests(route, provider if provider in PROVIDERS else "-", str(status)).inc()
        log.info(
            "request.rejected",
            status=status,
            detail=detail,
            path=request.path,
            event_id=event_id,
            correlation_id=request.headers.get(CORRELATION_HEADER),
        )
    return Reply(status, json.dumps({"detail": detail}).encode(), JSON, headers)


def _answer(request: DirectRequest, provider: str, answer: Answer) -> Reply:
    """A handshake's answer, counted and logged; nothing was published."""
    _requests("webhooks", provider, str(answer.status)).inc()
    log.info("handshake.answered", provider=provider, path=request.path)
    return Reply(answer.status, answer.body, answer.media_type)


def create_app(settings: Settings) -> HubApi:
    """The ASGI app. With `settings.gateway_secret` unset, requests are not checked for it (dev)."""
    broker = Broker(settings)
    secret = gateway.gateway_secret(settings)

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
        tracing.flush()  # uvicorn re-raises the stop signal: exit handlers would not run

    app = HubApi(
        # FastAPI's own telemetry would trace the probes and /metrics once a provider is set;
        # the ingest routes get their spans on the fast path.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="Hookhub",
        version="0.1.0",
        summary="One door for webhooks and internal events; answers once RabbitMQ confirmed.",
        lifespan=lifespan,
    )
    app.state.broker = broker

    def through_gateway(headers: Mapping[str, str]) -> str | None:
        """Checks the secret Kong injects; returns the caller Kong authenticated."""
        if secret is not None and not gateway.came_through_gateway(headers, secret):
            raise Rejected(401, "request did not come through the gateway")
        return headers.get(CONSUMER_HEADER)

    async def publish(
        event: Event, route: str, provider: str, answer: Answer | None = None
    ) -> Reply:
        # The ids go on the lines themselves rather than through bound context vars: nothing
        # else logs while an event is published, and binding cost more than the line itself.
        ids = {"event_id": event.id, "correlation_id": event.correlation_id, "type": event.type}
        started = time.perf_counter()
        try:
            await broker.publish(event)
        except BrokerUnavailable as exc:
            _requests(route, provider, "503").inc()
            log.warning("event.not_published", reason=str(exc), **ids)
            raise Rejected(
                503,
                "the event was not accepted: the message broker is unavailable; retry later",
                event_id=event.id,
                headers={"Retry-After": str(settings.retry_after_s)},
            ) from None
        PUBLISH_SECONDS.observe(time.perf_counter() - started)
        _requests(route, provider, "202").inc()
        log.info("event.accepted", provider=provider, **ids)
        headers = {CORRELATION_HEADER: event.correlation_id or ""}
        if answer is not None:  # the platform needs an answer of its own (Discord, Twilio, ...)
            headers[EVENT_ID_HEADER] = header_value(event.id)
            return Reply(answer.status, answer.body, answer.media_type, headers)
        body = Accepted(id=event.id, type=event.type).model_dump_json().encode()
        return Reply(202, body, JSON, headers)

    @app.direct_exception_handler(Rejected)
    def answer_rejected(request: DirectRequest, exc: Rejected) -> Reply:
        return _refusal(request, exc.status, exc.detail, exc.headers, exc.event_id)

    @app.direct_exception_handler(HTTPException)  # a method the ingest routes do not serve
    def answer_wrong_method(request: DirectRequest, exc: HTTPException) -> Reply:
        return _refusal(request, exc.status_code, exc.detail, exc.headers, None)

    @app.serve_directly("/webhooks/{provider}", "POST", **openapi.WEBHOOK_POST)
    async def receive_webhook(request: DirectRequest) -> Reply:
        """Verify a provider's webhook by its own signature scheme and publish it byte-for-byte.

        The event type is `<provider>.<the provider's event type>` and is also the routing key.
        A bot platform's handshake (Slack's `url_verification`, Discord's PING) is answered here
        and not published. Some platforms get the answer they need in place of the 202: a 200
        (Asaas, Pagar.me, Slack, Meta), Discord's interaction response, Twilio's empty TwiML.
        """
        provider = request.path_params["provider"]
        headers = request.headers
        through_gateway(headers)
        # Before the body is read: an unknown provider or a wrong media type costs no upload.
        enabled = webhooks.check_webhook(provider, headers, settings)
        body = await _read_body(request, settings.max_body_bytes)
        webhook = webhooks.webhook_event(
            enabled,
            headers,
            request.query,
            body,
            settings.timestamp_tolerance_s,
            request.target if enabled.spec.signs_url else "",
        )
        if isinstance(webhook, Answer):  # a handshake: answered, nothing published
            return _answer(request, provider, webhook)
        return await publish(webhook.event, "webhooks", provider, webhook.answer)

    @app.serve_directly("/webhooks/{provider}", "GET", **openapi.WEBHOOK_GET)
    async def answer_handshake(request: DirectRequest) -> Reply:
        """Answer a platform's subscription handshake (Meta's `hub.challenge`) with its challenge,
        when the verify token is the one configured. Nothing is published."""
        provider = request.path_params["provider"]
        through_gateway(request.headers)
        enabled = webhooks.check_webhook(provider, request.headers, settings, method="GET")
        answer = webhooks.webhook_handshake(enabled, request.query, settings)
        return _answer(request, provider, answer)

    @app.serve_directly("/events", "POST", **openapi.EVENTS_POST)
    async def receive_event(request: DirectRequest) -> Reply:
        """Publish an internal CloudEvent, in structured mode (CloudEvents JSON) or binary mode
        (`ce-*` headers, the body being the data). Batched mode is refused with 415.

        The event's source is the caller Kong authenticated (`/events/<consumer>`), never what
        the request claims; in binary mode the body is data only and sets no attribute. Types
        emitted by Hookhub's consumers (`payment.*`, `order.ready`, ...) and provider namespaces
        (`stripe.*`, ...) are refused.
        """
        headers = request.headers
        caller = through_gateway(headers)
        if secret is not None and not caller:
            raise Rejected(401, "no authenticated caller: the gateway sent no X-Consumer-Username")
        ingest.check_internal_event(headers)  # before the body is read, as for webhooks
        body = await _read_body(request, settings.max_body_bytes)
        return await publish(ingest.internal_event(body, headers, caller), "events", "-")

    @app.get("/livez", tags=["probes"])
    async def livez() -> dict[str, str]:
        """The process is up and serving."""
        return {"status": "alive"}

    @app.get("/readyz", tags=["probes"], **openapi.READYZ_GET)
    async def readyz() -> Response:
        """Ready while the broker connection and channel are usable and confirms arrive."""
        ready = await broker.check()
        return Response(
            json.dumps({"status": "ready" if ready else "broker unavailable"}),
            status_code=200 if ready else 503,
            media_type="application/json",
        )

    @app.get("/metrics", tags=["probes"], **openapi.METRICS_GET)
    async def metrics() -> Response:
        """Prometheus metrics: requests, publish latency, broker state."""
        _ = broker.ready  # refreshes the broker gauge
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
