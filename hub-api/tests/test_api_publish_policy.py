"""Who may publish what, over HTTP with the headers Kong sets: hub-api run with the default
publish policy (or one set in HOOKHUB_PUBLISH_POLICY) lets each internal caller publish its own
types only, answers anything else with a 403 naming the caller and the type, counts it, and
publishes nothing. Without a gateway it enforces nothing, and says so at start-up."""

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import httpx
import pytest
from api_processes import RunningApi, running_api
from hookhub.publish_policy import DEFAULT
from prometheus_client.parser import text_string_to_metric_families

from tests.support.net import free_port
from tests.support.processes import HubProcess, wait_http_ready
from tests.support.settings import GATEWAY_SECRET, hub_env

ORDER = {
    "order_id": "X-1",
    "customer": {"id": "c9", "email": "mallory@example.com", "name": "Mallory"},
    "items": [{"sku": "mug"}],
    "amount": 1,
    "currency": "BRL",
}
DATA = {
    "order.created": ORDER,
    "production.finished": {"order_id": "X-1"},
    "ci.pipeline.finished": {"result": "SUCCESS"},
    "deploy.production.finished": {"version": "1.2.3"},
}


def as_caller(caller: str) -> dict[str, str]:
    """The headers Kong sets on a request from this consumer."""
    return {"x-hookhub-gateway-secret": GATEWAY_SECRET, "x-consumer-username": caller}


def structured(event_type: str) -> dict:
    """POST /events arguments: a CloudEvent in structured mode, with data this type accepts."""
    event = {"specversion": "1.0", "id": f"evt-{uuid.uuid4().hex[:12]}", "type": event_type}
    event["data"] = DATA.get(event_type, {"ok": True})
    return {
        "url": "/events",
        "content": json.dumps(event),
        "headers": {"content-type": "application/cloudevents+json"},
    }


def binary(event_type: str) -> dict:
    """The same in binary mode: the attributes in ce-* headers, the body the data."""
    headers = {
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": f"evt-{uuid.uuid4().hex[:12]}",
        "ce-type": event_type,
    }
    data = json.dumps(DATA.get(event_type, {"ok": True}))
    return {"url": "/events", "content": data, "headers": headers}


@pytest.fixture(scope="module")
def policed_api(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """hub-api behind the gateway with the default publish policy (the variable left empty)."""
    with running_api(
        amqp_url, tmp_path_factory.mktemp("policed"), HOOKHUB_PUBLISH_POLICY=""
    ) as running:
        yield running


@pytest.fixture
async def post_as(policed_api: RunningApi):
    """Factory: `await post_as("jenkins", **request)` posts as that Kong consumer."""
    async with httpx.AsyncClient(base_url=policed_api.url, timeout=10) as client:

        async def post(caller: str, url: str, content: str, headers: dict) -> httpx.Response:
            return await client.post(url, content=content, headers={**headers, **as_caller(caller)})

        yield post


@pytest.fixture
async def everything(capture):
    """A queue bound with "#": whatever reaches the exchange lands here."""
    return await capture("#")


async def assert_nothing_published(queue) -> None:
    await asyncio.sleep(0.05)  # a wrongly published message would already be routed by now
    assert await queue.empty(), "a refused event reached the exchange"


def refusals(metrics_text: str) -> dict[str, float]:
    return {
        sample.labels["caller"]: sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "hookhub_publish_policy_refusals_total"
    }


@pytest.mark.parametrize("mode", [structured, binary])
async def test_jenkins_may_not_create_an_order_403_naming_caller_and_type_and_nothing_published(
    post_as, everything, mode
):
    response = await post_as("jenkins", **mode("order.created"))

    assert response.status_code == 403
    assert response.json()["detail"] == (
        "caller 'jenkins' may not publish 'order.created' (publish policy: ci.#, deploy.#)"
    )
    await assert_nothing_published(everything)


async def test_jenkins_may_not_mark_an_order_finished_and_nothing_published(post_as, everything):
    response = await post_as("jenkins", **structured("production.finished"))

    assert response.status_code == 403
    assert response.json()["detail"] == (
        "caller 'jenkins' may not publish 'production.finished' (publish policy: ci.#, deploy.#)"
    )
    await assert_nothing_published(everything)


@pytest.mark.parametrize(
    ("caller", "event_type"),
    [
        ("storefront", "production.finished"),
        ("storefront", "ci.pipeline.finished"),
        ("workshop", "order.created"),
        ("workshop", "deploy.production.finished"),
    ],
)
async def test_a_caller_may_not_publish_another_callers_types(
    post_as, everything, caller, event_type
):
    response = await post_as(caller, **structured(event_type))

    assert response.status_code == 403
    allowed = ", ".join(DEFAULT[caller])
    assert response.json()["detail"] == (
        f"caller '{caller}' may not publish '{event_type}' (publish policy: {allowed})"
    )
    await assert_nothing_published(everything)


async def test_a_caller_the_policy_does_not_name_may_publish_nothing(post_as, everything):
    response = await post_as("intern", **structured("ci.pipeline.finished"))

    assert response.status_code == 403
    assert response.json()["detail"] == (
        "caller 'intern' may not publish 'ci.pipeline.finished' (publish policy: nothing)"
    )
    await assert_nothing_published(everything)


@pytest.mark.parametrize(
    ("caller", "event_type"),
    [
        ("storefront", "order.created"),
        ("workshop", "production.finished"),
        ("jenkins", "ci.pipeline.finished"),
        ("jenkins", "deploy.production.finished"),
    ],
)
async def test_each_caller_publishes_its_own_types_as_itself(post_as, capture, caller, event_type):
    queue = await capture(event_type)
    request = structured(event_type)

    response = await post_as(caller, **request)

    assert response.status_code == 202, response.text
    message = await queue.get()
    assert message.headers["cloudEvents:source"] == f"/events/{caller}"
    assert message.message_id == json.loads(request["content"])["id"]


async def test_a_reserved_type_is_refused_as_reserved_whoever_asks(post_as, everything):
    response = await post_as("storefront", **structured("payment.approved"))

    assert response.status_code == 403
    assert (
        response.json()["detail"] == "type 'payment.approved' is reserved for Hookhub's own events"
    )
    await assert_nothing_published(everything)


async def test_refusals_are_counted_by_caller_and_an_unnamed_caller_as_other(policed_api, post_as):
    async with httpx.AsyncClient(base_url=policed_api.url) as client:
        before = refusals((await client.get("/metrics")).text)
        assert (await post_as("jenkins", **structured("order.created"))).status_code == 403
        assert (await post_as("stranger-1", **structured("ci.x"))).status_code == 403
        assert (await post_as("stranger-2", **structured("ci.x"))).status_code == 403
        after = refusals((await client.get("/metrics")).text)

    assert after["jenkins"] - before.get("jenkins", 0) == 1
    assert after["other"] - before.get("other", 0) == 2
    assert set(after) <= {*DEFAULT, "other"}


async def test_a_policy_set_in_the_environment_replaces_the_default(amqp_url, tmp_path, capture):
    policy = {"storefront": ["order.*"], "jenkins": ["ci.#"]}
    queue = await capture("order.#")
    with running_api(amqp_url, tmp_path, HOOKHUB_PUBLISH_POLICY=json.dumps(policy)) as api:
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
            ordered = structured("order.created")
            ordered["headers"] |= as_caller("storefront")
            by_storefront = await client.post(**ordered)
            deploy = structured("deploy.production.finished")
            deploy["headers"] |= as_caller("jenkins")
            by_jenkins = await client.post(**deploy)

    assert by_storefront.status_code == 202, by_storefront.text
    assert (await queue.get()).routing_key == "order.created"
    assert by_jenkins.status_code == 403
    assert by_jenkins.json()["detail"] == (
        "caller 'jenkins' may not publish 'deploy.production.finished' (publish policy: ci.#)"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("{jenkins: ci}", "is not JSON"),
        ('{"jenkins": "ci.#"}', "caller 'jenkins': give a list of type patterns"),
        ('{"../consumers/payments": ["#"]}', "caller '../consumers/payments' is not a Kong"),
    ],
)
def test_a_bad_policy_stops_hub_api_at_start_naming_the_setting(amqp_url, value, problem):
    env = hub_env(amqp_url, HOOKHUB_PUBLISH_POLICY=value)

    result = subprocess.run(
        [sys.executable, "-m", "hookhub.cli", "api", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    message = " ".join(result.stderr.split())
    assert result.returncode == 2, result.stderr
    assert f"HOOKHUB_PUBLISH_POLICY: {problem}" in message
    assert "Traceback" not in result.stderr


async def test_without_a_gateway_any_caller_may_publish_and_start_up_says_so(amqp_url, tmp_path):
    env = hub_env(amqp_url, HOOKHUB_PUBLISH_POLICY="")
    del env["HOOKHUB_GATEWAY_SECRET"]
    port = free_port()
    process = HubProcess(
        ["api", "--port", str(port), "--allow-no-gateway"], env, tmp_path / "api.log"
    )
    try:
        wait_http_ready(f"http://127.0.0.1:{port}/readyz", process=process)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as no_gateway:
            request = structured("production.finished")
            request["headers"]["x-consumer-username"] = "jenkins"
            response = await no_gateway.post(**request)
        log_lines = [json.loads(line) for line in process.log.splitlines() if line.strip()]
    finally:
        process.stop()

    assert response.status_code == 202, response.text
    warnings = [line for line in log_lines if line["event"] == "publish_policy.not_enforced"]
    assert warnings and warnings[0]["level"] == "warning"
    assert "any caller may publish any type" in warnings[0]["reason"]
