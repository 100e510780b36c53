"""The failure policy: what happens to a message whose handling failed.

Business code asks for a retry by raising `Retry` (or any unexpected exception) and gives up by
raising `Permanent`. `decide` turns the attempt count and the configured delays into the next step;
the runtime carries it out. Attempts travel with the message (`hookhub.failures`).
"""

from dataclasses import dataclass


class Retry(Exception):
    """A failure that may pass: retry with backoff, then dead-letter."""


class Permanent(Exception):
    """A failure that retrying cannot fix: dead-letter at once with this reason."""


# Errors that the same message raises again however often it is retried: a number too large for
# the store (OverflowError), JSON nested past Python's limit (RecursionError), a value of the
# wrong type in a header or payload (TypeError). Parked at once, with the reason.
NEVER_PASS = (Permanent, OverflowError, RecursionError, TypeError)


def worth_retrying(http_status: int) -> bool:
    """An HTTP answer that may change later: every 5xx, a request timeout, rate limiting."""
    return http_status >= 500 or http_status in (408, 429)


@dataclass(frozen=True, slots=True)
class RetryLater:
    delay_s: float


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str


def decide(
    error: BaseException, attempts: int, delays_s: tuple[float, ...]
) -> RetryLater | DeadLetter:
    """The next step after the `attempts`-th failure (1-based) ended in `error`."""
    reason = f"{type(error).__name__}: {error}"
    if isinstance(error, Permanent):
        return DeadLetter(f"permanent failure: {error}")
    if isinstance(error, NEVER_PASS):
        return DeadLetter(f"permanent failure: {reason}")
    if attempts > len(delays_s):
        return DeadLetter(f"gave up after {attempts} attempts; last error {reason}")
    return RetryLater(delays_s[attempts - 1])
