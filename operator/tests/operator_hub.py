"""The whole hub for the operator service's tests, each part a real process on the real broker:
hub-api, the three consumers, the indexer and `hookhub operator`, behind no Kong; the tests send
the headers Kong would."""

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from hookhub import specs

from tests.support.broker import fresh_vhost
from tests.support.net import free_port
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import HubProcess, start_consumer, wait_http_ready
from tests.support.senders import post_internal_event, stripe_event
from tests.support.settings import GATEWAY_SECRET, hub_env
from tests.support.signing import signed_request

CSRF_KEY = "operator-tests-csrf-key-of-its-own-0123456789"
NOTIFY_SECRET = "whsec_" + base64.b64encode(b"operator-test-secret").decode()
# What Kong adds for the two operator consumers of gateway/kong.yml.
OPERATOR = {
    "x-hookhub-gateway-secret": GATEWAY_SECRET,
    "x-consumer-username": "operator",
    "x-consumer-groups": "operators",
}
READ_ONLY = {
    "x-hookhub-gateway-secret": GATEWAY_SECRET,
    "x-consumer-username": "operator-readonly",
    "x-consumer-groups": "operators-readonly",
}


def eventually(check: Callable[[], Any], timeout_s: float = 20, what: str = "it") -> Any:
    """The first truthy result of `check`, polled until `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s}s"
        time.sleep(0.2)
    return result


@dataclass
class Hub:
    api: str
    operator: str
    env: dict[str, str]
    endpoint: NotifyEndpoint
    log_dir: Path
    operator_process: HubProcess | None = None

    def get(self, path: str, headers: dict[str, str] = OPERATOR, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.operator}{path}", headers=headers, params=params, timeout=20)

    def indexed(self, event_id: str) -> dict[str, Any]:
        """The event as the read API lists it, once the indexer has it."""
        return eventually(
            lambda: self.get("/api/events", id=event_id).json(), what=f"indexing {event_id}"
        )[0]

    def journey(self, event_id: str) -> list[dict[str, Any]]:
        response = self.get(f"/api/events/{event_id}/journey")
        assert response.status_code == 200, response.text
        return response.json()["timeline"]

    def parked_ids(self, consumer: str) -> set[str]:
        response = self.get(f"/api/parking-lots/{consumer}")
        assert response.status_code == 200, response.text
        return {p["id"] for p in response.json()["parked"]}

    def post_stripe(self, order_id: str, correlation_id: str) -> tuple[str, bytes]:
        """A signed Stripe webhook through hub-api; its event id and the body sent."""
        headers, query, body = signed_request("stripe", stripe_event(order_id))
        response = httpx.post(
            f"{self.api}/webhooks/stripe",
            content=body,
            params=query,
            headers={
                **headers,
                "x-hookhub-gateway-secret": GATEWAY_SECRET,
                "x-consumer-username": "stripe",
                "x-correlation-id": correlation_id,
            },
            timeout=10,
        )
        assert response.status_code == 202, response.text
        return response.json()["id"], body

    def park(self, event_type: str) -> str:
        """An internal event the notification receiver refuses (400): parked at once by the
        notifications consumer, and indexed. The receiver takes that type again afterwards."""
        event_id = f"ci-{uuid.uuid4().hex[:8]}"
        self.endpoint.status_for_type[event_type] = 400
        try:
            assert post_internal_event(self.api, event_type, event_id).status_code == 202
            eventually(lambda: event_id in self.parked_ids("notifications"), what="parking")
        finally:
            self.endpoint.status_for_type.pop(event_type)
        self.indexed(event_id)
        return event_id


def start_operator(env: dict[str, str], log_dir: Path, *args: str) -> tuple[HubProcess, str]:
    """`hookhub operator` as a real process; returns it and its base URL."""
    port = free_port()
    env = {"HOOKHUB_OPERATOR_CSRF_KEY": CSRF_KEY, **env}
    process = HubProcess(
        ["operator", "--port", str(port), *args], env, log_dir / f"operator-{port}.log"
    )
    return process, f"http://127.0.0.1:{port}"


@contextmanager
def running_hub(log_dir: Path) -> Iterator[Hub]:
    endpoint = NotifyEndpoint()
    with fresh_vhost() as amqp_url:
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=f"sqlite:///{log_dir}/hookhub.db",
            HOOKHUB_NOTIFY_URL=endpoint.url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
            HOOKHUB_RETRY_DELAYS="0.5",
        )
        api_port = free_port()
        api = f"http://127.0.0.1:{api_port}"
        processes = [HubProcess(["api", "--port", str(api_port)], env, log_dir / "api.log")]
        try:
            wait_http_ready(f"{api}/readyz", process=processes[0])
            for name in specs.names():
                consumer, readyz = start_consumer(name, env, log_dir)
                processes.append(consumer)
                wait_http_ready(readyz, process=consumer)
            processes.append(HubProcess(["index"], env, log_dir / "index.log"))
            operator, url = start_operator(
                {**env, "HOOKHUB_API_METRICS_URL": f"{api}/metrics"}, log_dir
            )
            processes.append(operator)
            wait_http_ready(f"{url}/readyz", process=operator)
            yield Hub(api, url, env, endpoint, log_dir, operator)
        finally:
            for process in processes:
                process.stop()
            endpoint.close()
