"""An endpoint as a store keeps it (one flat document, JSON-able), and back: one place for both
adapters. Secrets are kept as they must be to sign; `Endpoint.shown` is what leaves the store."""

from datetime import datetime
from typing import Any

from hookhub_endpoints.model import Endpoint, Secret


def _time(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def to_document(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "name": endpoint.name,
        "url": endpoint.url,
        "types": list(endpoint.types),
        "secrets": [
            {
                "value": s.value,
                "added_at": s.added_at.isoformat(),
                "expires_at": s.expires_at.isoformat() if s.expires_at else None,
            }
            for s in endpoint.secrets
        ],
        "rate_per_s": endpoint.rate_per_s,
        "max_in_flight": endpoint.max_in_flight,
        "timeout_s": endpoint.timeout_s,
        "enabled": endpoint.enabled,
        "paused_reason": endpoint.paused_reason,
        "description": endpoint.description,
        "created_at": endpoint.created_at.isoformat(),
        "updated_at": endpoint.updated_at.isoformat(),
    }


def from_document(document: dict[str, Any]) -> Endpoint:
    secrets = tuple(
        Secret(s["value"], _time(s["added_at"]), _time(s.get("expires_at")))
        for s in document["secrets"]
    )
    return Endpoint(
        name=document["name"],
        url=document["url"],
        types=tuple(document["types"]),
        secrets=secrets,
        rate_per_s=document.get("rate_per_s"),
        max_in_flight=document["max_in_flight"],
        timeout_s=document["timeout_s"],
        enabled=bool(document["enabled"]),
        paused_reason=document.get("paused_reason"),
        description=document.get("description") or "",
        created_at=_time(document["created_at"]),
        updated_at=_time(document["updated_at"]),
    )
