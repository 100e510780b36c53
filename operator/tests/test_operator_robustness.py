"""Robustness: whatever an operator's browser or script sends the console (query strings at
random, dates and patterns at the edges, oversized, nested or truncated forms), the answer is a
page or a 4xx, never a 5xx, and the service's memory stays where it was."""

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from operator_hub import OPERATOR, Hub, eventually, running_hub

MIB = 1024 * 1024
FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
FILTERS = ["id", "type", "provider", "source", "correlation_id", "order", "since", "until",
           "limit", "unrouted"]  # fmt: skip
TIMES = st.one_of(
    st.datetimes().map(lambda at: at.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-13-01"]),
)
PATTERNS = st.lists(
    st.sampled_from(["#", "*", "stripe", "a", "%", "", "é", "x" * 300]), max_size=60
).map(".".join)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("operator-robustness")) as running:
        yield running


@pytest.fixture(scope="module")
def client(hub: Hub) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.operator, headers=OPERATOR, timeout=30) as client:
        yield client


def rss_bytes(hub: Hub) -> int:
    assert hub.operator_process is not None
    status = Path(f"/proc/{hub.operator_process.process.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]


@FUZZ
@given(
    path=st.sampled_from(
        ["/api/events", "/events", "/api/parking-lots/notifications", "/parking-lots/payments"]
    ),  # fmt: skip
    params=st.dictionaries(
        st.sampled_from(FILTERS),
        st.one_of(st.text(max_size=300), TIMES, PATTERNS, st.integers().map(str)),
        max_size=5,
    ),
)
def test_any_query_string_is_a_page_or_a_4xx(client, path, params):
    if "type" in params and path.endswith(("notifications", "payments")):
        params["type"] = params["type"][:2000]
    response = client.get(path, params=params)

    assert response.status_code < 500, response.text[:500]


@FUZZ
@given(since=TIMES, until=TIMES, pattern=PATTERNS)
def test_dates_and_patterns_at_the_edges_are_a_page_or_a_422(client, since, until, pattern):
    for path in ("/api/events", "/events"):
        response = client.get(path, params={"since": since, "until": until, "type": pattern})
        assert response.status_code in (200, 422), response.text[:500]


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(min_value=0, max_value=3 * MIB),
    depth=st.integers(min_value=0, max_value=100_000),
    chunked=st.booleans(),
)
def test_oversized_nested_or_chunked_forms_are_a_4xx(client, size, depth, chunked):
    body = b"action=purge&id=" + b"[" * depth + b"x" * size
    content: bytes | Iterator[bytes] = body
    if chunked:
        content = iter([body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""])
    try:
        response = client.post(
            "/parking-lots/notifications/confirm",
            content=content,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    except httpx.HTTPError:  # answered 413 and closed while the rest was still being sent
        return
    assert 400 <= response.status_code < 500


def test_after_all_that_memory_is_where_it_was(hub, client):
    before = rss_bytes(hub)
    for _ in range(10):
        client.get("/api/events", params={"type": "#.nomatch", "since": "0001-01-01"})
        try:
            client.post(
                "/parking-lots/notifications/confirm",
                content=iter([b"x" * MIB] * 20),
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
        except httpx.HTTPError:
            pass
    after = rss_bytes(hub)

    assert after - before < 32 * MIB
    assert client.get("/livez").status_code == 200


def test_a_browser_that_leaves_mid_form_is_an_info_line_not_an_error(hub):
    head = (
        "POST /parking-lots/notifications/confirm HTTP/1.1\r\nhost: x\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in OPERATOR.items())
        + "content-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\nid=1"
    ).encode()
    port = int(hub.operator.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head)  # and gone, before the rest of the form

    assert hub.operator_process is not None
    eventually(lambda: "request.client_left" in hub.operator_process.log, what="the info line")
    assert "Exception in ASGI application" not in hub.operator_process.log
