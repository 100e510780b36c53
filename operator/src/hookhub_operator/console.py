"""The console: server-rendered pages over the same reads as the API, and the two changes an
operator makes (replay, purge) behind a confirmation page, a role check and a CSRF token."""

import asyncio
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote, urlencode

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from hookhub import topology
from hookhub.addresses import CONNECT_ERRORS
from hookhub.gateway import FORWARDED_PREFIX_HEADER

from hookhub_operator import actions, csrf, overview, reads
from hookhub_operator.auth import Operator, Refused, may_change
from hookhub_operator.deps import (
    BrokerDep,
    BrokerDown,
    FiltersDep,
    OperatorDep,
    ServiceDep,
    service_of,
)

MAX_FORM_BYTES = 1024 * 1024
# A form's body must arrive whole within this long (Kong buffers it first: it comes at once).
FORM_READ_TIMEOUT_S = 5.0
PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")
# No script at all, styles inline, forms only to this origin, never in a frame.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def _when(at: datetime | None) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z" if at else "—"


templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,  # every value rendered is escaped, event bodies included
    )
)
templates.env.filters["when"] = _when
templates.env.filters["segment"] = lambda text: quote(str(text), safe="")
templates.env.globals["STATUS_MEANS"] = overview.STATUS_MEANS

router = APIRouter(include_in_schema=False)


def prefix(request: Request) -> str:
    """The path Kong's route stripped (`/operator`), for the links pages make; '' in dev."""
    given = request.headers.get(FORWARDED_PREFIX_HEADER, "").rstrip("/")
    return given if PREFIX.match(given) else ""


def page(
    request: Request,
    template: str,
    operator: Operator | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page, with the CSRF token its forms carry (and the session cookie it is bound to)."""
    nonce = request.cookies.get(csrf.COOKIE) or csrf.new_nonce()
    token = (
        csrf.issue(service_of(request).csrf_key, operator.name, nonce, time.time())
        if operator
        else ""
    )
    shared = {"operator": operator, "prefix": prefix(request), "section": ""}
    forms = {"csrf_field": csrf.FIELD, "csrf_token": token}
    response = templates.TemplateResponse(
        request,
        template,
        {**shared, **forms, **context},
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )
    if operator and request.cookies.get(csrf.COOKIE) != nonce:
        response.set_cookie(
            csrf.COOKIE,
            nonce,
            path=prefix(request) or "/",
            httponly=True,
            samesite="strict",
            secure=request.headers.get("x-forwarded-proto", request.url.scheme) == "https",
        )
    return response


async def changing_form(request: Request, operator: Operator) -> dict[str, list[str]]:
    """The fields of a form that changes something, once the operator may change things and
    the form carries a valid CSRF token; raises Refused (403) otherwise."""
    may_change(operator)
    body = await form_body(request)
    fields = parse_qs(body.decode(errors="replace"), keep_blank_values=True)
    token = (fields.get(csrf.FIELD) or [None])[0]
    nonce = request.cookies.get(csrf.COOKIE)
    if not csrf.valid(service_of(request).csrf_key, operator.name, nonce, token, time.time()):
        raise Refused(403, "the form's CSRF token is missing or stale: reload the page, try again")
    return fields


async def form_body(request: Request) -> bytes:
    """The form's body, counted as it streams in: 413 as soon as it passes `MAX_FORM_BYTES`
    (a 300 MiB upload is never held), 408 when it is not whole within `FORM_READ_TIMEOUT_S`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise Refused(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(FORM_READ_TIMEOUT_S):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_FORM_BYTES:
                    raise Refused(413, f"the form is larger than {MAX_FORM_BYTES} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise Refused(
            408, "the form did not arrive within the time allowed; send it again"
        ) from None
    return b"".join(chunks)


def _first(fields: dict[str, list[str]], name: str) -> str:
    return (fields.get(name) or [""])[0].strip()


# Overview


@router.get("/", response_class=HTMLResponse)
async def overview_page(request: Request, service: ServiceDep, operator: OperatorDep) -> Response:
    now = datetime.now(UTC)
    traffic = await overview.accepted_traffic(service.event_log, now)
    refused = await overview.read_refusals(service.settings.api_metrics_url)
    try:
        connection = await service.broker.connection()
        queues = await overview.consumer_queues(connection, service.settings.retry_delays_s)
        broker_problem = None
    except (BrokerDown, *CONNECT_ERRORS) as error:
        queues, broker_problem = [], str(error) or "RabbitMQ did not answer"
    return page(
        request,
        "overview.html",
        operator,
        section="overview",
        now=now,
        traffic=traffic,
        window_min=overview.WINDOW_MIN,
        max_events=overview.MAX_EVENTS,
        refused=refused,
        queues=queues,
        broker_problem=broker_problem,
    )


# Events


@router.get("/events", response_class=HTMLResponse)
async def events_page(
    request: Request, service: ServiceDep, operator: OperatorDep, filters: FiltersDep
) -> Response:
    found = await reads.find_events(service.event_log, filters)
    return page(request, "events.html", operator, section="events", filters=filters, events=found)


@router.get("/orders/{order_id:path}", response_class=HTMLResponse)
async def order_page(
    request: Request, service: ServiceDep, operator: OperatorDep, order_id: str
) -> Response:
    """One order: status, money, its events in time order (each linking to its journey) and
    what it waits for."""
    view = await reads.order_view(service.event_log, order_id, service.settings)
    return page(request, "order.html", operator, section="events", view=view)


# An event's pages take its source in the query string: an id is unique only within its source.
SourceParam = Annotated[str | None, Query()]


@router.get("/events/{event_id:path}/raw")
async def event_raw(
    service: ServiceDep,
    connection: BrokerDep,
    operator: OperatorDep,
    event_id: str,
    source: SourceParam = None,
) -> Response:
    """The body byte-for-byte, as a download (never rendered by the browser)."""
    found = await reads.archived_event(service.event_log, connection, event_id, source)
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", event_id)[:100] or "event"
    disposition = f'attachment; filename="{filename}.body"'
    return Response(
        found.body,
        media_type="application/octet-stream",
        headers={"Content-Disposition": disposition, **SECURITY_HEADERS},
    )


@router.get("/events/{event_id:path}", response_class=HTMLResponse)
async def event_page(
    request: Request,
    service: ServiceDep,
    connection: BrokerDep,
    operator: OperatorDep,
    event_id: str,
    source: SourceParam = None,
) -> Response:
    """One event and its journey; when events from several sources have the id and no source
    is given, the list to choose from (`shared_id.html`)."""
    found = await reads.archived_event(service.event_log, connection, event_id, source)
    # The source found, so that the journey is the same event's even if another with this id
    # is indexed in between.
    _, timeline = await reads.journey(service.event_log, event_id, found.event.source)
    return page(request, "event.html", operator, section="events", found=found, timeline=timeline)


# Parking lots


@router.get("/parking-lots", response_class=HTMLResponse)
async def parking_lots_page(
    request: Request, service: ServiceDep, connection: BrokerDep, operator: OperatorDep
) -> Response:
    queues = await overview.consumer_queues(connection, service.settings.retry_delays_s)
    return page(request, "parking_lots.html", operator, section="parking", queues=queues)


@router.get("/parking-lots/{consumer}", response_class=HTMLResponse)
async def parking_lot_page(
    request: Request,
    connection: BrokerDep,
    operator: OperatorDep,
    consumer: str,
    type: Annotated[str | None, Query()] = None,
    reason: Annotated[str | None, Query()] = None,
    changed: Annotated[Literal["replayed", "purged"] | None, Query()] = None,
    count: Annotated[int, Query()] = 0,
    of: Annotated[int, Query()] = 0,
) -> Response:
    parked = await reads.parking_lot(connection, consumer, type, reason)
    return page(
        request,
        "parking_lot.html",
        operator,
        section="parking",
        consumer=consumer,
        queue=topology.dead_letter_queue(consumer),
        parked=parked,
        type=type or "",
        reason=reason or "",
        changed=changed,
        count=count,
        of=of,
    )


@router.post("/parking-lots/{consumer}/confirm", response_class=HTMLResponse)
async def confirm_page(
    request: Request, connection: BrokerDep, operator: OperatorDep, consumer: str
) -> Response:
    """What the operator selected (some, or all matching the filter), counted, to confirm."""
    fields = await changing_form(request, operator)
    action = _first(fields, "action")
    if action not in ("replay", "purge"):
        raise Refused(400, "say what to do: replay or purge")
    type_pattern, reason = _first(fields, "type") or None, _first(fields, "reason") or None
    if _first(fields, "scope") == "matching":
        ids = [p.id for p in await reads.parking_lot(connection, consumer, type_pattern, reason)]
    else:
        reads.known_consumer(consumer)
        ids = [i for i in fields.get("id", []) if i]
    return page(
        request,
        "confirm.html",
        operator,
        section="parking",
        consumer=consumer,
        action=action,
        ids=list(dict.fromkeys(ids)),
        work_queue=topology.work_queue(consumer),
        back=f"{prefix(request)}/parking-lots/{quote(consumer, safe='')}?"
        + urlencode({k: v for k, v in (("type", type_pattern), ("reason", reason)) if v}),
    )


@router.post("/parking-lots/{consumer}/{action}")
async def change_parking_lot(
    request: Request,
    service: ServiceDep,
    connection: BrokerDep,
    operator: OperatorDep,
    consumer: str,
    action: str,
) -> Response:
    """Replay or purge the confirmed ids, then back to the parking lot, saying what was done."""
    fields = await changing_form(request, operator)
    reads.known_consumer(consumer)
    ids = {i for i in fields.get("id", []) if i}
    if action == "replay":
        timeout_s = service.settings.publish_timeout_s
        change = await actions.replay(
            connection, service.event_log, operator, consumer, ids, timeout_s
        )
    elif action == "purge":
        change = await actions.purge(connection, service.event_log, operator, consumer, ids)
    else:
        raise reads.NotFound(f"no action '{action}': replay or purge")
    said = urlencode({"changed": change.what, "count": len(change.done), "of": change.asked})
    target = f"{prefix(request)}/parking-lots/{quote(consumer, safe='')}?{said}"
    return RedirectResponse(target, status_code=303)


# The session


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request, operator: OperatorDep) -> Response:
    """End the console session: its cookie is cleared, and every form token bound to it stops
    working. (Kong's key still opens the console: a new session starts on the next page.)"""
    response = page(
        request,
        "logged_out.html",
        None,
        section="",
        name=operator.name,
    )
    response.delete_cookie(
        csrf.COOKIE, path=prefix(request) or "/", httponly=True, samesite="strict"
    )
    return response


# Providers


@router.get("/providers", response_class=HTMLResponse)
async def providers_page(request: Request, service: ServiceDep, operator: OperatorDep) -> Response:
    settings = service.settings
    enabled = (
        {name for name in settings.provider_secrets if settings.provider_secret(name)}
        if service.providers_known
        else None
    )
    refused = await overview.read_refusals(settings.api_metrics_url)
    found = await overview.providers(service.event_log, enabled, refused)
    return page(
        request, "providers.html", operator, section="providers", providers=found, refused=refused
    )
