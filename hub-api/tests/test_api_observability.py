"""What an operator sees of hub-api: Prometheus metrics, JSON log lines, the OpenAPI document."""

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from api_processes import RunningApi, running_api
from prometheus_client.parser import text_string_to_metric_families
from provider_webhooks import webhook

from tests.support.settings import GATEWAY_SECRET, PROVIDER_SECRETS
from tests.support.signing import signed_request


@pytest.fixture(scope="module")
def observed_api(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    """A hub-api of this module's own, so its metrics and log hold only this module's requests."""
    with running_api(amqp_url, tmp_path_factory.mktemp("observed-api")) as running:
        yield running


@pytest.fixture
async def client(observed_api: RunningApi) -> AsyncIterator[httpx.AsyncClient]:
    async with observed_api.client() as client:
        yield client


def samples(metrics_text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == name
    ]


def log_lines(api: RunningApi) -> list[dict]:
    return [json.loads(line) for line in api.process.log.splitlines() if line.strip()]


async def test_metrics_count_requests_by_provider_and_status(client):
    assert (await client.post(**webhook("stripe").request())).status_code == 202
    unsigned = webhook("stripe").request()
    del unsigned["headers"]["stripe-signature"]
    assert (await client.post(**unsigned)).status_code == 401

    response = await client.get("/metrics")

    assert response.status_code == 200
    requests = samples(response.text, "hookhub_requests_total")
    for status in ("202", "401"):
        counted = {"route": "webhooks", "provider": "stripe", "status": status}
        assert any(labels == counted and value >= 1 for labels, value in requests), requests


async def test_metrics_have_a_publish_latency_histogram_and_the_broker_state(client):
    assert (await client.post(**webhook("github").request())).status_code == 202

    text = (await client.get("/metrics")).text

    [(_, published)] = samples(text, "hookhub_publish_seconds_count")
    assert published >= 1
    assert any(
        labels.get("le") == "0.05" for labels, _ in samples(text, "hookhub_publish_seconds_bucket")
    )
    assert samples(text, "hookhub_broker_connected") == [({}, 1.0)]


async def test_an_accepted_event_is_logged_as_json_with_its_event_and_correlation_ids(
    observed_api, client
):
    request = webhook("hotmart").request()
    request["headers"]["x-correlation-id"] = "corr-log-1"

    response = await client.post(**request)

    assert response.status_code == 202, response.text
    accepted = [line for line in log_lines(observed_api) if line["event"] == "event.accepted"]
    assert any(
        line["event_id"] == response.json()["id"] and line["correlation_id"] == "corr-log-1"
        for line in accepted
    ), accepted


async def test_a_rejected_event_is_logged_with_its_event_and_correlation_ids(observed_api, client):
    response = await client.post(
        "/events",
        json={"id": "evt-log-403", "type": "payment.approved", "data": {}},
        headers={
            "content-type": "application/cloudevents+json",
            "x-correlation-id": "corr-log-403",
        },
    )

    assert response.status_code == 403, response.text
    rejected = [line for line in log_lines(observed_api) if line["event"] == "request.rejected"]
    assert any(
        line["status"] == 403
        and line["event_id"] == "evt-log-403"
        and line["correlation_id"] == "corr-log-403"
        for line in rejected
    ), rejected


async def test_no_secret_ever_appears_in_the_log(observed_api, client):
    for provider in PROVIDER_SECRETS:
        assert (await client.post(**webhook(provider).request())).status_code == 202
    for provider in ("hotmart", "kiwify", "hmac"):  # rejections, where a check could echo a secret
        headers, query, body = signed_request(provider, webhook(provider).body, secret="wrong")
        response = await client.post(
            f"/webhooks/{provider}", content=body, headers=headers, params=query
        )
        assert response.status_code == 401
    async with httpx.AsyncClient(base_url=observed_api.url) as direct:
        wrong_gateway = {"x-hookhub-gateway-secret": "wrong"}
        assert (await direct.post("/events", json={}, headers=wrong_gateway)).status_code == 401

    log = observed_api.process.log

    assert log_lines(observed_api)  # every line is JSON, and there are some
    for secret in (*PROVIDER_SECRETS.values(), GATEWAY_SECRET, "guest:guest"):
        assert secret not in log


async def test_openapi_document_lists_every_endpoint(client):
    response = await client.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths) >= {"/webhooks/{provider}", "/events", "/livez", "/readyz", "/metrics"}
    assert "post" in paths["/webhooks/{provider}"] and "post" in paths["/events"]
    assert "application/cloudevents+json" in paths["/events"]["post"]["requestBody"]["content"]


async def test_ingest_request_durations_are_measured_by_route_template_and_status(api, hub_api):
    await api.post("/webhooks/no-such-provider", content=b"{}")
    async with httpx.AsyncClient() as client:
        metrics = (await client.get(f"{hub_api}/metrics")).text

    line = 'hookhub_request_duration_seconds_count{route="/webhooks/{provider}",status="404"}'
    assert any(row.startswith(line) and float(row.split()[-1]) >= 1 for row in metrics.splitlines())
