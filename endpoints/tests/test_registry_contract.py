"""The registry's contract: what every adapter promises, run against each of them."""

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hookhub_endpoints import registry as endpoints
from hookhub_endpoints.model import Endpoint, EndpointError, Secret, UnknownEndpoint, new_secret
from hookhub_endpoints.registry import Registry
from hookhub_endpoints.registry_mongo import MongoRegistry
from hookhub_endpoints.registry_sqlite import SQLiteRegistry

from tests.support.mongo_standin import StandinClient

OpenRegistry = Callable[[], Registry]


@pytest.fixture(params=["sqlite", "mongodb-standin"])
async def open_another(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[OpenRegistry]:
    """Opens registries on one fresh store, each as a separate process would."""
    opened: list[Registry] = []
    url = f"sqlite:///{tmp_path}/hookhub.db"
    database = StandinClient()[f"hookhub_test_{uuid.uuid4().hex}"]

    def new() -> Registry:
        if request.param == "sqlite":
            registry: Registry = SQLiteRegistry.from_url(url)
        else:
            registry = MongoRegistry(database)  # the stand-in's duck type
        opened.append(registry)
        return registry

    yield new
    for registry in opened:
        await registry.close()


@pytest.fixture
def registry(open_another: OpenRegistry) -> Registry:
    return open_another()


def an_endpoint(name: str = "billing", **fields: object) -> Endpoint:
    return Endpoint(
        name=name,
        url="https://user:hunter2@billing.example/hooks",
        types=("payment.#",),
        secrets=(Secret(new_secret()),),
        **fields,
    )


async def test_an_added_endpoint_is_read_back_by_another_process(
    registry: Registry, open_another: OpenRegistry
) -> None:
    added = await registry.add(an_endpoint(rate_per_s=5, max_in_flight=3), actor="cli:ana")
    other = open_another()
    assert await other.get("billing") == added
    assert [e.name for e in await other.endpoints()] == ["billing"]


async def test_a_second_endpoint_of_one_name_is_refused(registry: Registry) -> None:
    await registry.add(an_endpoint(), actor="cli:ana")
    with pytest.raises(EndpointError, match="already named 'billing'"):
        await registry.add(an_endpoint(), actor="cli:ana")


async def test_every_change_is_audited_with_who_and_without_secrets(registry: Registry) -> None:
    endpoint = await registry.add(an_endpoint(), actor="cli:ana")
    await endpoints.disable(registry, "billing", actor="operator:bo", reason="maintenance")
    await endpoints.enable(registry, "billing", actor="operator:bo")
    await endpoints.edit(registry, "billing", actor="cli:ana", max_in_flight=2)
    rotated = await endpoints.rotate_secret(registry, "billing", actor="cli:ana")
    await registry.remove("billing", actor="cli:ana")

    entries = await registry.audit("billing")
    assert [(e.action, e.actor) for e in entries] == [
        ("remove", "cli:ana"),
        ("rotate-secret", "cli:ana"),
        ("edit", "cli:ana"),
        ("enable", "operator:bo"),
        ("disable", "operator:bo"),
        ("add", "cli:ana"),
    ]
    assert entries[4].after["state"] == "disabled"
    assert entries[2].before["max_in_flight"] == 10 and entries[2].after["max_in_flight"] == 2
    text = repr(entries)
    for secret in (*endpoint.secrets, *rotated.secrets):
        assert secret.value not in text
    assert "hunter2" not in text


async def test_a_resend_is_noted_in_the_audit_without_changing_the_endpoint(
    registry: Registry,
) -> None:
    added = await registry.add(an_endpoint(), actor="cli:ana")
    await registry.note("billing", actor="operator:bo", action="resend order-1000")
    latest = (await registry.audit("billing"))[0]
    assert (latest.action, latest.actor) == ("resend order-1000", "operator:bo")
    assert latest.before == latest.after and latest.after["name"] == "billing"
    assert await registry.get("billing") == added
    with pytest.raises(UnknownEndpoint):
        await registry.note("nobody", actor="cli:ana", action="resend x")


async def test_the_version_grows_with_each_change_only(registry: Registry) -> None:
    start = await registry.version()
    await registry.add(an_endpoint(), actor="cli:ana")
    added = await registry.version()
    await endpoints.enable(registry, "billing", actor="cli:ana")  # already enabled: no change
    assert await registry.version() == added > start
    await endpoints.pause(registry, "billing", reason="5 failures", actor="circuit-breaker")
    assert await registry.version() > added
    assert (await registry.get("billing")).state == "paused"


async def test_a_rotation_signs_with_both_secrets_during_the_overlap(registry: Registry) -> None:
    old = await registry.add(an_endpoint(), actor="cli:ana")
    new = await endpoints.rotate_secret(registry, "billing", actor="cli:ana", overlap_s=3600)
    assert len(new.signing_secrets()) == 2
    assert new.signing_secrets()[1].value == old.secrets[0].value
    now = await endpoints.rotate_secret(registry, "billing", actor="cli:ana", overlap_s=0)
    assert len(now.signing_secrets()) == 1


async def test_an_unknown_endpoint_is_named_in_the_error(registry: Registry) -> None:
    with pytest.raises(UnknownEndpoint, match="no endpoint is named 'nope'"):
        await registry.get("nope")
    with pytest.raises(UnknownEndpoint):
        await endpoints.disable(registry, "nope", actor="cli:ana")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Bad Name"}, "lowercase letters"),
        ({"name": "notifications"}, "shorthand endpoint"),
        ({"url": "ftp://x"}, "http:// or https://"),
        ({"types": ("payment..x",)}, "words separated by '.'"),
        ({"types": ()}, "at least one event type"),
        ({"secrets": (Secret("whsec_short"),)}, "24 to 64 bytes|base64"),
        ({"max_in_flight": 0}, "--max-in-flight"),
        ({"rate_per_s": -1}, "--rate"),
    ],
)
def test_an_unsound_endpoint_is_refused_with_what_to_change(
    fields: dict[str, object], message: str
) -> None:
    base = {
        "name": "billing",
        "url": "https://billing.example/hooks",
        "types": ("payment.#",),
        "secrets": (Secret(new_secret()),),
    }
    with pytest.raises(EndpointError, match=message):
        Endpoint(**{**base, **fields})
