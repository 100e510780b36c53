"""Fixtures shared by every test directory: a private RabbitMQ vhost and a running hub-api.

Each test session gets its own vhost on the real broker, so runs never see each other's queues.
"""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import aio_pika
import httpx
import pytest
from hookhub import tracing
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

ROOT = Path(__file__).parent
BROKER_ADMIN_URL = os.environ.get("HOOKHUB_TEST_AMQP_ADMIN", "amqp://guest:guest@127.0.0.1:5672/")
GATEWAY_SECRET = "test-gateway-secret"
PROVIDER_SECRETS = {
    "stripe": "whsec_test_stripe",
    "github": "test-github-secret",
    "standardwebhooks": "whsec_dGVzdC1zdGFuZGFyZC13ZWJob29rcy1zZWNyZXQ=",
    "mercadopago": "test-mercadopago-secret",
    "hotmart": "test-hotmart-hottok",
    "kiwify": "test-kiwify-token",
    "hmac": "test-hmac-secret",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def fresh_vhost() -> Iterator[str]:
    """A new vhost on the real broker, removed afterwards; yields its AMQP URL."""
    vhost = f"hookhub-test-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield BROKER_ADMIN_URL.rstrip("/") + "/" + vhost
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A fresh vhost for this session."""
    with fresh_vhost() as url:
        yield url


def hub_env(amqp_url: str, **extra: str) -> dict[str, str]:
    """The environment of a hub process under test: all providers enabled, fast delays; no
    tracing unless `extra` sets the OTEL_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOOKHUB_", "OTEL_"))}
    env.update(
        HOOKHUB_AMQP_URL=amqp_url,
        HOOKHUB_GATEWAY_SECRET=GATEWAY_SECRET,
        HOOKHUB_LOG_JSON="true",
        HOOKHUB_PUBLISH_TIMEOUT_S="2",
        HOOKHUB_CONNECT_TIMEOUT_S="2",
        **{f"HOOKHUB_SECRET_{name.upper()}": secret for name, secret in PROVIDER_SECRETS.items()},
    )
    env.update(extra)
    return env


@contextmanager
def traced() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process while the block runs, every span kept in memory as it ends."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()


class HubProcess:
    """A hookhub command running as a real process, with its log kept for assertions."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hookhub.cli", *args],
            env=env,
            stdout=self._log,
            stderr=self._log,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int | None = None) -> int:
        if self.process.poll() is None:
            if sig is None:
                self.process.terminate()
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def wait_http_ready(url: str, timeout_s: float = 20, process: HubProcess | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process and process.process.poll() is not None:
            raise RuntimeError(f"process exited early:\n{process.log}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(
        f"{url} not ready after {timeout_s}s" + (f":\n{process.log}" if process else "")
    )


def start_api(amqp_url: str, tmp_path: Path, **env: str) -> tuple[HubProcess, str]:
    port = free_port()
    process = HubProcess(
        ["api", "--port", str(port)], hub_env(amqp_url, **env), tmp_path / f"api-{port}.log"
    )
    base_url = f"http://127.0.0.1:{port}"
    return process, base_url


def start_consumer(name: str, env: dict[str, str], log_dir: Path) -> tuple[HubProcess, str]:
    """`hookhub consume <name>` as a real process; returns it and its /readyz URL."""
    port = free_port()
    process = HubProcess(
        ["consume", name, "--probe-port", str(port)], env, log_dir / f"{name}-{port}.log"
    )
    return process, f"http://127.0.0.1:{port}/readyz"


@contextmanager
def running_consumer(name: str, env: dict[str, str], log_dir: Path) -> Iterator[HubProcess]:
    """`hookhub consume <name>`, ready when the block starts and stopped when it ends."""
    consumer, readyz = start_consumer(name, env, log_dir)
    try:
        wait_http_ready(readyz, process=consumer)
        yield consumer
    finally:
        consumer.stop()


def post_internal_event(
    api: str, event_type: str, event_id: str, caller: str = "jenkins"
) -> httpx.Response:
    """POST /events as an internal service behind Kong would; the data is {"ok": true}."""
    return httpx.post(
        f"{api}/events",
        content=json.dumps({"type": event_type, "id": event_id, "data": {"ok": True}}),
        headers={
            "content-type": "application/cloudevents+json",
            "x-hookhub-gateway-secret": GATEWAY_SECRET,
            "x-consumer-username": caller,
        },
        timeout=10,
    )


@pytest.fixture(scope="session")
def hub_api(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """hub-api running as `hookhub api` against the session vhost; yields its base URL."""
    process, base_url = start_api(amqp_url, tmp_path_factory.mktemp("hub-api"))
    wait_http_ready(f"{base_url}/readyz", process=process)
    yield base_url
    process.stop()


@pytest.fixture
async def api(hub_api: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client to hub-api that comes through the gateway as Kong would."""
    headers = {"x-hookhub-gateway-secret": GATEWAY_SECRET, "x-consumer-username": "tests"}
    async with httpx.AsyncClient(base_url=hub_api, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(amqp_url)
    yield connection
    await connection.close()


class CapturedQueue:
    """An exclusive queue bound to hookhub.events: what the exchange routed while it existed."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue

    async def get(self, timeout_s: float = 5) -> aio_pika.abc.AbstractIncomingMessage:
        deadline = time.monotonic() + timeout_s
        while True:
            message = await self.queue.get(no_ack=True, fail=False)
            if message is not None:
                return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no message on {self.queue.name} within {timeout_s}s")
            await asyncio.sleep(0.02)

    async def empty(self) -> bool:
        return await self.queue.get(no_ack=True, fail=False) is None


@pytest.fixture
async def capture(broker: aio_pika.abc.AbstractRobustConnection):
    """Factory: `await capture("stripe.#")` binds a fresh queue to the keys given."""
    channel = await broker.channel()

    async def bind(*keys: str) -> CapturedQueue:
        exchange = await channel.get_exchange("hookhub.events")
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in keys or ("#",):
            await queue.bind(exchange, key)
        return CapturedQueue(queue)

    yield bind
    await channel.close()
