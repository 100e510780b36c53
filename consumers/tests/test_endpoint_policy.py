"""The delivery worker's pure parts: the circuit breaker's count, Retry-After, the pace."""

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from hookhub_consumers.notifications.steps import retry_after_s, signed_headers
from hookhub_consumers.notifications.worker import Breaker, Circuit, Pace


def test_the_breaker_opens_after_enough_failures_spanning_long_enough() -> None:
    circuit = Circuit(Breaker(failures=3, over_s=10))
    assert not circuit.failed(0) and not circuit.failed(1) and not circuit.failed(2)
    assert circuit.failed(10)  # the 4th, 10 s after the first


def test_a_success_resets_the_run_of_failures() -> None:
    circuit = Circuit(Breaker(failures=2, over_s=0))
    circuit.failed(0)
    circuit.succeeded()
    assert not circuit.failed(1)
    assert circuit.failed(2)


@pytest.mark.parametrize(
    ("status", "value", "expected"),
    [
        (429, "120", 120.0),
        (503, "5", 5.0),
        (500, "120", None),
        (429, "soon", None),
        (429, "", None),
    ],
)
def test_retry_after_is_read_from_429_and_503_only(
    status: int, value: str, expected: float | None
) -> None:
    response = httpx.Response(status, headers={"retry-after": value} if value else {})
    assert retry_after_s(response, datetime.now(UTC)) == expected


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_s(httpx.Response(503, headers={"retry-after": later}), now) == 90.0


def test_each_secret_gives_one_signature() -> None:
    secrets = ("whsec_" + "A" * 32 + "=", "whsec_" + "B" * 32 + "=")
    headers = signed_headers("ev-1", b"{}", secrets, datetime.now(UTC))
    assert [s.split(",")[0] for s in headers["webhook-signature"].split(" ")] == ["v1", "v1"]


async def test_the_pace_spaces_starts_evenly() -> None:
    pace = Pace(rate_per_s=50)
    started = time.monotonic()
    await asyncio.gather(*(pace.wait() for _ in range(6)))
    assert time.monotonic() - started >= 5 / 50 * 0.9
