"""A consumer loses the broker and gets it back: it says so on /readyz, reconnects by itself and
goes on with what queued up meanwhile. The outage is a cut proxy in front of the shared broker."""

import base64
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import standardwebhooks

from tests.support.broker import fresh_vhost
from tests.support.net import free_port
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import HubProcess, start_consumer, wait_http_ready
from tests.support.senders import post_internal_event
from tests.support.settings import hub_env
from tests.support.tcp_proxy import TcpProxy

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"outage-test-secret").decode()


def status_within(url: str, status: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == status:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("outage")
    endpoint = NotifyEndpoint()
    with fresh_vhost() as amqp_url, TcpProxy.to_url(amqp_url) as proxy:
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=f"sqlite:///{tmp}/hookhub.db",
            HOOKHUB_NOTIFY_URL=endpoint.url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
        )
        api_port = free_port()
        api = HubProcess(["api", "--port", str(api_port)], env, tmp / "api.log")
        # Only the consumer goes through the proxy: the API keeps taking events during the outage.
        proxied = {**env, "HOOKHUB_AMQP_URL": proxy.url_through(amqp_url, reconnect_interval="0.5")}
        consumer, readyz = start_consumer("notifications", proxied, tmp)
        try:
            wait_http_ready(f"http://127.0.0.1:{api_port}/readyz", process=api)
            wait_http_ready(readyz, process=consumer)
            yield {
                "proxy": proxy,
                "endpoint": endpoint,
                "api": f"http://127.0.0.1:{api_port}",
                "readyz": readyz,
                "consumer": consumer,
            }
        finally:
            consumer.stop()
            api.stop()
            endpoint.close()


def post_ci_event(api: str, event_id: str) -> None:
    response = post_internal_event(api, "ci.build.finished", event_id)
    assert response.status_code == 202, response.text


def deliveries_of(endpoint: NotifyEndpoint, event_id: str) -> list:
    return [r for r in endpoint.received if r.headers["webhook-id"] == event_id]


def test_a_consumer_reconnects_by_itself_and_delivers_what_queued_during_the_outage(outage):
    proxy, endpoint = outage["proxy"], outage["endpoint"]
    before, during = f"before-{uuid.uuid4().hex[:6]}", f"during-{uuid.uuid4().hex[:6]}"
    post_ci_event(outage["api"], before)
    endpoint.wait_for("ci.build.finished", count=1)

    proxy.cut()
    try:
        assert status_within(outage["readyz"], 503, timeout_s=10), "consumer still says ready"
        post_ci_event(outage["api"], during)  # accepted by the API, waits in the broker
        time.sleep(1)
        assert deliveries_of(endpoint, during) == []
    finally:
        proxy.restore()

    assert status_within(outage["readyz"], 200, timeout_s=30), outage["consumer"].log[-2000:]
    endpoint.wait_for("ci.build.finished", count=2, timeout_s=30)
    time.sleep(1)
    [delivered] = deliveries_of(endpoint, during)
    payload = standardwebhooks.Webhook(NOTIFY_SECRET).verify(delivered.body, delivered.headers)
    assert payload["data"] == {"ok": True}
    assert len(deliveries_of(endpoint, before)) == 1


def test_an_event_in_hand_when_the_broker_drops_is_finished_and_delivered_once(outage):
    """The broker goes away while a notification's POST is in flight: the consumer finishes it
    and writes its marker, so the redelivery after the outage is a duplicate, not a second POST."""
    proxy, endpoint = outage["proxy"], outage["endpoint"]
    event_id = f"in-hand-{uuid.uuid4().hex[:6]}"
    endpoint.delay_s = 1.5
    try:
        post_ci_event(outage["api"], event_id)
        deadline = time.monotonic() + 20
        while not deliveries_of(endpoint, event_id) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert deliveries_of(endpoint, event_id), "the POST never started"
        proxy.cut()  # the endpoint is still holding its answer
        try:
            assert status_within(outage["readyz"], 503, timeout_s=10), "consumer still says ready"
        finally:
            proxy.restore()
    finally:
        endpoint.delay_s = 0.0
    assert status_within(outage["readyz"], 200, timeout_s=30), outage["consumer"].log[-2000:]
    # The broker redelivers the unacked copy at once on reconnect; give it time to arrive.
    sentinel = f"sentinel-{uuid.uuid4().hex[:6]}"
    post_ci_event(outage["api"], sentinel)
    deadline = time.monotonic() + 30
    while not deliveries_of(endpoint, sentinel) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert deliveries_of(endpoint, sentinel), outage["consumer"].log[-2000:]
    assert len(deliveries_of(endpoint, event_id)) == 1, outage["consumer"].log[-3000:]


def test_a_failure_in_hand_when_the_broker_drops_is_retried_as_one_event(outage):
    """The endpoint fails (500, slowly) while the broker goes away and comes back: the failure
    that finishes on the dead channel parks no copy, since the broker redelivers the original;
    otherwise the event would walk the retry queues twice, as two."""
    proxy, endpoint = outage["proxy"], outage["endpoint"]
    event_id = f"flaky-{uuid.uuid4().hex[:6]}"
    endpoint.status_for_type["ci.flaky.failed"] = 500
    endpoint.delay_s = 2.0
    try:
        response = post_internal_event(outage["api"], "ci.flaky.failed", event_id)
        assert response.status_code == 202, response.text
        wait_until(lambda: deliveries_of(endpoint, event_id), "the first POST never started")
        proxy.cut()  # while the endpoint holds its 500
        time.sleep(0.3)
        proxy.restore()
        # First POST (dropped), its redelivery, then the retry copy back from the 5 s queue.
        wait_until(lambda: len(deliveries_of(endpoint, event_id)) >= 3, "no retry", 30)
    finally:
        endpoint.delay_s = 0.0
        endpoint.status_for_type.pop("ci.flaky.failed")
    lines = [line for line in outage["consumer"].log.splitlines() if event_id in line]
    retried = [json.loads(line)["attempts"] for line in lines if '"event.retried"' in line]
    assert retried == sorted(set(retried)), f"two copies retried: attempts {retried}"
    assert any('"event.unsettled"' in line for line in lines)


def wait_until(condition, failure: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.01)
