"""The ingest routes: a provider's webhook, its GET handshake, an internal event. Each goes
gateway check → body → `webhooks` or `ingest` (verify, build the event) → publish.

A `202` means the broker has confirmed the event durably. A 4xx means nothing was published:
fix the request. A 503 (+ Retry-After) means it was not confirmed: send it again with the same
id (a confirm that timed out may still land; the consumers drop the repeat by its id).

Served directly (`hub_api.fast_path`), without FastAPI's per-request machinery: each route takes a
`DirectRequest`, finds the service's state with `service_of`, and returns a `Reply`; a refusal is
raised as `Rejected` and answered by `answer_rejected`.
"""

import json
import time
from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException
from hookhub import gateway
from hookhub.broker import BrokerUnavailable
from hookhub.events import JSON, Event
from hookhub.gateway import CONSUMER_HEADER
from hookhub.logs import log
from hookhub.providers import PROVIDERS

from hub_api import ingest, openapi, webhooks
from hub_api.deps import Service, service_of
from hub_api.fast_path import BodyTooLarge, DirectRequest, DirectRouter, Reply
from hub_api.headers import CORRELATION_HEADER, EVENT_ID_HEADER, header_value
from hub_api.metrics import PUBLISH_SECONDS, policy_refusals_counter, requests_counter
from hub_api.rejections import Rejected
from hub_api.webhooks import Answer

router = DirectRouter()


@router.serve_directly("/webhooks/{provider}", "POST", **openapi.WEBHOOK_POST)
async def receive_webhook(request: DirectRequest) -> Reply:
    """Verify a provider's webhook by its own signature scheme and publish it byte-for-byte.

    The event type is `<provider>.<the provider's event type>` and is also the routing key.
    A bot platform's handshake (Slack's `url_verification`, Discord's PING) is answered here
    and not published. Some platforms get the answer they need in place of the 202: a 200
    (Asaas, Pagar.me, Slack, Meta), Discord's interaction response, Twilio's empty TwiML.
    """
    service = service_of(request)
    settings = service.settings
    provider = request.path_params["provider"]
    headers = request.headers
    through_gateway(headers, service.gateway_secret)
    # Before the body is read: an unknown provider or a wrong media type costs no upload.
    enabled = webhooks.check_webhook(provider, headers, settings)
    body = await read_body(request, settings.max_body_bytes)
    webhook = webhooks.webhook_event(
        enabled,
        headers,
        request.query,
        body,
        settings.timestamp_tolerance_s,
        request.target if enabled.spec.signs_url else "",
    )
    if isinstance(webhook, Answer):  # a handshake: answered, nothing published
        return _answered(request, provider, webhook)
    return await publish(service, webhook.event, "webhooks", provider, webhook.answer)


@router.serve_directly("/webhooks/{provider}", "GET", **openapi.WEBHOOK_GET)
async def answer_handshake(request: DirectRequest) -> Reply:
    """Answer a platform's subscription handshake (Meta's `hub.challenge`) with its challenge,
    when the verify token is the one configured. Nothing is published."""
    service = service_of(request)
    provider = request.path_params["provider"]
    through_gateway(request.headers, service.gateway_secret)
    enabled = webhooks.check_webhook(provider, request.headers, service.settings, method="GET")
    answer = webhooks.webhook_handshake(enabled, request.query, service.settings)
    return _answered(request, provider, answer)


@router.serve_directly("/events", "POST", **openapi.EVENTS_POST)
async def receive_event(request: DirectRequest) -> Reply:
    """Publish an internal CloudEvent, in structured mode (CloudEvents JSON) or binary mode
    (`ce-*` headers, the body being the data). Batched mode is refused with 415.

    The event's source is the caller Kong authenticated (`/events/<consumer>`), never what
    the request claims; in binary mode the body is data only and sets no attribute. A caller
    publishes only the types the publish policy (`HOOKHUB_PUBLISH_POLICY`) gives it: any other
    is refused with 403 naming the caller and the type. Types emitted by Hookhub's consumers
    (`payment.*`, `order.ready`, ...) and provider namespaces (`stripe.*`, ...) are refused
    whatever the policy says.
    """
    service = service_of(request)
    headers = request.headers
    caller = through_gateway(headers, service.gateway_secret)
    if service.gateway_secret is not None and not caller:
        raise Rejected(401, "no authenticated caller: the gateway sent no X-Consumer-Username")
    ingest.check_internal_event(headers)  # before the body is read, as for webhooks
    body = await read_body(request, service.settings.max_body_bytes)
    policy = service.publish_policy
    try:
        event = ingest.internal_event(body, headers, caller, policy)
    except ingest.NotAllowed:
        assert policy is not None  # only a policy refuses
        policy_refusals_counter(policy, caller).inc()
        raise
    return await publish(service, event, "events", "-")


def through_gateway(headers: Mapping[str, str], secret: bytes | None) -> str | None:
    """Checks the secret Kong injects (unless there is none to check); returns the caller Kong
    authenticated."""
    if secret is not None and not gateway.came_through_gateway(headers, secret):
        raise Rejected(401, "request did not come through the gateway")
    return headers.get(CONSUMER_HEADER)


async def read_body(request: DirectRequest, limit_bytes: int) -> bytes:
    try:
        return await request.body(limit_bytes)
    except BodyTooLarge:
        raise Rejected(413, f"body is larger than {limit_bytes} bytes") from None


async def publish(
    service: Service, event: Event, route: str, provider: str, answer: Answer | None = None
) -> Reply:
    """Publish the event and answer once the broker confirmed it: 202 with its id and type, or
    the `answer` its platform needs; `Rejected` with 503 and Retry-After if it was not confirmed."""
    # The ids go on the lines themselves rather than through bound context vars: nothing
    # else logs while an event is published, and binding cost more than the line itself.
    ids = {"event_id": event.id, "correlation_id": event.correlation_id, "type": event.type}
    started = time.perf_counter()
    try:
        await service.broker.publish(event)
    except BrokerUnavailable as exc:
        requests_counter(route, provider, "503").inc()
        log.warning("event.not_published", reason=str(exc), **ids)
        raise Rejected(
            503,
            "the event was not accepted: the message broker is unavailable; retry later",
            event_id=event.id,
            headers={"Retry-After": str(service.settings.retry_after_s)},
        ) from None
    PUBLISH_SECONDS.observe(time.perf_counter() - started)
    requests_counter(route, provider, "202").inc()
    log.info("event.accepted", provider=provider, **ids)
    headers = {CORRELATION_HEADER: event.correlation_id or ""}
    if answer is not None:  # the platform needs an answer of its own (Discord, Twilio, ...)
        headers[EVENT_ID_HEADER] = header_value(event.id)
        return Reply(answer.status, answer.body, answer.media_type, headers)
    # The bytes of openapi.Accepted's model_dump_json (an id and a type are visible ASCII, which
    # both escape alike), without building a pydantic model for each request.
    body = json.dumps({"id": event.id, "type": event.type}, separators=(",", ":")).encode()
    return Reply(202, body, JSON, headers)


def answer_rejected(request: DirectRequest, exc: Rejected) -> Reply:
    """The answer to a refusal an ingest route raised."""
    return _refusal(request, exc.status, exc.detail, exc.headers, exc.event_id)


def answer_wrong_method(request: DirectRequest, exc: HTTPException) -> Reply:
    """The answer to a method the ingest routes' path does not serve (405)."""
    return _refusal(request, exc.status_code, exc.detail, exc.headers, None)


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
        requests_counter(route, provider if provider in PROVIDERS else "-", str(status)).inc()
        log.info(
            "request.rejected",
            status=status,
            detail=detail,
            path=request.path,
            event_id=event_id,
            correlation_id=request.headers.get(CORRELATION_HEADER),
        )
    return Reply(status, json.dumps({"detail": detail}).encode(), JSON, headers)


def _answered(request: DirectRequest, provider: str, answer: Answer) -> Reply:
    """A handshake's answer, counted and logged; nothing was published."""
    requests_counter("webhooks", provider, str(answer.status)).inc()
    log.info("handshake.answered", provider=provider, path=request.path)
    return Reply(answer.status, answer.body, answer.media_type)
