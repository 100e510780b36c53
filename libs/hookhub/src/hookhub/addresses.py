"""The broker's addresses: one URL, or one per node of a cluster that has no load balancer.

A connection goes to the first address that answers, starting from the one in use, so a process
keeps its node while it answers and, once it has given up on it (`move_on`), tries the others in
order, round-robin. Passwords never leave this module unredacted in a message or a log line.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import aiormq

CONNECT_ERRORS = (OSError, ConnectionError, aiormq.exceptions.AMQPError, asyncio.TimeoutError)

C = TypeVar("C")


def redact(url: str) -> str:
    """The URL (the broker's, a notification endpoint's) without its password, for messages,
    logs and what operators read: `scheme://user:***@host/...`."""
    scheme, sep, rest = url.partition("://")
    # The user info is in the authority only: an "@" in the path or query is not a password's.
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if "@" not in authority:
        return url
    credentials, _, host = authority.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}{tail}"


class Addresses:
    """The broker's URLs in the order given, and the one in use (the first to begin with)."""

    def __init__(self, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("at least one broker URL is needed")
        self.urls = tuple(urls)
        self.current = self.urls[0]

    @property
    def several(self) -> bool:
        return len(self.urls) > 1

    def in_turn(self) -> tuple[str, ...]:
        """Every URL, the one in use first, then those after it, wrapping around."""
        start = self.urls.index(self.current)
        return self.urls[start:] + self.urls[:start]

    def move_on(self) -> None:
        """Give up on the URL in use: the next one is tried first from now on."""
        self.current = self.in_turn()[1 % len(self.urls)]

    def redacted(self) -> list[str]:
        return [redact(url) for url in self.urls]

    async def connect_first(
        self, connect: Callable[..., Awaitable[C]], timeout_s: float
    ) -> tuple[C, str]:
        """`connect(url, timeout=timeout_s)` to each URL in turn; the first connection made, and
        its URL. Raises the last URL's error when none answers. The URL in use stays as it was:
        the caller decides whether this connection is the one it lives on."""
        error: BaseException | None = None
        for url in self.in_turn():
            try:
                return await connect(url, timeout=timeout_s), url
            except CONNECT_ERRORS as exc:
                error = exc
        assert error is not None
        raise error
