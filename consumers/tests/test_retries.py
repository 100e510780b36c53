import pytest
from hookhub.failures import ATTEMPTS_HEADER, REASON_HEADER, attempts_so_far, failure_headers
from hookhub.settings import Settings
from hookhub_consumers import handler
from hookhub_consumers.retries import (
    DeadLetter,
    Hold,
    Permanent,
    Policy,
    Retry,
    RetryLater,
    decide,
    worth_retrying,
)
from pydantic import ValidationError

DELAYS = (5.0, 30.0, 300.0)
NO_JITTER = Policy(DELAYS)
JITTER = Policy(DELAYS, jitter_ratio=0.1)


def test_each_retryable_failure_waits_the_next_configured_delay():
    assert [decide(Retry("500"), n, NO_JITTER) for n in (1, 2, 3)] == [
        RetryLater(5.0, 5.0),
        RetryLater(30.0, 30.0),
        RetryLater(300.0, 300.0),
    ]


def test_failure_after_the_last_delay_is_dead_lettered_with_the_attempts_and_last_error():
    step = decide(Retry("endpoint answered 500"), 4, NO_JITTER)
    assert isinstance(step, DeadLetter)
    assert step.reason == "gave up after 4 attempts; last error Retry: endpoint answered 500"


def test_permanent_failure_is_dead_lettered_on_the_first_attempt():
    assert decide(Permanent("endpoint answered 400"), 1, NO_JITTER) == DeadLetter(
        "permanent failure: endpoint answered 400"
    )


def test_unexpected_exceptions_are_retried_like_retryable_ones():
    assert decide(KeyError("order_id"), 1, NO_JITTER) == RetryLater(5.0, 5.0)


def test_jitter_shortens_the_wait_within_its_band_and_stays_in_the_delays_queue():
    shortest, longest = (decide(Retry("500"), 2, JITTER, draw) for draw in (0.0, 1.0))
    assert shortest == RetryLater(30.0, pytest.approx(27.0))
    assert longest == RetryLater(30.0, 30.0)


def test_a_requested_delay_goes_to_the_shortest_retry_queue_at_least_that_long():
    step = decide(Retry("rate limited", delay_s=20), 1, NO_JITTER)
    assert step == RetryLater(30.0, 30.0)


def test_a_requested_delay_is_never_cut_short_by_jitter():
    assert decide(Retry("rate limited", delay_s=29), 1, JITTER, draw=0.0) == RetryLater(30.0, 29.0)
    # Far below its queue's delay, it waits within the queue's band, never less than asked.
    assert decide(Retry("rate limited", delay_s=6), 1, JITTER, draw=0.0) == RetryLater(
        30.0, pytest.approx(27.0)
    )


def test_a_requested_delay_longer_than_every_queue_waits_the_longest():
    assert decide(Retry("come back tomorrow", delay_s=86400), 1, JITTER, draw=0.0) == RetryLater(
        300.0, 300.0
    )


def test_a_requested_delay_counts_as_an_attempt_like_any_retry():
    step = decide(Retry("rate limited", delay_s=5), 4, NO_JITTER)
    assert step == DeadLetter("gave up after 4 attempts; last error Retry: rate limited")


def test_a_short_requested_delay_waits_the_shortest_queue_not_the_attempts_delay():
    assert decide(Retry("soon", delay_s=1), 3, NO_JITTER) == RetryLater(5.0, 5.0)


def test_the_policy_comes_from_the_settings():
    settings = Settings(HOOKHUB_RETRY_DELAYS="1,2", retry_jitter_ratio=0.25)
    assert Policy.of(settings) == Policy((1.0, 2.0), jitter_ratio=0.25)
    assert Policy.of(Settings()).jitter_ratio == 0.1


@pytest.mark.parametrize("delays", ["0", "5,-1", "5,5000000"])
def test_a_delay_no_retry_queue_can_hold_is_refused(delays):
    with pytest.raises(ValidationError, match="each delay must be between"):
        Settings(HOOKHUB_RETRY_DELAYS=delays)


def test_handlers_find_the_failure_vocabulary_in_their_contract():
    assert handler.Retry is Retry and handler.Permanent is Permanent
    assert handler.Retry("429", delay_s=60).delay_s == 60


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
    step = decide(error, 1, NO_JITTER)

    assert step == DeadLetter(f"permanent failure: {type(error).__name__}: {error}")


def test_a_held_message_waits_the_longest_delay_whatever_its_attempts():
    policy = Policy((5.0, 30.0, 300.0), jitter_ratio=0.5)
    for attempts in (0, 1, 3, 50):
        assert decide(Hold("newer type"), attempts, policy, draw=0.0) == RetryLater(300.0, 300.0)
