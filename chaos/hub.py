"""The hub under test: hub-api and the three consumers as real processes, with a SQLite store
and a notification receiver, started as the system tests start them (`tests/support/`)."""

import base64
import time
from pathlib import Path

import httpx
from hookhub import specs
from hookhub.settings import Settings

from chaos.receiver import Receiver
from tests.support.net import free_port
from tests.support.processes import HubProcess, start_consumer, wait_http_ready
from tests.support.settings import hub_env

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"chaos-notify-secret").decode()
# Short delays so that a failing event walks its retries and parks within a scenario; the
# defaults (5,30,300 s) would outlast it.
RETRY_DELAYS_S = (1.0, 2.0, 4.0)
READY_TIMEOUT_S = 90.0  # nine processes starting at once on a busy two-core machine
PROBE_TIMEOUT_S = 1.0


def takes_broker_list() -> bool:
    """Whether this hub reads several broker addresses from HOOKHUB_AMQP_URL (issue 9,
    defect 7) and fails over across them."""
    return "amqp_urls" in Settings.model_fields


def amqp_url_setting(urls: list[str]) -> str:
    """HOOKHUB_AMQP_URL for the hub: every node's address, comma-separated. A hub from before
    lists reads one URL, and would take the others for part of the vhost's name: it gets the
    first node only."""
    return ",".join(urls) if takes_broker_list() else urls[0]


class Hub:
    """hub-api on a fixed port (restarts keep the address the senders post to) and `replicas`
    processes per consumer on the one store, optionally the event-log indexer. `api_urls` lets
    hub-api reach the broker another way than the consumers (a proxy that can be partitioned);
    `receiver` is the notification endpoint (it may answer slowly)."""

    def __init__(
        self,
        urls: list[str],
        store_url: str,
        log_dir: Path,
        api_urls: list[str] | None = None,
        *,
        replicas: int = 1,
        indexer: bool = False,
        receiver: Receiver | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.replicas = replicas
        self.endpoint = receiver or Receiver()
        self.env = hub_env(
            amqp_url_setting(urls),
            HOOKHUB_STORE_URL=store_url,
            HOOKHUB_NOTIFY_URL=self.endpoint.url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
            HOOKHUB_RETRY_DELAYS=",".join(f"{delay:g}" for delay in RETRY_DELAYS_S),
            HOOKHUB_NOTIFY_TIMEOUT_S="3",
        )
        self.api_env = {**self.env, "HOOKHUB_AMQP_URL": amqp_url_setting(api_urls or urls)}
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.api: HubProcess | None = None
        # name → its replicas: process, its /readyz
        self.consumers: dict[str, list[tuple[HubProcess, str]]] = {}
        self.want_indexer = indexer
        self.indexer: HubProcess | None = None
        self.others: list[HubProcess] = []  # a backfill and the like, stopped at the end

    def start(self) -> None:
        """Start every process and wait until each says ready."""
        self.start_api(wait=False)
        # All at once, then each waited for: python's start-up dominates on a busy machine.
        started = [
            (self.api, f"{self.api_url}/readyz"),
            *[
                self.start_consumer(name, replica, wait=False)
                for name in specs.names()
                for replica in range(self.replicas)
            ],
        ]
        for process, readyz in started:
            wait_http_ready(readyz, READY_TIMEOUT_S, process)
        if self.want_indexer:
            self.start_indexer()

    def start_indexer(self) -> None:
        """`hookhub index`: no probe, its log says it runs."""
        self.indexer = HubProcess(
            ["index"], self.env, self.log_dir / f"index-{time.monotonic_ns()}.log"
        )

    def kill_indexer(self, sig: int) -> None:
        if self.indexer is not None:
            self.indexer.stop(sig)

    def run(self, args: list[str], name: str) -> HubProcess:
        """Another hookhub command against this hub (stopped at the end if still running)."""
        process = HubProcess(args, self.env, self.log_dir / f"{name}-{time.monotonic_ns()}.log")
        self.others.append(process)
        return process

    def start_api(self, *, wait: bool = True) -> None:
        self.api = HubProcess(
            ["api", "--port", str(self.api_port)],
            self.api_env,
            self.log_dir / f"api-{time.monotonic_ns()}.log",
        )
        if wait:
            wait_http_ready(f"{self.api_url}/readyz", READY_TIMEOUT_S, self.api)

    def start_consumer(
        self, name: str, replica: int = 0, *, wait: bool = True
    ) -> tuple[HubProcess, str]:
        process, readyz = start_consumer(name, self.env, self.log_dir)
        replicas = self.consumers.setdefault(name, [])
        if replica < len(replicas):
            replicas[replica] = (process, readyz)
        else:
            replicas.append((process, readyz))
        if wait:
            wait_http_ready(readyz, READY_TIMEOUT_S, process)
        return process, readyz

    def kill_api(self, sig: int) -> None:
        if self.api is not None:
            self.api.stop(sig)

    def kill_consumer(self, name: str, sig: int, replica: int = 0) -> None:
        self.consumers[name][replica][0].stop(sig)

    def readyz_urls(self) -> list[str]:
        return [
            f"{self.api_url}/readyz",
            *(readyz for replicas in self.consumers.values() for _, readyz in replicas),
        ]

    def all_ready(self) -> bool:
        """Every process answers 200 on /readyz now."""
        for url in self.readyz_urls():
            try:
                if httpx.get(url, timeout=PROBE_TIMEOUT_S).status_code != 200:
                    return False
            except httpx.HTTPError:
                return False
        return True

    def close(self) -> None:
        for process in self.others:
            process.stop()
        if self.indexer is not None:
            self.indexer.stop()
        for replicas in self.consumers.values():
            for process, _ in replicas:
                process.stop()
        if self.api is not None:
            self.api.stop()
        self.endpoint.close()
