"""The operator service's pure rules, without a broker: who may do what, CSRF tokens, what the
overview counts."""

from datetime import UTC, datetime, timedelta

import pytest
from hookhub_eventlog.store import LoggedEvent
from hookhub_operator import csrf
from hookhub_operator.auth import Operator, Refused, identify, may_change
from hookhub_operator.overview import refusals, traffic

SECRET = b"gateway-secret"
THROUGH_KONG = {"x-hookhub-gateway-secret": "gateway-secret", "x-consumer-username": "ana"}
KEY = b"k" * 32
NOW = 1_800_000_000.0


# Who is calling


def test_an_operator_in_the_operators_group_may_change() -> None:
    headers = {**THROUGH_KONG, "x-consumer-groups": "internal-events, operators"}
    assert identify(headers, SECRET) == Operator("ana", can_change=True)


def test_an_operator_in_the_read_only_group_may_only_read() -> None:
    operator = identify({**THROUGH_KONG, "x-consumer-groups": "operators-readonly"}, SECRET)
    assert operator == Operator("ana", can_change=False)
    with pytest.raises(Refused) as refused:
        may_change(operator)
    assert refused.value.status == 403


@pytest.mark.parametrize(
    "headers, status",
    [
        pytest.param({**THROUGH_KONG, "x-hookhub-gateway-secret": "x"}, 401, id="wrong-secret"),
        pytest.param(
            {"x-consumer-groups": "operators", "x-consumer-username": "a"}, 401, id="none"
        ),
        pytest.param({**THROUGH_KONG, "x-consumer-groups": "internal-events"}, 403, id="no-group"),
    ],
)
def test_a_caller_who_is_no_operator_is_refused(headers: dict[str, str], status: int) -> None:
    with pytest.raises(Refused) as refused:
        identify(headers, SECRET)
    assert refused.value.status == status


def test_without_a_gateway_secret_the_caller_is_a_local_operator() -> None:
    assert identify({}, None) == Operator("local", can_change=True)


# CSRF


def test_a_token_is_valid_for_its_operator_and_session_while_fresh() -> None:
    token = csrf.issue(KEY, "ana", "nonce-1", NOW)
    assert csrf.valid(KEY, "ana", "nonce-1", token, NOW + 60)


@pytest.mark.parametrize(
    "operator, nonce, token, at",
    [
        pytest.param("rui", "nonce-1", None, NOW, id="another-operator"),
        pytest.param("ana", "nonce-2", None, NOW, id="another-session"),
        pytest.param("ana", None, None, NOW, id="no-session-cookie"),
        pytest.param("ana", "nonce-1", None, NOW + csrf.MAX_AGE_S + 1, id="stale"),
        pytest.param("ana", "nonce-1", "", NOW, id="no-token"),
        pytest.param("ana", "nonce-1", f"{int(NOW)}.{'0' * 64}", NOW, id="forged"),
        pytest.param("ana", "nonce-1", "1.abc", NOW, id="garbage"),
    ],
)
def test_a_token_is_refused_for_anything_else(
    operator: str, nonce: str | None, token: str | None, at: float
) -> None:
    issued = csrf.issue(KEY, "ana", "nonce-1", NOW)
    assert not csrf.valid(KEY, operator, nonce, issued if token is None else token, at)


def test_another_key_does_not_take_the_token() -> None:
    token = csrf.issue(KEY, "ana", "nonce-1", NOW)
    assert not csrf.valid(b"another-key" * 3, "ana", "nonce-1", token, NOW)


# The overview


def event(source: str, type: str, minutes_ago: float, now: datetime) -> LoggedEvent:
    return LoggedEvent(0, "id", source, type, now - timedelta(minutes=minutes_ago))


def test_traffic_counts_accepted_events_per_minute_and_by_origin_and_type() -> None:
    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    events = [
        event("/webhooks/stripe", "stripe.charge.refunded", 0.5, now),
        event("/webhooks/stripe", "stripe.charge.refunded", 0.7, now),
        event("/events/jenkins", "ci.build.finished", 2.5, now),
        event("/consumers/payments", "payment.approved", 0.5, now),  # emitted, not accepted
        event("/webhooks/stripe", "stripe.charge.refunded", 11, now),  # before the window
    ]

    counted = traffic(events, now, window_min=10)

    assert counted.per_minute[-1] == 2 and counted.per_minute[-3] == 1
    assert counted.total == 3
    assert [(r.origin, r.type, r.events) for r in counted.rows] == [
        ("stripe", "stripe.charge.refunded", 2),
        ("jenkins (internal)", "ci.build.finished", 1),
    ]


def test_refusals_are_read_from_hub_apis_request_counters() -> None:
    metrics = "\n".join(
        [
            "# TYPE hookhub_requests_total counter",
            'hookhub_requests_total{route="webhooks",provider="stripe",status="202"} 7.0',
            'hookhub_requests_total{route="webhooks",provider="stripe",status="401"} 3.0',
            'hookhub_requests_total{route="webhooks",provider="hotmart",status="413"} 1.0',
            'hookhub_requests_total{route="events",provider="-",status="422"} 2.0',
            'hookhub_requests_created{route="events",provider="-",status="422"} 1.7e9',
        ]
    )

    found = refusals(metrics)

    assert found.of("stripe") == {"401": 3}
    assert found.by_status() == {"401": 3, "413": 1, "422": 2}
