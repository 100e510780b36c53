"""The registry of endpoints: one protocol, two adapters (SQLite, MongoDB), one factory, and the
changes people and the circuit breaker make, each recorded in the audit (who, when, what).

Every change goes through `Registry.change` (read, change, write in one transaction), so a change
never overwrites another made at the same moment, and each is one audit entry. The audit's
highest id is the registry's change counter (`version`): a delivery worker polls it to pick up
changes without a restart.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from hookhub.settings import Settings

from hookhub_endpoints.model import (
    DEFAULT_OVERLAP_S,
    Endpoint,
    EndpointError,
    UnknownEndpoint,
    rotated,
)

__all__ = [
    "AuditEntry",
    "Endpoint",
    "EndpointError",
    "Registry",
    "UnknownEndpoint",
    "disable",
    "edit",
    "enable",
    "open_registry",
    "pause",
    "resume",
    "rotate_secret",
]

# The fields `edit` may change: the rest are the registry's (name, secrets, dates, state).
EDITABLE = ("url", "types", "rate_per_s", "max_in_flight", "timeout_s", "description")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change to one endpoint: who (`actor`, e.g. `cli:ana`, `operator:ana`,
    `config:/etc/hookhub/endpoints.yaml`, `circuit-breaker`), when, what (`action`), and the
    endpoint before and after as `Endpoint.shown` gives it (secrets by key id only; None before
    an add, after a remove)."""

    id: int
    at: datetime
    actor: str
    action: str
    endpoint: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class Registry(Protocol):
    async def open(self) -> None:
        """Make the tables now (else the first call does)."""
        ...

    async def close(self) -> None: ...

    async def endpoints(self) -> list[Endpoint]:
        """Every endpoint, by name."""
        ...

    async def get(self, name: str) -> Endpoint:
        """The endpoint named `name`; `UnknownEndpoint` if none is."""
        ...

    async def add(self, endpoint: Endpoint, actor: str) -> Endpoint:
        """Save a new endpoint; `EndpointError` if one has its name."""
        ...

    async def change(
        self, name: str, actor: str, action: str, how: Callable[[Endpoint], Endpoint]
    ) -> Endpoint:
        """Save `how(the endpoint as saved)` in one transaction, with its audit entry; the
        endpoint unchanged (and no entry) when `how` returns it as it was."""
        ...

    async def remove(self, name: str, actor: str) -> Endpoint:
        """Delete the endpoint, recording it; returns it as it was."""
        ...

    async def note(self, name: str, actor: str, action: str) -> None:
        """Record in the endpoint's audit something done to it that changes none of its settings
        (a resend: `action` says what was resent); before and after are the endpoint as it is.
        `UnknownEndpoint` if none is named `name`."""
        ...

    async def audit(self, name: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The newest `limit` changes (of one endpoint), newest first."""
        ...

    async def version(self) -> int:
        """A number that grows with every change: compare two to know whether to reload."""
        ...


def open_registry(settings: Settings) -> Registry:
    """The registry in the store `HOOKHUB_STORE_URL` names (the SQLite file, or the MongoDB
    database, the consumers use)."""
    url = settings.store_url
    if url.startswith("sqlite:"):
        from hookhub_endpoints.registry_sqlite import SQLiteRegistry

        return SQLiteRegistry.from_url(url)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from hookhub_endpoints.registry_mongo import MongoRegistry

        return MongoRegistry.from_settings(settings)
    raise ValueError(
        f"unsupported HOOKHUB_STORE_URL scheme '{url.partition(':')[0]}': "
        "use sqlite:///path or mongodb://host/db"
    )


def _now() -> datetime:
    return datetime.now(UTC)


async def edit(registry: Registry, name: str, actor: str, **fields: Any) -> Endpoint:
    """Change some of `EDITABLE` (checked as a new endpoint is)."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise EndpointError(f"cannot edit {', '.join(sorted(unknown))}: only {', '.join(EDITABLE)}")
    return await registry.change(
        name, actor, "edit", lambda e: replace(e, **fields, updated_at=_now())
    )


async def disable(registry: Registry, name: str, actor: str, reason: str = "") -> Endpoint:
    """Stop delivering to the endpoint by hand: its queue keeps its events until enabled."""
    return await registry.change(
        name,
        actor,
        "disable",
        lambda e: replace(e, enabled=False, paused_reason=reason or None, updated_at=_now()),
    )


async def enable(registry: Registry, name: str, actor: str) -> Endpoint:
    """Deliver again, by hand: clears a disable and a circuit breaker's pause alike."""
    return await registry.change(
        name,
        actor,
        "enable",
        lambda e: replace(e, enabled=True, paused_reason=None, updated_at=_now()),
    )


async def pause(registry: Registry, name: str, reason: str, actor: str) -> Endpoint:
    """The circuit breaker's hold: deliveries stop but for probes, the queue keeps filling."""
    return await registry.change(
        name, actor, "pause", lambda e: replace(e, paused_reason=reason, updated_at=_now())
    )


async def resume(registry: Registry, name: str, actor: str) -> Endpoint:
    """The end of a circuit breaker's hold (a probe got a 2xx)."""
    return await registry.change(
        name, actor, "resume", lambda e: replace(e, paused_reason=None, updated_at=_now())
    )


async def rotate_secret(
    registry: Registry,
    name: str,
    actor: str,
    secret: str | None = None,
    overlap_s: float = DEFAULT_OVERLAP_S,
) -> Endpoint:
    """Sign with `secret` (or a fresh one) from now on, and with the old ones too for
    `overlap_s` (each delivery then carries a signature of each)."""
    return await registry.change(
        name, actor, "rotate-secret", lambda e: rotated(e, secret, overlap_s, _now())
    )
