"""`hookhub api` refusing to run unguarded, and `hookhub topology declare` being idempotent and
loud about conflicts, as an operator running them sees it."""

import json
import subprocess
import sys

import aio_pika
import httpx
import pytest
from hookhub.topology import UNROUTED_QUEUE, work_queue
from provider_webhooks import webhook

from tests.support.broker import fresh_vhost
from tests.support.net import free_port
from tests.support.processes import HubProcess, wait_http_ready
from tests.support.settings import hub_env

CLI_TIMEOUT_S = 60


def hookhub(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookhub.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def one_line(text: str) -> str:
    """The text with the terminal's line wrapping undone."""
    return " ".join(text.split())


def without_gateway_secret(amqp_url: str) -> dict[str, str]:
    env = hub_env(amqp_url)
    del env["HOOKHUB_GATEWAY_SECRET"]
    return env


def vhost_of(amqp_url: str) -> str:
    return amqp_url.rsplit("/", 1)[1]


def broker_definitions(vhost: str) -> dict[str, list[dict]]:
    """Hookhub's exchanges, queues (with arguments) and bindings as the broker reports them."""
    listings = {
        "exchanges": ("list_exchanges", "name", "type", "durable", "auto_delete", "arguments"),
        "queues": ("list_queues", "name", "type", "durable", "arguments"),
        "bindings": ("list_bindings", "source_name", "destination_name", "routing_key"),
    }
    definitions = {}
    for kind, (command, *columns) in listings.items():
        out = subprocess.run(
            ["rabbitmqctl", "-q", command, "-p", vhost, *columns, "--formatter", "json"],
            check=True,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
        ).stdout
        rows = [row for row in json.loads(out) if "hookhub." in json.dumps(row)]
        # Other tests' exclusive capture queues come and go; only Hookhub's own names count.
        definitions[kind] = sorted(
            (r for r in rows if not str(r.get("destination_name", "")).startswith("amq.gen-")),
            key=json.dumps,
        )
    return definitions


def test_api_without_a_gateway_secret_refuses_to_start_with_a_clear_message(amqp_url):
    result = hookhub("api", "--port", str(free_port()), env=without_gateway_secret(amqp_url))

    assert result.returncode != 0
    message = one_line(result.stderr)
    assert "HOOKHUB_GATEWAY_SECRET is not set" in message
    assert "--allow-no-gateway" in message
    assert "Traceback" not in result.stderr


async def test_api_with_allow_no_gateway_starts_serves_without_the_check_and_logs_a_warning(
    amqp_url, tmp_path
):
    port = free_port()
    process = HubProcess(
        ["api", "--port", str(port), "--allow-no-gateway"],
        without_gateway_secret(amqp_url),
        tmp_path / "api.log",
    )
    try:
        wait_http_ready(f"http://127.0.0.1:{port}/readyz", process=process)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as no_gateway:
            response = await no_gateway.post(**webhook("github").request())
        log_lines = [json.loads(line) for line in process.log.splitlines() if line.strip()]
    finally:
        process.stop()

    assert response.status_code == 202, response.text
    warnings = [line for line in log_lines if line["event"] == "gateway.check_disabled"]
    assert warnings and warnings[0]["level"] == "warning"


def test_topology_declare_run_twice_succeeds_and_changes_nothing(amqp_url):
    env = hub_env(amqp_url)

    first = hookhub("topology", "declare", env=env)
    after_first = broker_definitions(vhost_of(amqp_url))
    second = hookhub("topology", "declare", env=env)
    after_second = broker_definitions(vhost_of(amqp_url))

    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    assert first.stdout == second.stdout
    assert f"{UNROUTED_QUEUE}" in first.stdout
    assert after_second == after_first
    assert {q["name"] for q in after_first["queues"]} >= {UNROUTED_QUEUE, work_queue("payments")}


@pytest.mark.parametrize("queue", [UNROUTED_QUEUE, work_queue("payments")])
async def test_topology_declare_over_a_queue_declared_differently_fails_naming_it(queue):
    with fresh_vhost() as amqp_url:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(queue, durable=True)  # classic, not quorum

        result = hookhub("topology", "declare", env=hub_env(amqp_url))

    assert result.returncode != 0
    message = one_line(result.stderr)
    assert f"queue {queue} already exists on the broker with different settings" in message
    assert "Traceback" not in result.stderr


async def test_api_over_a_conflicting_topology_runs_and_says_which_queue_conflicts(tmp_path):
    """Not a crash loop: the API stays up and ready, and its log names the queue to fix."""
    with fresh_vhost() as amqp_url:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.declare_queue(work_queue("payments"), durable=True)  # classic
        port = free_port()
        api = HubProcess(["api", "--port", str(port)], hub_env(amqp_url), tmp_path / "api.log")
        try:
            wait_http_ready(f"http://127.0.0.1:{port}/readyz", process=api)
            async with httpx.AsyncClient(timeout=5) as client:
                still_ready = await client.get(f"http://127.0.0.1:{port}/readyz")
        finally:
            api.stop()
    assert still_ready.status_code == 200
    conflicts = [line for line in api.log.splitlines() if '"topology.conflict"' in line]
    assert len(conflicts) == 1, api.log
    assert f"queue {work_queue('payments')} already exists" in conflicts[0]


def test_an_empty_gateway_secret_counts_as_none_and_the_api_refuses_to_start(amqp_url):
    # A fresh .env has `HOOKHUB_GATEWAY_SECRET=`: that must not switch the gateway check off.
    env = {**hub_env(amqp_url), "HOOKHUB_GATEWAY_SECRET": ""}
    result = subprocess.run(
        [sys.executable, "-m", "hookhub.cli", "api", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "HOOKHUB_GATEWAY_SECRET is not set" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("HOOKHUB_AMQP_URL", "guest:pa55word@127.0.0.1:5672/", "must look like amqp://"),
        ("HOOKHUB_STORE_URL", "mongo://hookhub:pa55word@db/hookhub", "must start with one of"),
        ("HOOKHUB_RETRY_DELAYS", "5,soon", "could not convert"),
    ],
)
def test_a_malformed_setting_is_named_without_its_value_and_nothing_starts(
    amqp_url, variable, value, problem
):
    result = hookhub("status", env={**hub_env(amqp_url), variable: value})

    assert result.returncode == 2
    message = one_line(result.stderr)
    assert f"invalid settings: {variable}: " in message
    assert problem in message
    assert "pa55word" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_a_refused_broker_login_says_so_without_the_password(amqp_url):
    wrong = amqp_url.replace("guest:guest@", "guest:pa55word@")
    assert wrong != amqp_url

    result = hookhub("status", env={**hub_env(amqp_url), "HOOKHUB_AMQP_URL": wrong})

    assert result.returncode == 1
    assert "refused the login: check the user and password" in one_line(result.stderr)
    assert "pa55word" not in result.stdout + result.stderr
