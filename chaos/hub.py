"""The hub under test: hub-api and the three consumers as real processes, with a SQLite store
and a notification receiver, started as the system tests start them (`tests/support/`)."""

import base64
import time
from pathlib import Path

import httpx
from hookhub import specs
from hookhub.settings import Settings

from tests.support.net import free_port
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import HubProcess, start_consumer, wait_http_ready
from tests.support.settings import hub_env

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"chaos-notify-secret").decode()
# Short delays so that a failing event walks its retries and parks within a scenario; the
# defaults (5,30,300 s) would outlast it.
RETRY_DELAYS_S = (1.0, 2.0, 4.0)
READY_TIMEOUT_S = 30.0
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
    """hub-api on a fixed port (restarts keep the address the senders post to) and one process
    per consumer. `api_urls` lets hub-api reach the broker another way than the consumers (a
    proxy that can be partitioned)."""

    def __init__(
        self,
        urls: list[str],
        store_url: str,
        log_dir: Path,
        api_urls: list[str] | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.endpoint = NotifyEndpoint()
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
        self.consumers: dict[str, tuple[HubProcess, str]] = {}  # name → process, its /readyz

    def start(self) -> None:
        """Start every process and wait until each says ready."""
        self.start_api()
        for name in specs.names():
            self.start_consumer(name)

    def start_api(self) -> None:
        self.api = HubProcess(
            ["api", "--port", str(self.api_port)],
            self.api_env,
            self.log_dir / f"api-{time.monotonic_ns()}.log",
        )
        wait_http_ready(f"{self.api_url}/readyz", READY_TIMEOUT_S, self.api)

    def start_consumer(self, name: str) -> None:
        process, readyz = start_consumer(name, self.env, self.log_dir)
        self.consumers[name] = (process, readyz)
        wait_http_ready(readyz, READY_TIMEOUT_S, process)

    def kill_api(self, sig: int) -> None:
        if self.api is not None:
            self.api.stop(sig)

    def kill_consumer(self, name: str, sig: int) -> None:
        self.consumers[name][0].stop(sig)

    def readyz_urls(self) -> list[str]:
        return [f"{self.api_url}/readyz", *(readyz for _, readyz in self.consumers.values())]

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
        for process, _ in self.consumers.values():
            process.stop()
        if self.api is not None:
            self.api.stop()
        self.endpoint.close()
