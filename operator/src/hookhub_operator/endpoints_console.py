"""The console's endpoints pages: the list (state, success rate, p99, backlog, last error) with
its filter and the form to add one, and each endpoint's page (deliveries, audit trail, disable or
enable, resend, rotate the secret). Every form that changes something carries the console's CSRF
token (`console.changing_form`); a new secret is shown on the page that answers the form that
made it, and on no other."""

from typing import Annotated, Literal
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from hookhub_endpoints.model import EndpointError

from hookhub_operator import endpoints
from hookhub_operator.console import changing_form, page, prefix
from hookhub_operator.deps import OperatorDep, ServiceDep
from hookhub_operator.endpoints_api import RegistryDep
from hookhub_operator.reads import as_time

router = APIRouter(include_in_schema=False)
SECTION = "endpoints"


def _field(fields: dict[str, list[str]], name: str) -> str:
    return (fields.get(name) or [""])[0].strip()


def _number(text: str, what: str, kind: type = float) -> float | int | None:
    """A form's number field: None when empty; EndpointError (422) when not a number."""
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        whole = "a whole number" if kind is int else "a number"
        raise EndpointError(f"{what} '{text}' is not {whole}") from None


def _to_page(request: Request, name: str, **said: object) -> RedirectResponse:
    query = urlencode({k: v for k, v in said.items() if v is not None})
    target = f"{prefix(request)}/endpoints/{quote(name, safe='')}" + (f"?{query}" if query else "")
    return RedirectResponse(target, status_code=303)


@router.get("/endpoints", response_class=HTMLResponse)
async def endpoints_page(
    request: Request,
    service: ServiceDep,
    registry: RegistryDep,
    operator: OperatorDep,
    state: Annotated[str | None, Query()] = None,
    type: Annotated[str | None, Query()] = None,
) -> Response:
    state, type = (state or "").strip() or None, (type or "").strip() or None
    found = await endpoints.listed(service.settings, registry, state, type)
    return page(
        request,
        "endpoints.html",
        operator,
        section=SECTION,
        found=found,
        states=endpoints.STATES,
        state=state or "",
        type=type or "",
    )


@router.post("/endpoints", response_class=HTMLResponse)
async def add_endpoint(
    request: Request, service: ServiceDep, registry: RegistryDep, operator: OperatorDep
) -> Response:
    """Add one from the form; the answer is its page, showing its new secret this once."""
    fields = await changing_form(request, operator)
    made = await endpoints.add(
        service.settings,
        registry,
        service.broker,
        operator,
        name=_field(fields, "name"),
        url=_field(fields, "url"),
        types=_field(fields, "types"),
        rate_per_s=_number(_field(fields, "rate"), "rate"),
        max_in_flight=_number(_field(fields, "max_in_flight"), "max in flight", int),
    )
    return await _endpoint(request, service, registry, operator, made.endpoint.name, made, 201)


async def _endpoint(
    request: Request,
    service: ServiceDep,
    registry: RegistryDep,
    operator: OperatorDep,
    name: str,
    made: endpoints.Made | None = None,
    status_code: int = 200,
    **said: object,
) -> Response:
    detail = await endpoints.detail(service.settings, registry, name)
    return page(
        request,
        "endpoint.html",
        operator,
        status_code,
        section=SECTION,
        d=detail,
        shown=detail.endpoint.shown(),
        new_secret=made.secret if made else None,
        **said,
    )


@router.get("/endpoints/{name}", response_class=HTMLResponse)
async def endpoint_page(
    request: Request,
    service: ServiceDep,
    registry: RegistryDep,
    operator: OperatorDep,
    name: str,
    changed: Annotated[Literal["disabled", "enabled"] | None, Query()] = None,
    resent: Annotated[int | None, Query()] = None,
) -> Response:
    return await _endpoint(
        request, service, registry, operator, name, changed=changed, resent=resent
    )


@router.post("/endpoints/{name}/{action}", response_class=HTMLResponse)
async def change_endpoint(
    request: Request,
    service: ServiceDep,
    registry: RegistryDep,
    operator: OperatorDep,
    name: str,
    action: Literal["disable", "enable", "resend", "rotate-secret"],
) -> Response:
    fields = await changing_form(request, operator)
    if action in ("disable", "enable"):
        enabled = action == "enable"
        await endpoints.set_enabled(registry, operator, name, enabled, _field(fields, "reason"))
        return _to_page(request, name, changed=f"{action}d")
    if action == "resend":
        count = await endpoints.resend(
            service.settings,
            registry,
            operator,
            name,
            event_id=_field(fields, "event_id") or None,
            source=_field(fields, "source") or None,
            failed_since=as_time(_field(fields, "failed_since"), "failed since"),
        )
        return _to_page(request, name, resent=count)
    made = await endpoints.rotate(registry, operator, name)
    return await _endpoint(request, service, registry, operator, name, made)
