"""Robustness: whatever a client sends (oversized headers, deeply nested or oversized bodies,
truncated requests, bytes at random), hub-api answers with a 4xx or a 202, never a 5xx, logs no
ASGI error, and its memory stays where it was."""

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_processes import THROUGH_GATEWAY, RunningApi, running_api
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from provider_webhooks import webhook

from tests.support.signing import SECRETS_ENV

MIB = 1024 * 1024
AMQP_BOUND_HEADERS = ["traceparent", "tracestate", "x-correlation-id", "ce-subject", "ce-id"]
FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def fuzzed_api(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    with running_api(amqp_url, tmp_path_factory.mktemp("robustness"), **SECRETS_ENV) as running:
        yield running


@pytest.fixture(scope="module")
def client(fuzzed_api: RunningApi) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzzed_api.url, headers=THROUGH_GATEWAY, timeout=20) as client:
        yield client


def rss_bytes(running: RunningApi) -> int:
    status = Path(f"/proc/{running.process.process.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]


def nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@FUZZ
@given(
    header=st.sampled_from(AMQP_BOUND_HEADERS),
    size=st.integers(min_value=0, max_value=300 * 1024),
    route=st.sampled_from(["webhook", "structured", "binary"]),
)
def test_a_header_of_any_size_is_never_a_5xx(client, header, size, route):
    if route == "webhook":
        request = webhook("github").request()
    else:
        request = {
            "url": "/events",
            "content": json.dumps({"type": "ci.fuzz", "data": {}}),
            "headers": {"content-type": "application/cloudevents+json"},
        }
        if route == "binary":
            request["headers"] = {"ce-specversion": "1.0", "ce-type": "ci.fuzz"}
            request["content"] = b"{}"
    request["headers"][header] = "v" * size

    response = client.post(**request)

    assert response.status_code in (202, 400, 413, 415, 422, 431), response.text


@FUZZ
@given(
    depth=st.integers(min_value=1, max_value=200_000),
    kind=st.sampled_from(["array", "object"]),
    route=st.sampled_from(["/events", "/webhooks/stripe", "/webhooks/hmac"]),
)
def test_a_body_nested_to_any_depth_is_never_a_5xx(client, depth, kind, route):
    body = nested(depth, kind)
    if route == "/events":
        wrapped = b'{"type":"ci.fuzz","data":' + body + b"}"
        response = client.post(
            route, content=wrapped, headers={"content-type": "application/cloudevents+json"}
        )
    else:
        response = client.post(route, content=body, headers={"content-type": "application/json"})

    assert response.status_code < 500, response.text


@FUZZ
@given(body=st.binary(max_size=4096), content_type=st.sampled_from(
    ["application/json", "application/cloudevents+json", "application/x-www-form-urlencoded",
     "text/plain", ""]))  # fmt: skip
def test_bytes_at_random_are_never_a_5xx(client, body, content_type):
    for url in ("/events", "/webhooks/kiwify", "/webhooks/twilio"):
        response = client.post(url, content=body, headers={"content-type": content_type})
        assert response.status_code < 500, response.text


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.floats(min_value=0.0, max_value=0.99))
def test_a_request_cut_anywhere_is_answered_or_closed_and_logs_no_error(fuzzed_api, cut):
    request = webhook("stripe").request()
    body = request["content"]
    head = f"POST {request['url']} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in {**request["headers"], **THROUGH_GATEWAY}.items())
    whole = head.encode() + b"\r\n" + body
    port = int(fuzzed_api.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(whole[: int(len(whole) * cut)])
        connection.shutdown(socket.SHUT_WR)  # nothing more is coming
        answer = connection.recv(4096)

    assert answer == b"" or not answer.startswith(b"HTTP/1.1 5"), answer
    assert "Exception in ASGI application" not in fuzzed_api.process.log


def test_after_all_that_memory_is_where_it_was(fuzzed_api, client):
    # Warmed up by the tests above; one more round of the largest inputs must not grow it.
    before = rss_bytes(fuzzed_api)
    for _ in range(20):
        request = webhook("github").request()
        request["headers"]["tracestate"] = "v" * (300 * 1024)
        client.post(**request)
        client.post("/webhooks/stripe", content=nested(200_000, "array"),
                    headers={"content-type": "application/json"})  # fmt: skip
        client.post("/events", content=b"x" * (2 * MIB),
                    headers={"content-type": "application/cloudevents+json"})  # fmt: skip
    after = rss_bytes(fuzzed_api)

    assert after - before < 32 * MIB
    assert client.get("/livez").status_code == 200
