import pytest
from hookhub.failures import ATTEMPTS_HEADER, REASON_HEADER, attempts_so_far, failure_headers
from hookhub_consumers.retries import (
    DeadLetter,
    Permanent,
    Retry,
    RetryLater,
    decide,
    worth_retrying,
)

DELAYS = (5.0, 30.0, 300.0)


def test_each_retryable_failure_waits_the_next_configured_delay():
    assert [decide(Retry("500"), n, DELAYS) for n in (1, 2, 3)] == [
        RetryLater(5.0),
        RetryLater(30.0),
        RetryLater(300.0),
    ]


def test_failure_after_the_last_delay_is_dead_lettered_with_the_attempts_and_last_error():
    step = decide(Retry("endpoint answered 500"), 4, DELAYS)
    assert isinstance(step, DeadLetter)
    assert step.reason == "gave up after 4 attempts; last error Retry: endpoint answered 500"


def test_permanent_failure_is_dead_lettered_on_the_first_attempt():
    assert decide(Permanent("endpoint answered 400"), 1, DELAYS) == DeadLetter(
        "permanent failure: endpoint answered 400"
    )


def test_unexpected_exceptions_are_retried_like_retryable_ones():
    assert decide(KeyError("order_id"), 1, DELAYS) == RetryLater(5.0)


def test_attempts_travel_in_a_header_and_start_at_zero():
    assert attempts_so_far(None) == 0
    assert attempts_so_far({ATTEMPTS_HEADER: 2}) == 2
    assert attempts_so_far({ATTEMPTS_HEADER: "garbage"}) == 0


def test_failure_headers_keep_the_original_headers_and_say_why():
    headers = failure_headers(
        {"cloudEvents:id": "e1"},
        consumer="notifications",
        attempts=2,
        reason="boom",
        routing_key="order.ready",
    )
    assert headers["cloudEvents:id"] == "e1"
    assert headers[ATTEMPTS_HEADER] == 2
    assert headers[REASON_HEADER] == "boom"
    assert headers["x-hookhub-consumer"] == "notifications"
    assert headers["x-hookhub-routing-key"] == "order.ready"


def test_http_answers_that_may_change_later_are_retried_the_rest_of_4xx_are_not():
    answers = (400, 401, 404, 408, 409, 422, 429, 500, 503)
    assert [code for code in answers if worth_retrying(code)] == [408, 429, 500, 503]


@pytest.mark.parametrize(
    "error",
    [
        OverflowError("Python int too large to convert to SQLite INTEGER"),
        RecursionError("maximum recursion depth exceeded"),
        TypeError("expected str, got int"),
    ],
)
def test_errors_that_every_retry_would_raise_again_are_dead_lettered_at_once(error):
    step = decide(error, 1, DELAYS)

    assert step == DeadLetter(f"permanent failure: {type(error).__name__}: {error}")
