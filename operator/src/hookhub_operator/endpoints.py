"""What an operator reads and changes of the outbound endpoints, for the API and the console
alike: through the registry of hookhub_endpoints only, every change recorded in its audit as
`operator:<name>` and logged (never with a secret).

A secret leaves this module once: in the `Made` that `add` and `rotate` return, for the one
answer that shows it; everything else shows an endpoint as `Endpoint.shown` does (key ids).
"""

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from hookhub.logs import log
from hookhub.settings import Settings
from hookhub.topology import binding_matches
from hookhub_endpoints import queues, registry
from hookhub_endpoints.attempts import attempts_to
from hookhub_endpoints.model import (
    DEFAULT_OVERLAP_S,
    Endpoint,
    EndpointError,
    Secret,
    UnknownEndpoint,
    check_types,
    new_secret,
)
from hookhub_endpoints.registry import AuditEntry, Registry
from hookhub_endpoints.resend import NotItsType, resend_failed, resend_one
from hookhub_endpoints.stats import EndpointStats, endpoint_stats
from hookhub_eventlog.people import ForgottenEvent
from prometheus_client import Counter

from hookhub_operator.auth import Operator, may_change
from hookhub_operator.deps import BrokerDown, BrokerLink
from hookhub_operator.reads import NotFound

STATES = ("active", "paused", "disabled")
RECENT_DELIVERIES = 50
AUDIT_SHOWN = 50
CHANGES = Counter(
    "hookhub_operator_endpoint_changes_total",
    "Endpoints added, changed, disabled, enabled, removed, rotated or resent from the operator",
    ["what"],
)


class NameTaken(Exception):
    """An endpoint already has the name asked for (409)."""


@dataclass(frozen=True, slots=True)
class Made:
    """An endpoint just added or given a new secret, with that secret: shown this once."""

    endpoint: Endpoint
    secret: str


@dataclass(frozen=True, slots=True)
class Detail:
    """One endpoint as its page shows it: settings, health, recent deliveries, audit trail."""

    endpoint: Endpoint
    stats: EndpointStats
    deliveries: list[Any]  # hookhub_endpoints.attempts.Attempt, newest first
    audit: list[AuditEntry]


def actor_of(operator: Operator) -> str:
    return f"operator:{operator.name}"


def _missing(name: str) -> NotFound:
    return NotFound(str(UnknownEndpoint(name)))


def _note(what: str, operator: Operator, name: str, **more: Any) -> None:
    CHANGES.labels(what).inc()
    log.info(f"operator.endpoint_{what}", operator=operator.name, endpoint=name, **more)


def matches(endpoint: Endpoint, state: str | None, type_text: str | None) -> bool:
    """The list's filter: its state, and a type text that is one of its patterns, or an event
    type (or pattern) one of its patterns takes."""
    if state and endpoint.state != state:
        return False
    if not type_text:
        return True
    return any(p == type_text or binding_matches(p, type_text) for p in endpoint.types)


def check_filter(state: str | None, type_text: str | None) -> None:
    if state and state not in STATES:
        raise EndpointError(f"state '{state}' is none of {', '.join(STATES)}")
    if type_text:
        check_types([type_text])


async def listed(
    settings: Settings, reg: Registry, state: str | None = None, type_text: str | None = None
) -> list[tuple[Endpoint, EndpointStats]]:
    """The endpoints the filter keeps, each with its health (over the last 24 hours)."""
    check_filter(state, type_text)
    kept = [e for e in await reg.endpoints() if matches(e, state, type_text)]
    if not kept:
        return []
    try:  # one connection for all of them (a channel each), not one each
        connection = await aio_pika.connect(settings.amqp_url, timeout=settings.connect_timeout_s)
    except Exception:  # the broker's numbers are missing (None), not the endpoints' stats
        stats = await asyncio.gather(*(endpoint_stats(settings, e) for e in kept))
        return list(zip(kept, stats, strict=True))
    async with connection:
        stats = await asyncio.gather(*(endpoint_stats(settings, e, None, connection) for e in kept))
    return list(zip(kept, stats, strict=True))


async def get(reg: Registry, name: str) -> Endpoint:
    try:
        return await reg.get(name)
    except UnknownEndpoint:
        raise _missing(name) from None


async def detail(settings: Settings, reg: Registry, name: str) -> Detail:
    endpoint = await get(reg, name)
    since = datetime.now(UTC) - timedelta(hours=24)
    stats, attempts, audit = await asyncio.gather(
        endpoint_stats(settings, endpoint, since),
        attempts_to(settings, endpoint.name, endpoint.url, since),
        reg.audit(name, limit=AUDIT_SHOWN),
    )
    recent = list(reversed(attempts[-RECENT_DELIVERIES:]))
    return Detail(endpoint, stats, recent, audit)


async def _declare(
    link: BrokerLink, settings: Settings, endpoint: Endpoint, previous: tuple[str, ...] = ()
) -> None:
    """The endpoint's queues and bindings now, so events published from here on wait for it;
    with the broker away, the delivery worker makes them when it next reads the registry."""
    try:
        connection: AbstractRobustConnection = await link.connection()
        channel = await connection.channel()
        try:
            await queues.declare(channel, endpoint, settings, previous)
        finally:
            await channel.close()
    except (BrokerDown, OSError, ConnectionError) as error:
        log.warning("operator.endpoint_queues_later", endpoint=endpoint.name, reason=str(error))


async def add(
    settings: Settings,
    reg: Registry,
    link: BrokerLink,
    operator: Operator,
    *,
    name: str,
    url: str,
    types: list[str] | str,
    rate_per_s: float | None = None,
    max_in_flight: int | None = None,
    timeout_s: float | None = None,
    description: str = "",
) -> Made:
    may_change(operator)
    secret = new_secret()
    chosen = (("max_in_flight", max_in_flight), ("timeout_s", timeout_s))
    optional = {k: v for k, v in chosen if v is not None}
    endpoint = Endpoint(
        name=name.strip(),
        url=url.strip(),
        types=check_types(types),
        secrets=(Secret(secret),),
        rate_per_s=rate_per_s,
        description=description,
        **optional,
    )
    try:
        await reg.get(endpoint.name)
        raise NameTaken(f"an endpoint is already named '{endpoint.name}': pick another name")
    except UnknownEndpoint:
        pass
    added = await reg.add(endpoint, actor_of(operator))
    await _declare(link, settings, added)
    _note("added", operator, added.name)
    return Made(added, secret)


async def update(
    settings: Settings,
    reg: Registry,
    link: BrokerLink,
    operator: Operator,
    name: str,
    fields: dict[str, Any],
) -> Endpoint:
    """Change the editable fields given, and `enabled` (a disable or an enable, audited as
    such); the same checks as a new endpoint."""
    may_change(operator)
    fields = dict(fields)
    enabled = fields.pop("enabled", None)
    if "types" in fields:
        fields["types"] = check_types(fields["types"])
    before = await get(reg, name)
    after = before
    try:
        if fields:
            after = await registry.edit(reg, name, actor_of(operator), **fields)
        if enabled is True:
            after = await registry.enable(reg, name, actor_of(operator))
        elif enabled is False:
            after = await registry.disable(reg, name, actor_of(operator))
    except UnknownEndpoint:
        raise _missing(name) from None
    if after.types != before.types:
        await _declare(link, settings, after, before.types)
    changed = sorted(fields) + ([] if enabled is None else ["enabled"])
    _note("changed", operator, name, fields=changed)
    return after


async def set_enabled(
    reg: Registry, operator: Operator, name: str, enabled: bool, reason: str = ""
) -> Endpoint:
    may_change(operator)
    try:
        if enabled:
            done = await registry.enable(reg, name, actor_of(operator))
        else:
            done = await registry.disable(reg, name, actor_of(operator), reason)
    except UnknownEndpoint:
        raise _missing(name) from None
    _note("enabled" if enabled else "disabled", operator, name)
    return done


async def remove(reg: Registry, link: BrokerLink, operator: Operator, name: str) -> int:
    """Remove the endpoint and its queues; returns how many waiting events were dropped."""
    may_change(operator)
    try:
        gone = await reg.remove(name, actor_of(operator))
    except UnknownEndpoint:
        raise _missing(name) from None
    connection = await link.connection()
    channel = await connection.channel()
    try:
        dropped = await queues.remove(channel, name, gone.types)
    finally:
        if not channel.is_closed:
            await channel.close()
    _note("removed", operator, name, dropped=dropped)
    return dropped


async def rotate(
    reg: Registry, operator: Operator, name: str, overlap_s: float = DEFAULT_OVERLAP_S
) -> Made:
    """A fresh secret signs from now on; the old ones too for `overlap_s`."""
    may_change(operator)
    secret = new_secret()
    try:
        done = await registry.rotate_secret(reg, name, actor_of(operator), secret, overlap_s)
    except UnknownEndpoint:
        raise _missing(name) from None
    _note("rotated", operator, name, overlap_s=overlap_s)
    return Made(done, secret)


async def resend(
    settings: Settings,
    reg: Registry,
    operator: Operator,
    name: str,
    *,
    event_id: str | None = None,
    source: str | None = None,
    failed_since: datetime | None = None,
) -> int:
    """Queue one event (by id) or every event whose delivery failed since a time for the
    endpoint again; returns how many. The registry records who asked on each copy's log line."""
    may_change(operator)
    if (event_id is None) == (failed_since is None):
        raise EndpointError("say which: an event id, or a time to resend every failed one since")
    await get(reg, name)
    if failed_since is not None and failed_since.tzinfo is None:
        failed_since = failed_since.replace(tzinfo=UTC)  # a time without a zone is UTC
    actor = actor_of(operator)
    try:
        if event_id is not None:
            await resend_one(settings, name, event_id, actor, source)
            count = 1
        else:
            count = await resend_failed(settings, name, failed_since, actor)
    except UnknownEndpoint:
        raise _missing(name) from None
    except ForgottenEvent:
        raise  # 410, as every read of it answers
    except NotItsType as error:
        raise EndpointError(str(error)) from None
    except LookupError as error:
        raise NotFound(str(error)) from None
    _note("resent", operator, name, count=count, event_id=event_id)
    return count
