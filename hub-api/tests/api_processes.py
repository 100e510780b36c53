"""hub-api processes with settings of their own, for the tests that need more than the session's."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.processes import HubProcess, start_api, wait_http_ready
from tests.support.settings import GATEWAY_SECRET

THROUGH_GATEWAY = {"x-hookhub-gateway-secret": GATEWAY_SECRET, "x-consumer-username": "tests"}


@dataclass
class RunningApi:
    process: HubProcess
    url: str

    def client(self) -> httpx.AsyncClient:
        """A client that comes through the gateway, as Kong would."""
        return httpx.AsyncClient(base_url=self.url, headers=THROUGH_GATEWAY, timeout=10)


@contextmanager
def running_api(
    amqp_url: str, tmp_path: Path, ready: str = "/readyz", **env: str
) -> Iterator[RunningApi]:
    """`hookhub api` with extra HOOKHUB_* settings, once `ready` answers 200; stopped afterwards."""
    process, url = start_api(amqp_url, tmp_path, **env)
    try:
        wait_http_ready(url + ready, process=process)
        yield RunningApi(process, url)
    finally:
        process.stop()
