"""`hookhub endpoints ...` over a real store (a SQLite file) and the real broker (a vhost of its
own), run in this process as a person would type them."""

import json
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest
from hookhub import commands, topology
from hookhub.events import EXCHANGE, Event
from hookhub.settings import get_settings
from hookhub_endpoints import cli
from hookhub_endpoints.model import Endpoint, Secret, new_secret
from hookhub_endpoints.registry import open_registry
from hookhub_endpoints.stats import endpoint_stats, percentile
from typer.testing import CliRunner

from tests.support.broker import fresh_vhost


@pytest.fixture(autouse=True)
def logging_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process commands must not configure logging (it would bind to the runner's stream)."""
    monkeypatch.setattr(commands, "configure_logging", lambda *args, **kwargs: None)


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    with fresh_vhost() as url:

        async def declare() -> None:
            async with await aio_pika.connect(url) as connection:
                await topology.declare(await connection.channel(), (5.0,), 20, consumers=())

        commands.run(declare)
        yield url


@pytest.fixture
def hub(vhost: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("HOOKHUB_AMQP_URL", vhost)
    monkeypatch.setenv("HOOKHUB_STORE_URL", f"sqlite:///{tmp_path}/hookhub.db")
    monkeypatch.delenv("HOOKHUB_NOTIFY_URL", raising=False)
    get_settings.cache_clear()
    yield vhost
    get_settings.cache_clear()


def hookhub(*args: str, code: int = 0) -> dict | list | str:
    result = CliRunner().invoke(cli.app, list(args))
    assert result.exit_code == code, result.output
    return json.loads(result.stdout) if "--json" in args and code == 0 else result.output


def depth(amqp_url: str, queue: str) -> int:
    async def count() -> int:
        async with await aio_pika.connect(amqp_url) as connection:
            declared = await (await connection.channel()).declare_queue(queue, passive=True)
            return declared.declaration_result.message_count

    return commands.run(count)


def publish(amqp_url: str, type: str) -> None:
    async def send() -> None:
        async with await aio_pika.connect(amqp_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(EXCHANGE)
            event = Event(id=f"cli-{type}", source="/events/tests", type=type, data=b"{}")
            await exchange.publish(event.to_message(), event.routing_key)

    commands.run(send)


def test_an_added_endpoint_is_listed_and_its_queue_keeps_its_events(hub: str) -> None:
    added = hookhub(
        "add", "--name", "billing", "--url", "https://billing.example/hooks",
        "--types", "payment.#,order.ready", "--max-in-flight", "4", "--rate", "2", "--json",
    )  # fmt: skip
    assert added["secret"].startswith("whsec_")
    listed = hookhub("list", "--json")
    assert [(e["name"], e["state"], e["types"]) for e in listed] == [
        ("billing", "active", ["payment.#", "order.ready"])
    ]
    assert "secret" not in json.dumps(listed).replace('"secrets"', "")
    # No worker runs: the broker keeps what the endpoint subscribed to, in its own queue.
    publish(hub, "payment.approved")
    publish(hub, "order.created")  # not its type
    assert depth(hub, topology.endpoint_queue("billing")) == 1
    shown = hookhub("show", "billing", "--json")
    assert shown["stats"]["backlog"] == 1 and shown["stats"]["attempts"] == 0
    assert shown["max_in_flight"] == 4 and shown["rate_per_s"] == 2


def test_disable_enable_and_rotate_are_audited_with_who(hub: str) -> None:
    hookhub("add", "--name", "crm", "--url", "https://crm.example/in", "--types", "order.*")
    assert hookhub("disable", "crm", "--reason", "maintenance", "--json")["state"] == "disabled"
    assert hookhub("enable", "crm", "--json")["state"] == "active"
    rotated = hookhub("rotate-secret", "crm", "--overlap", "60", "--json")
    assert len(rotated["secrets"]) == 2
    changes = hookhub("show", "crm", "--json")["changes"]
    assert [c["action"] for c in changes] == ["rotate-secret", "enable", "disable", "add"]
    assert all(c["actor"].startswith("cli:") for c in changes)


def test_remove_asks_for_yes_then_drops_the_queue(hub: str) -> None:
    hookhub("add", "--name", "gone", "--url", "https://gone.example/", "--types", "ci.#")
    assert "--yes" in hookhub("remove", "gone", code=1)
    hookhub("remove", "gone", "--yes", "--json")
    assert hookhub("list", "--json") == []
    with pytest.raises(aio_pika.exceptions.ChannelClosed):
        depth(hub, topology.endpoint_queue("gone"))


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--url", "ftp://x", "--types", "a.b"), "http:// or https://"),
        (("--url", "https://x.example", "--types", "a..b"), "words separated by '.'"),
        (("--url", "https://x.example", "--types", "a", "--secret", "nope"), "whsec_"),
    ],
)
def test_a_bad_endpoint_is_refused_with_what_to_change(
    hub: str, args: tuple[str, ...], said: str
) -> None:
    assert said in " ".join(hookhub("add", *args, code=1).split())
    assert hookhub("list", "--json") == []


def test_an_unknown_endpoint_is_named(hub: str) -> None:
    assert "no endpoint is named 'nope'" in hookhub("show", "nope", code=1)


def test_the_endpoints_file_owns_what_it_added_only(
    hub: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "whsec_" + "A" * 32 + "="
    monkeypatch.setenv("TEST_ENDPOINT_SECRET", secret)
    file = tmp_path / "endpoints.yaml"
    file.write_text(
        "endpoints:\n"
        "  - name: a\n    url: https://a.example/\n    types: ['payment.#']\n"
        "    secret: ${TEST_ENDPOINT_SECRET}\n"
        "  - name: b\n    url: https://b.example/\n    types: order.ready\n"
        f"    secret: {secret}\n"
    )
    hookhub("add", "--name", "by-hand", "--url", "https://c.example/", "--types", "ci.#")
    hookhub("load", str(file), "--json")
    assert [e["name"] for e in hookhub("list", "--json")] == ["a", "b", "by-hand"]
    file.write_text(
        "endpoints:\n"
        "  - name: a\n    url: https://a.example/v2\n    types: ['payment.#']\n"
        f"    secret: {secret}\n"
    )
    changes = hookhub("load", str(file), "--json")["changes"]
    assert changes == ["changed a", "removed b"]
    listed = {e["name"]: e for e in hookhub("list", "--json")}
    assert sorted(listed) == ["a", "by-hand"] and listed["a"]["url"] == "https://a.example/v2"


def test_stats_of_many_endpoints_share_one_connection(hub: str) -> None:
    for name, types in (("stats-a", "stats.a"), ("stats-b", "stats.b"), ("stats-c", "stats.c")):
        hookhub("add", "--name", name, "--url", f"https://{name}.example/h", "--types", types)
    publish(hub, "stats.a")
    publish(hub, "stats.b")
    secret = (Secret(new_secret()),)
    missing = Endpoint("stats-none", "https://none.example/h", ("stats.none",), secret)

    async def stats() -> list[int | None]:
        settings = get_settings()
        registry = open_registry(settings)
        try:
            endpoints = [await registry.get(n) for n in ("stats-a", "stats-b", "stats-c")]
        finally:
            await registry.close()
        async with await aio_pika.connect(hub) as connection:
            found = [
                await endpoint_stats(settings, e, None, connection)
                for e in [*endpoints, missing]  # its queues were never made: no backlog known
            ]
            assert not connection.is_closed  # the caller's, left open
        return [s.backlog for s in found]

    assert commands.run(stats) == [1, 1, 0, None]


def test_percentiles_are_nearest_rank() -> None:
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([float(n) for n in range(1, 11)], 50) == 5.0
    assert percentile([float(n) for n in range(1, 101)], 99) == 99.0
    assert percentile([], 50) is None
