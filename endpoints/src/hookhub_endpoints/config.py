"""The endpoints file (`HOOKHUB_ENDPOINTS_FILE`, mounted by compose and the chart): endpoints as
configuration, applied to the registry when a delivery worker starts (and by `hookhub endpoints
load`). YAML (JSON is YAML too):

    endpoints:
      - name: billing
        url: https://billing.example/hooks
        types: ["payment.#", "order.ready"]
        secret: ${BILLING_WEBHOOK_SECRET}    # whsec_...; ${VAR} read from the environment
        max_in_flight: 5                     # optional, as are rate_per_s, timeout_s, description

The file owns the endpoints it added: one it no longer lists is removed; endpoints added
otherwise (the CLI, the operator) are left alone. A changed secret is rotated in with the usual
overlap. Pause and disable stay the operators' and the circuit breaker's.
"""

import os
from pathlib import Path
from typing import Any

import yaml

from hookhub_endpoints import registry as endpoints
from hookhub_endpoints.model import Endpoint, EndpointError, Secret, UnknownEndpoint
from hookhub_endpoints.registry import Registry

FIELDS = {
    "name",
    "url",
    "types",
    "secret",
    "max_in_flight",
    "rate_per_s",
    "timeout_s",
    "description",
}
OPTIONAL = ("max_in_flight", "rate_per_s", "timeout_s", "description")


def _actor(path: str) -> str:
    return f"config:{path}"


def parse(text: str, where: str) -> list[Endpoint]:
    """The endpoints a file's text describes; `EndpointError` naming the entry at fault."""
    try:
        document = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise EndpointError(f"{where} is not YAML: {error}") from None
    entries = document.get("endpoints") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise EndpointError(f"{where} must hold `endpoints:`, a list of endpoints")
    found: list[Endpoint] = []
    for position, entry in enumerate(entries, start=1):
        label = f"{where}, endpoint {position}"
        if not isinstance(entry, dict):
            raise EndpointError(f"{label}: must be a mapping of name, url, types, secret...")
        if unknown := set(entry) - FIELDS:
            raise EndpointError(f"{label}: unknown field(s) {', '.join(sorted(unknown))}")
        missing = [f for f in ("name", "url", "types", "secret") if not entry.get(f)]
        if missing:
            raise EndpointError(f"{label}: needs {', '.join(missing)}")
        secret = os.path.expandvars(str(entry["secret"]))
        if "$" in secret:
            raise EndpointError(f"{label}: its secret names an environment variable that is unset")
        types = entry["types"]
        try:
            found.append(
                Endpoint(
                    name=str(entry["name"]),
                    url=os.path.expandvars(str(entry["url"])),
                    types=tuple(types) if isinstance(types, list) else tuple(str(types).split(",")),
                    secrets=(Secret(secret),),
                    **{f: entry[f] for f in OPTIONAL if f in entry},
                )
            )
        except (EndpointError, TypeError) as error:
            raise EndpointError(f"{label} ({entry.get('name')}): {error}") from None
    names = [e.name for e in found]
    if len(set(names)) != len(names):
        raise EndpointError(f"{where}: an endpoint name appears twice")
    return found


def read(path: str) -> list[Endpoint]:
    """The endpoints of the file at `path`."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise EndpointError(f"cannot read the endpoints file {path}: {error.strerror}") from None
    return parse(text, path)


async def _added_by(registry: Registry, name: str) -> str | None:
    entries = await registry.audit(name, limit=1000)
    adds = [e for e in entries if e.action == "add"]
    return adds[0].actor if adds else None


async def apply(registry: Registry, wanted: list[Endpoint], path: str) -> list[str]:
    """Make the registry agree with the file; returns what changed, one line each."""
    actor = _actor(path)
    changes: list[str] = []
    for endpoint in wanted:
        try:
            saved = await registry.get(endpoint.name)
        except UnknownEndpoint:
            await registry.add(endpoint, actor)
            changes.append(f"added {endpoint.name}")
            continue
        fields: dict[str, Any] = {f: getattr(endpoint, f) for f in endpoints.EDITABLE}
        if any(getattr(saved, f) != v for f, v in fields.items()):
            await endpoints.edit(registry, endpoint.name, actor, **fields)
            changes.append(f"changed {endpoint.name}")
        if endpoint.secrets[0].value not in {s.value for s in saved.signing_secrets()}:
            await endpoints.rotate_secret(registry, endpoint.name, actor, endpoint.secrets[0].value)
            changes.append(f"rotated the secret of {endpoint.name}")
    listed = {e.name for e in wanted}
    for saved in await registry.endpoints():
        if saved.name not in listed and await _added_by(registry, saved.name) == actor:
            await registry.remove(saved.name, actor)
            changes.append(f"removed {saved.name}")
    return changes
