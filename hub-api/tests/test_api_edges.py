"""Edges that hold: no header, body or connection from one client degrades hub-api for the
others. Oversized AMQP-bound headers are refused at the door while legitimate events keep being
accepted on the same broker connection; truncated and slow requests are answered or closed within
seconds; a client that leaves is an info line; the docs load nothing from elsewhere."""

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from api_processes import THROUGH_GATEWAY, RunningApi, running_api
from hookhub.slow_clients import HEAD_TIMEOUT_S
from hub_api.fast_path import BODY_READ_TIMEOUT_S
from provider_webhooks import webhook

from tests.support.signing import SECRETS_ENV
from tests.support.waiting import eventually

HUGE = "x" * (200 * 1024)  # over RabbitMQ's 128 KiB frame_max on its own


@pytest.fixture(scope="module")
def edge_api(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApi]:
    with running_api(amqp_url, tmp_path_factory.mktemp("edges"), **SECRETS_ENV) as running:
        yield running


@pytest.fixture
async def api(edge_api: RunningApi):
    async with edge_api.client() as client:
        yield client


def _event(event_id: str, **headers: str) -> dict:
    body = json.dumps({"type": "ci.build", "id": event_id, "data": {}})
    return {
        "url": "/events",
        "content": body,
        "headers": {"content-type": "application/cloudevents+json", **headers},
    }


def _raw(port: int, request: bytes) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port), timeout=BODY_READ_TIMEOUT_S * 3)
    connection.sendall(request)
    return connection


def _port(running: RunningApi) -> int:
    return int(running.url.rsplit(":", 1)[1])


def _gateway_lines() -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in THROUGH_GATEWAY.items())


async def test_oversized_headers_are_refused_while_legitimate_events_keep_their_202(api, edge_api):
    connected_before = edge_api.process.log.count("broker.connected")

    async def legitimate(n: int) -> int:
        return (await api.post(**webhook("github").request())).status_code

    async def oversized(n: int) -> httpx.Response:
        header = ("traceparent", "tracestate", "x-correlation-id")[n % 3]
        request = webhook("github").request()
        request["headers"][header] = HUGE
        return await api.post(**request)

    results = await asyncio.gather(
        *(legitimate(n) for n in range(60)), *(oversized(n) for n in range(30))
    )

    legitimate_statuses, refused = results[:60], results[60:]
    assert legitimate_statuses == [202] * 60
    for response in refused:
        assert response.status_code == 431
        assert response.json()["detail"].startswith("header ")
        assert "bytes" in response.json()["detail"]
    log = edge_api.process.log
    assert log.count("broker.connected") == connected_before
    assert "broker.reconnected" not in log and "FRAME_ERROR" not in log


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"ce-subject": HUGE}, "subject is longer than the 1024 bytes accepted"),
        ({"traceparent": HUGE}, "traceparent is longer than the 128 bytes accepted"),
        ({"tracestate": "a=" + "b" * 600}, "tracestate is longer than the 512 bytes accepted"),
    ],
)
async def test_an_internal_event_with_an_oversized_attribute_is_422_naming_it_and_its_limit(
    api, headers, named
):
    if "ce-subject" in headers:
        request = {
            "url": "/events",
            "content": b"{}",
            "headers": {"ce-specversion": "1.0", "ce-type": "ci.build", **headers},
        }
    else:
        request = _event("edge-1", **headers)

    response = await api.post(**request)

    assert (response.status_code, response.json()["detail"]) == (422, named)


@pytest.mark.parametrize(
    "event_id", ["line\r\nbreak", "nul\x00byte", "caf\u00e9", " padded", "tab\there", "a  b"]
)
async def test_an_id_that_could_never_be_delivered_as_a_header_is_422(api, event_id):
    response = await api.post(**_event(event_id))

    assert response.status_code == 422
    assert "visible ASCII" in response.json()["detail"]


async def test_a_truncated_body_is_answered_408_within_seconds_and_logs_no_error(edge_api):
    started = time.monotonic()
    head = (
        b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/cloudevents+json\r\n"
        + _gateway_lines()
        + b'content-length: 1000\r\n\r\n{"type": "ci.'
    )
    with _raw(_port(edge_api), head) as connection:
        answer = connection.recv(4096)

    assert answer.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - started < BODY_READ_TIMEOUT_S + 3
    assert "Exception in ASGI application" not in edge_api.process.log


async def test_a_client_that_leaves_mid_body_is_an_info_line_not_an_error(edge_api):
    head = (
        b"POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/cloudevents+json\r\n"
        + _gateway_lines()
        + b'content-length: 1000\r\n\r\n{"type"'
    )
    _raw(_port(edge_api), head).close()

    async def logged() -> bool:
        return "request.client_left" in edge_api.process.log

    await eventually(logged, timeout_s=BODY_READ_TIMEOUT_S + 3)
    log = edge_api.process.log
    assert "request.client_left" in log
    assert "Exception in ASGI application" not in log and "ClientDisconnect" not in log


async def test_slowloris_connections_are_closed_once_their_head_is_late(api, edge_api):
    connections = [
        _raw(_port(edge_api), b"POST /events HTTP/1.1\r\nhost: x\r\n") for _ in range(20)
    ]
    try:
        for connection in connections:
            connection.sendall(b"x-a: 1\r\n")  # a header now and then, never the end
        await asyncio.sleep(HEAD_TIMEOUT_S + 1)

        assert (await api.get("/livez")).status_code == 200
        for connection in connections:
            assert connection.recv(1024) == b""  # closed by the server
    finally:
        for connection in connections:
            connection.close()


async def test_a_head_over_a_mebibyte_is_refused_431_and_the_connection_closed(api, edge_api):
    head = b"GET /livez HTTP/1.1\r\nhost: x\r\n" + b"x-filler: " + b"f" * (2 * 1024 * 1024)
    with socket.create_connection(("127.0.0.1", _port(edge_api)), timeout=10) as connection:
        with contextlib.suppress(OSError):  # the server may close before all of it is sent
            connection.sendall(head)
        answer = connection.recv(4096)
        try:
            closed = connection.recv(4096) == b""
        except ConnectionResetError:  # closed with our unread bytes still in its buffer
            closed = True

    assert answer.startswith(b"HTTP/1.1 431")
    assert closed

    assert (await api.get("/livez")).status_code == 200


async def test_the_docs_page_loads_nothing_from_elsewhere_and_keeps_kongs_prefix(api):
    response = await api.get("/docs", headers={"x-forwarded-prefix": "/hub"})

    assert response.status_code == 200
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert 'href="/hub/openapi.json"' in response.text
    assert "<script" not in response.text and "cdn" not in response.text.lower()
    assert "/webhooks/{provider}" in response.text
