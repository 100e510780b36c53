"""The outbound endpoints' HTTP API: read for both operator groups, changed by `operators` only.

A change is a JSON request: a POST must say `content-type: application/json` (`415` otherwise),
which no form of another site can send without a CORS preflight this service never grants, and
PATCH and DELETE need that preflight anyway; that is the API's CSRF protection (the console's
forms carry a signed token instead). A secret is in the answer that makes it (add, rotate-secret)
and in no other.
"""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from hookhub_endpoints.model import DEFAULT_OVERLAP_S, Endpoint
from hookhub_endpoints.registry import Registry
from hookhub_endpoints.stats import EndpointStats
from pydantic import BaseModel, ConfigDict, Field

from hookhub_operator import endpoints
from hookhub_operator.api import Problem
from hookhub_operator.auth import Operator, may_change
from hookhub_operator.deps import OperatorDep, ServiceDep, current_operator


def registry_of(request: Request) -> Registry:
    """The registry the service opened at start-up (`app.state.endpoint_registry`)."""
    return request.app.state.endpoint_registry


RegistryDep = Annotated[Registry, Depends(registry_of)]


def changing(request: Request, operator: OperatorDep) -> Operator:
    """The operator making a change: one of `operators` (403 otherwise), sending JSON."""
    may_change(operator)
    if request.method == "POST":
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/json":
            raise HTTPException(415, "send the change as JSON (content-type: application/json)")
    return operator


ChangingDep = Annotated[Operator, Depends(changing)]

MEANS = {
    403: "The caller is in neither operator group, or (a change) is a read-only operator",
    404: "No endpoint has this name (or the archive no longer holds the event to resend)",
    409: "An endpoint already has this name",
    415: "A change that is not JSON",
    422: "An endpoint that cannot be (the message says what to write instead)",
}


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": Problem, "description": MEANS[s]} for s in statuses}


router = APIRouter(
    prefix="/api/endpoints",
    tags=["endpoints"],
    dependencies=[Depends(current_operator)],
    responses={401: {"model": Problem, "description": "Not through the gateway"}} | _problems(403),
)


class SecretOut(BaseModel):
    key_id: str = Field(description="The first 8 hex of the secret's SHA-256: never the secret")
    added_at: datetime
    expires_at: datetime | None = Field(description="When it stops signing (a rotated-out one)")


class EndpointOut(BaseModel):
    name: str
    url: str = Field(description="Where deliveries are POSTed (a password in it is redacted)")
    types: list[str] = Field(description="The event types it receives, as topic patterns")
    secrets: list[SecretOut] = Field(description="The secrets that sign, by key id")
    rate_per_s: float | None = Field(description="Deliveries a second at most; null: no limit")
    max_in_flight: int = Field(description="Deliveries in flight at once, at most")
    timeout_s: float
    enabled: bool = Field(description="False while an operator has disabled it")
    paused_reason: str | None = Field(description="Why the circuit breaker holds it, if it does")
    state: str = Field(description="`active`, `paused` (circuit breaker) or `disabled`")
    description: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, endpoint: Endpoint) -> "EndpointOut":
        return cls(**endpoint.shown())


class StatsOut(BaseModel):
    """Its health over the last 24 hours of attempts, and its queues now."""

    since: datetime
    attempts: int
    delivered: int
    success_rate: float | None = Field(description="Delivered / attempts; null with none")
    p50_ms: float | None
    p99_ms: float | None
    last_error: str | None
    last_error_at: datetime | None
    backlog: int | None = Field(description="Waiting in its queue; null if RabbitMQ is away")
    retrying: int | None
    parked: int | None

    @classmethod
    def of(cls, stats: EndpointStats) -> "StatsOut":
        return cls(**stats.shown())


class EndpointView(EndpointOut):
    stats: StatsOut


class DeliveryOut(BaseModel):
    event_id: str
    source: str | None
    delivered: bool = Field(description="The receiver answered 2xx")
    status_code: int | None
    error: str | None
    at: datetime
    latency_ms: float | None


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="Who: `operator:<name>`, `cli:<user>`, `circuit-breaker`, ...")
    action: str = Field(description="add, edit, disable, enable, rotate-secret, remove, pause...")
    before: dict[str, Any] | None = Field(description="The endpoint before (secrets by key id)")
    after: dict[str, Any] | None


class EndpointDetail(EndpointView):
    deliveries: list[DeliveryOut] = Field(description="Its latest attempts, newest first")
    audit: list[AuditOut] = Field(description="Its latest changes, newest first")


class WithSecret(EndpointOut):
    secret: str = Field(
        description="The new signing secret (Standard Webhooks `whsec_…`): shown in this answer "
        "only, never again; configure the receiver with it"
    )


class NewEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="1-63 lowercase letters, digits, '-' or '_'")
    url: str = Field(description="http:// or https:// with a host")
    types: list[str] = Field(description="Topic patterns: `payment.#`, `order.ready`")
    rate_per_s: float | None = None
    max_in_flight: int | None = Field(None, description="Default 10")
    timeout_s: float | None = Field(None, description="Default 30")
    description: str = ""


class EndpointChange(BaseModel):
    """The fields to change (the others stay); `enabled` disables or enables it."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = None
    types: list[str] | None = None
    rate_per_s: float | None = Field(None, description="null: no limit")
    max_in_flight: int | None = None
    timeout_s: float | None = None
    description: str | None = None
    enabled: bool | None = None


class Disable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", description="Why, for the other operators")


class Rotate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_s: float = Field(
        DEFAULT_OVERLAP_S, ge=0, description="Seconds the old secret keeps signing too"
    )


class Resend(BaseModel):
    """One event by id (`event_id`, with `source` when ids are shared), or every event whose
    delivery failed since `failed_since`."""

    model_config = ConfigDict(extra="forbid")
    event_id: str | None = None
    source: str | None = None
    failed_since: datetime | None = None


class Resent(BaseModel):
    endpoint: str
    resent: int = Field(description="How many were queued for it again")


class Removed(BaseModel):
    removed: str
    dropped: int = Field(description="Events that were waiting for it, dropped with its queues")


def _view(endpoint: Endpoint, stats: EndpointStats) -> EndpointView:
    return EndpointView(**endpoint.shown(), stats=StatsOut.of(stats))


@router.get("", response_model=list[EndpointView], responses=_problems(422))
async def list_endpoints(
    service: ServiceDep,
    registry: RegistryDep,
    state: Annotated[str | None, Query(description="active, paused or disabled")] = None,
    type: Annotated[
        str | None, Query(description="One of its patterns, or an event type it receives")
    ] = None,
) -> list[EndpointView]:
    """Every endpoint (the filter's), with its state and health: success rate, latency, last
    error, backlog."""
    found = await endpoints.listed(service.settings, registry, state or None, type or None)
    return [_view(e, s) for e, s in found]


@router.get("/{name}", response_model=EndpointDetail, responses=_problems(404))
async def show_endpoint(service: ServiceDep, registry: RegistryDep, name: str) -> EndpointDetail:
    """One endpoint: settings, health, its latest deliveries and its audit trail."""
    d = await endpoints.detail(service.settings, registry, name)
    return EndpointDetail(
        **_view(d.endpoint, d.stats).model_dump(),
        deliveries=[DeliveryOut(**_fields(a)) for a in d.deliveries],
        audit=[AuditOut(**_fields(e, without=("endpoint",))) for e in d.audit],
    )


def _fields(value: Any, without: tuple[str, ...] = ()) -> dict[str, Any]:
    return {k: getattr(value, k) for k in value.__slots__ if k not in without}


@router.post("", status_code=201, response_model=WithSecret, responses=_problems(409, 415, 422))
async def add_endpoint(
    service: ServiceDep, registry: RegistryDep, operator: ChangingDep, new: NewEndpoint
) -> WithSecret:
    """Add an endpoint, its queue bound to its types; the answer holds its new secret, once."""
    made = await endpoints.add(
        service.settings, registry, service.broker, operator, **new.model_dump()
    )
    return WithSecret(**made.endpoint.shown(), secret=made.secret)


@router.patch("/{name}", response_model=EndpointOut, responses=_problems(404, 422))
async def change_endpoint(
    service: ServiceDep,
    registry: RegistryDep,
    operator: ChangingDep,
    name: str,
    change: EndpointChange,
) -> EndpointOut:
    """Change its URL, types, rate, max in flight, timeout, description or `enabled`."""
    fields = change.model_dump(exclude_unset=True)
    done = await endpoints.update(
        service.settings, registry, service.broker, operator, name, fields
    )
    return EndpointOut.of(done)


@router.post("/{name}/disable", response_model=EndpointOut, responses=_problems(404, 415))
async def disable_endpoint(
    registry: RegistryDep, operator: ChangingDep, name: str, body: Disable
) -> EndpointOut:
    """Stop delivering to it; its events wait in its queue until it is enabled."""
    return EndpointOut.of(await endpoints.set_enabled(registry, operator, name, False, body.reason))


@router.post("/{name}/enable", response_model=EndpointOut, responses=_problems(404, 415))
async def enable_endpoint(registry: RegistryDep, operator: ChangingDep, name: str) -> EndpointOut:
    """Deliver to it again (also ends a circuit breaker's pause)."""
    return EndpointOut.of(await endpoints.set_enabled(registry, operator, name, True))


@router.post("/{name}/rotate-secret", response_model=WithSecret, responses=_problems(404, 415))
async def rotate_secret(
    registry: RegistryDep, operator: ChangingDep, name: str, body: Rotate
) -> WithSecret:
    """Sign with a fresh secret from now on, and with the old ones for `overlap_s` more; the
    answer holds the new secret, once."""
    made = await endpoints.rotate(registry, operator, name, body.overlap_s)
    return WithSecret(**made.endpoint.shown(), secret=made.secret)


@router.post("/{name}/resend", response_model=Resent, responses=_problems(404, 415, 422))
async def resend(
    service: ServiceDep, registry: RegistryDep, operator: ChangingDep, name: str, body: Resend
) -> Resent:
    """Send one event again (same webhook-id, even if it was delivered), or every event whose
    delivery failed since a time."""
    count = await endpoints.resend(
        service.settings,
        registry,
        operator,
        name,
        event_id=body.event_id or None,
        source=body.source or None,
        failed_since=body.failed_since,
    )
    return Resent(endpoint=name, resent=count)


@router.delete("/{name}", response_model=Removed, responses=_problems(404))
async def remove_endpoint(
    service: ServiceDep, registry: RegistryDep, operator: ChangingDep, name: str
) -> Removed:
    """Remove it, with its queues and the events waiting in them (disable it to keep them)."""
    dropped = await endpoints.remove(registry, service.broker, operator, name)
    return Removed(removed=name, dropped=dropped)
