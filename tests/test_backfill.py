"""Backfill: a consumer added after the events it wants were accepted processes them from the
archive (`hookhub consume NAME --from ...`), then goes on with its live queue: every matching
event reaches the receiver exactly once across the seam, while events keep arriving during the
switch; nothing from before `--from`, and nothing it does not bind."""

import asyncio
import base64
import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import httpx
import pytest
from hookhub import topology

from tests.support.broker import fresh_vhost
from tests.support.net import free_port
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import HubProcess, wait_http_ready
from tests.support.senders import post_internal_event
from tests.support.settings import hub_env
from tests.support.tcp_proxy import TcpProxy

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"backfill-test-secret").decode()


def post_ci_events(api: str, prefix: str, count: int) -> list[str]:
    ids = [f"{prefix}-{i}-{uuid.uuid4().hex[:6]}" for i in range(count)]
    for event_id in ids:
        assert post_internal_event(api, "ci.build.finished", event_id).status_code == 202
    return ids


class Trickle:
    """Posts an event every few milliseconds in a thread, until stopped."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.sent: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sent += post_ci_events(self.api, "during", 1)
            time.sleep(0.02)

    def __enter__(self) -> "Trickle":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def delete_queue(amqp_url: str, name: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection, connection.channel() as channel:
        await channel.queue_delete(name)


def delivered_ids(endpoint: NotifyEndpoint) -> Counter[str]:
    return Counter(received.json["id"] for received in endpoint.received)


def delivered_exactly_once(endpoint: NotifyEndpoint, wanted: set[str]) -> Counter[str]:
    """Waits for every one of `wanted`, then a second more for any copy; asserts each came once
    and nothing else did."""
    wait_delivered(endpoint, wanted)
    time.sleep(1.0)
    got = delivered_ids(endpoint)
    unexpected, missing = set(got) - wanted, wanted - set(got)
    assert not unexpected and not missing, (sorted(unexpected)[:5], sorted(missing)[:5])
    doubled = {event_id: n for event_id, n in got.items() if n > 1}
    assert not doubled, f"delivered more than once: {doubled}"
    return got


def wait_delivered(endpoint: NotifyEndpoint, wanted: set[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (missing := wanted - set(delivered_ids(endpoint))) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not missing, f"{len(missing)} of {len(wanted)} never reached the receiver"


@dataclass
class Hub:
    """hub-api running in a fresh vhost whose notifications consumer does not exist yet."""

    api: str
    amqp_url: str
    env: dict[str, str]
    endpoint: NotifyEndpoint
    tmp: Path
    processes: list[HubProcess]

    def consumer(self, since: datetime, amqp_url: str | None = None) -> tuple[HubProcess, str]:
        """`hookhub consume notifications --from since`; returns it and its /readyz URL."""
        probe_port = free_port()
        env = self.env if amqp_url is None else {**self.env, "HOOKHUB_AMQP_URL": amqp_url}
        args = ["consume", "notifications", "--probe-port", str(probe_port)]
        process = HubProcess(
            [*args, "--from", since.isoformat()], env, self.tmp / f"notifications-{probe_port}.log"
        )
        self.processes.append(process)
        return process, f"http://127.0.0.1:{probe_port}/readyz"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    endpoint = NotifyEndpoint()
    with fresh_vhost() as amqp_url:
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/hookhub.db",
            HOOKHUB_NOTIFY_URL=endpoint.url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
        )
        port = free_port()
        api_process = HubProcess(["api", "--port", str(port)], env, tmp_path / "api.log")
        hub = Hub(f"http://127.0.0.1:{port}", amqp_url, env, endpoint, tmp_path, [api_process])
        try:
            wait_http_ready(f"{hub.api}/readyz", process=api_process)
            # The notifications consumer does not exist yet: no queue binds its events, only
            # the archive keeps them.
            asyncio.run(delete_queue(amqp_url, topology.work_queue("notifications")))
            yield hub
        finally:
            for process in hub.processes:
                process.stop()
            endpoint.close()


def test_a_consumer_added_later_sees_each_matching_event_once_across_the_seam(hub: Hub) -> None:
    too_early = post_ci_events(hub.api, "before", 5)
    time.sleep(2.1)  # the archive's timestamps are whole seconds
    since = datetime.now(UTC)
    time.sleep(1.1)
    past = post_ci_events(hub.api, "past", 40)
    not_bound = ["other-" + uuid.uuid4().hex[:6] for _ in range(5)]
    for event_id in not_bound:
        assert post_internal_event(hub.api, "inventory.counted", event_id).status_code == 202

    with Trickle(hub.api) as during:
        consumer, readyz = hub.consumer(since)
        started = len(during.sent)
        # Ready means subscribed to the live queue: the backfill reached the seam.
        wait_http_ready(readyz, timeout_s=60, process=consumer)
        live_at = len(during.sent)
        while len(during.sent) < live_at + 20:
            time.sleep(0.05)
    assert live_at > started, "no event arrived while the backfill ran"

    got = delivered_exactly_once(hub.endpoint, set(past) | set(during.sent))
    assert not set(too_early) & set(got)
    assert not set(not_bound) & set(got)
    assert '"backfill.done"' in consumer.log

    # It is an ordinary consumer now: the next event arrives through the live queue.
    (after,) = post_ci_events(hub.api, "after", 1)
    wait_delivered(hub.endpoint, {after}, timeout_s=20)
    assert httpx.get(readyz).status_code == 200


# A blip the robust connection is back from before the backfill notices any silence, and an
# outage it notices.
@pytest.mark.parametrize("cut_s", [0.05, 1.5])
def test_a_backfill_cut_off_from_the_broker_half_way_still_delivers_each_event_once(
    hub: Hub, cut_s: float
) -> None:
    since = datetime.now(UTC)
    time.sleep(1.1)
    past = post_ci_events(hub.api, "past", 200)
    hub.endpoint.delay_s = 0.1  # slow enough to be cut half-way through

    with TcpProxy.to_url(hub.amqp_url) as proxy:
        consumer, readyz = hub.consumer(
            since, proxy.url_through(hub.amqp_url, reconnect_interval="0.2")
        )
        deadline = time.monotonic() + 60
        while len(hub.endpoint.received) < 50:
            assert time.monotonic() < deadline, consumer.log
            time.sleep(0.02)
        proxy.cut()
        at_cut = len(hub.endpoint.received)
        time.sleep(cut_s)
        proxy.restore()
        hub.endpoint.delay_s = 0
        wait_http_ready(readyz, timeout_s=60, process=consumer)
        delivered_exactly_once(hub.endpoint, set(past))

        # Stopped while the broker is out of reach, it still stops by itself (not killed).
        proxy.cut()
        assert consumer.stop() == 0, consumer.log[-2000:]
    assert at_cut < len(past), "the cut came after the backfill was done"
    lines = consumer.log.splitlines()
    started = [json.loads(line) for line in lines if '"backfill.started"' in line]
    assert len(started) >= 2
    # It read again from a position, after what it had finished with, not from --from.
    assert isinstance(started[1]["start"], int) and started[1]["start"] > 0, started


@pytest.mark.parametrize(
    ("since", "extra_env", "says"),
    [
        ("last tuesday", {}, "'last tuesday' is not a time"),
        ("2999-01-01", {}, "is in the future"),
        ("1960-01-01", {}, "is before 1970"),
        ("2026-11-01", {"HOOKHUB_ARCHIVE_ENABLED": "false"}, "HOOKHUB_ARCHIVE_ENABLED is off"),
    ],
)
def test_a_backfill_that_cannot_be_done_is_refused_before_it_starts(
    amqp_url: str, since: str, extra_env: dict[str, str], says: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hookhub.cli", "consume", "notifications", "--from", since],
        env={**hub_env(amqp_url, **extra_env), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert says in result.stderr
