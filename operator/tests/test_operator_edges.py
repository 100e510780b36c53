"""Edges that hold on the operator service: one operator's search, form, date or slow connection
degrades no one else's console. Searches are bounded (a pattern past the cap is 422, a hostile
one runs off the event loop while /livez answers), dates out of range are 422, a deeply nested
body is a page and not a 500, forms are counted as they stream in, every answer carries the
console's CSP, the API docs load nothing from elsewhere, the CSRF key is a setting of its own
and a session can be ended."""

import html
import re
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hookhub.slow_clients import HEAD_TIMEOUT_S
from hookhub_eventlog.store import LoggedEvent
from hookhub_eventlog.store.sqlite import SQLiteEventLog
from hookhub_operator.console import MAX_FORM_BYTES
from operator_hub import OPERATOR, Hub, running_hub

from tests.support.settings import GATEWAY_SECRET, hub_env

MIB = 1024 * 1024
# Rows indexed straight into the hub's file for the hostile search: at negative positions, so
# that the indexer's own progress (the highest position) is untouched.
BULK_ROWS = 200_000


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("operator-edges")) as running:
        yield running


def rss_bytes(hub: Hub) -> int:
    assert hub.operator_process is not None
    status = Path(f"/proc/{hub.operator_process.process.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]


def port_of(hub: Hub) -> int:
    return int(hub.operator.rsplit(":", 1)[1])


@contextmanager
def session(hub: Hub) -> Iterator[tuple[httpx.Client, str]]:
    """A client holding a console session (its cookie) and a form token for it."""
    with httpx.Client(base_url=hub.operator, headers=OPERATOR, timeout=20) as client:
        page = client.get("/parking-lots/notifications")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, page.text
        yield client, token[1]


@pytest.mark.parametrize(
    "since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"], ids=["min", "max"]
)
@pytest.mark.parametrize("path", ["/api/events", "/events"])
def test_a_date_at_the_edge_of_the_calendar_is_422_not_a_500(hub: Hub, path, since) -> None:
    response = hub.get(path, since=since)

    assert response.status_code == 422
    assert "out of range" in response.text


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        (".".join(["#"] * 900), "at most 32 are searched"),
        ("#.#.#.#.#.nomatch", "more than 4 '#'"),
        ("stripe.%", "dot-separated words"),
    ],
)
@pytest.mark.parametrize("path", ["/api/events", "/events", "/api/parking-lots/notifications"])
def test_a_pattern_past_the_cap_is_422_saying_why(hub: Hub, path, pattern, says) -> None:
    response = hub.get(path, type=pattern)

    assert response.status_code == 422
    assert says in html.unescape(response.text)


def test_livez_answers_while_a_hostile_search_runs(hub: Hub) -> None:
    import asyncio

    async def bulk() -> None:
        log = SQLiteEventLog(hub.log_dir / "hookhub.db")
        at = datetime.now(UTC)
        await log.index(
            [
                LoggedEvent(-n - 1, f"bulk-{n}", "/events/bulk", "bulk.a.b.c.d.e", at)
                for n in range(BULK_ROWS)
            ]
        )
        await log.close()

    asyncio.run(bulk())
    answers: list[int] = []
    search = threading.Thread(
        target=lambda: answers.append(hub.get("/api/events", type="#.nomatch", limit=1).status_code)
    )
    search.start()
    livez = []
    while search.is_alive():
        livez.append(httpx.get(f"{hub.operator}/livez", timeout=1).status_code)
    search.join()

    assert answers[0] in (200, 503)  # found nothing, or stopped at its budget
    assert livez and set(livez) == {200}
    assert hub.get("/api/events", type="bulk.#", limit=3).json()[0]["id"].startswith("bulk-")


def test_the_page_of_an_event_nested_fifty_thousand_deep_is_a_page(hub: Hub) -> None:
    event_id = f"deep-{uuid.uuid4().hex[:8]}"
    body = b"[" * 50_000 + b"]" * 50_000
    sent = httpx.post(
        f"{hub.api}/events",
        content=body,
        headers={
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-type": "ci.nested",
            "content-type": "application/json",
            "x-hookhub-gateway-secret": GATEWAY_SECRET,
            "x-consumer-username": "jenkins",
        },
        timeout=10,
    )
    assert sent.status_code == 202, sent.text
    hub.indexed(event_id)

    page = hub.get(f"/events/{event_id}")

    assert page.status_code == 200
    assert "[[[[" in page.text


def test_a_300_mib_chunked_form_is_refused_413_without_being_held(hub: Hub) -> None:
    def chunks(token: str) -> Iterator[bytes]:
        yield f"csrf_token={token}&action=purge&id=".encode()
        for _ in range(300):
            yield b"x" * MIB

    before = rss_bytes(hub)
    with session(hub) as (client, token):
        try:
            response = client.post(
                "/parking-lots/notifications/confirm",
                content=chunks(token),
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            status = response.status_code
        except httpx.HTTPError:  # the server answered and closed while we were still sending
            status = 413
    after = rss_bytes(hub)

    assert status == 413
    assert after - before < 64 * MIB  # nowhere near the 300 MiB sent
    assert MAX_FORM_BYTES == MIB


def test_a_truncated_form_is_answered_408_within_seconds(hub: Hub) -> None:
    head = (
        "POST /parking-lots/notifications/confirm HTTP/1.1\r\nhost: x\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in OPERATOR.items())
        + "content-type: application/x-www-form-urlencoded\r\ncontent-length: 1000\r\n\r\nid=1"
    ).encode()
    with socket.create_connection(("127.0.0.1", port_of(hub)), timeout=20) as connection:
        connection.sendall(head)
        answer = connection.recv(4096)

    assert answer.startswith(b"HTTP/1.1 408")
    assert hub.operator_process is not None
    assert "Exception in ASGI application" not in hub.operator_process.log


def test_slowloris_connections_to_the_console_are_closed(hub: Hub) -> None:
    connections = [
        socket.create_connection(("127.0.0.1", port_of(hub)), timeout=HEAD_TIMEOUT_S * 3)
        for _ in range(20)
    ]
    try:
        for connection in connections:
            connection.sendall(b"GET /events HTTP/1.1\r\nhost: x\r\n")
        for connection in connections:
            assert connection.recv(1024) == b""  # closed by the server, not left open
        assert httpx.get(f"{hub.operator}/livez", timeout=5).status_code == 200
    finally:
        for connection in connections:
            connection.close()


@pytest.mark.parametrize(
    "path", ["/", "/events", "/api/events", "/api/docs", "/api/openapi.json", "/no-such-page"]
)
def test_every_answer_carries_the_consoles_csp(hub: Hub, path) -> None:
    response = hub.get(path)

    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_api_docs_load_nothing_from_elsewhere_and_link_under_kongs_prefix(hub: Hub) -> None:
    page = hub.get("/api/docs", headers={**OPERATOR, "x-forwarded-prefix": "/operator"})

    assert page.status_code == 200
    assert 'href="/operator/api/openapi.json"' in page.text
    assert "/operator/api/events" in page.text
    assert "<script" not in page.text and "cdn" not in page.text.lower()


def test_logging_out_ends_the_session_and_its_form_tokens(hub: Hub) -> None:
    with session(hub) as (client, token):
        logged_out = client.post("/logout", data={"csrf_token": token})
        assert logged_out.status_code == 200 and "session has ended" in logged_out.text
        assert "hookhub_csrf" not in client.cookies

        after = client.post(
            "/parking-lots/notifications/confirm", data={"csrf_token": token, "action": "purge"}
        )

    assert after.status_code == 403


def test_the_console_refuses_to_start_behind_the_gateway_without_its_csrf_key() -> None:
    env = hub_env("amqp://guest:guest@127.0.0.1:5672/")
    result = subprocess.run(
        [sys.executable, "-m", "hookhub.cli", "operator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "HOOKHUB_OPERATOR_CSRF_KEY is not set" in result.stderr
    assert GATEWAY_SECRET not in result.stderr
