"""The broker's addresses: one URL, or one per node of a cluster that has no load balancer.

A connection goes to the first address that answers, starting from the one in use, so a process
keeps its node while it answers and, once it has given up on it (`move_on`), tries the others in
order, round-robin. Passwords never leave this module unredacted in a message or a log line.

Every connection made here has a short heartbeat (`HEARTBEAT_S`): a node that hangs (frozen, a
black-holed link) keeps its TCP connection open, and only missed heartbeats close it. It is the
backstop; `Broker` notices sooner, by a round trip that goes unanswered.
"""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import aiormq

CONNECT_ERRORS = (OSError, ConnectionError, aiormq.exceptions.AMQPError, asyncio.TimeoutError)

C = TypeVar("C")

# aiormq closes a connection that received nothing for (heartbeat + 1) x 3 s: 18 s with 5 s
# (RabbitMQ's default, 60 s, left a frozen node's connections open for over 3 minutes). Not
# shorter: the broker closes a client silent for two heartbeats, and a busy event loop on a
# shared machine can be that late with its own.
HEARTBEAT_S = 5


def with_heartbeat(url: str) -> str:
    """The URL with `HEARTBEAT_S` as its heartbeat, unless it sets one itself (appended as
    text: the rest of the URL, its password's escapes, is left as it was)."""
    query = url.partition("?")[2]
    if any(item.startswith("heartbeat=") for item in query.split("&")):
        return url
    return f"{url}{'&' if query else '?' if '?' not in url else ''}heartbeat={HEARTBEAT_S}"


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

    def move_on(self, url: str | None = None) -> None:
        """Give up on the URL in use (or on `url`): the one after it is tried first from now
        on."""
        if url is not None:
            self.current = url
        self.current = self.in_turn()[1 % len(self.urls)]

    def redacted(self) -> list[str]:
        return [redact(url) for url in self.urls]

    async def connect_first(
        self, connect: Callable[..., Awaitable[C]], timeout_s: float
    ) -> tuple[C, str]:
        """`connect(url, timeout=timeout_s)` to each URL in turn (with `HEARTBEAT_S`), each within
        `timeout_s` (a node that accepts TCP and then says nothing counts as down); the first
        connection made, and its URL. Raises the last URL's error when none answers. The URL in
        use stays as it was: the caller decides whether this connection is the one it lives
        on."""
        error: BaseException | None = None
        for url in self.in_turn():
            try:
                async with asyncio.timeout(timeout_s):
                    return await connect(with_heartbeat(url), timeout=timeout_s), url
            except CONNECT_ERRORS as exc:
                error = exc
        assert error is not None
        raise error
