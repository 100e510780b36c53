"""The broker's addresses: one URL, or one per node of a cluster that has no load balancer.

A connection goes to the first address that answers, starting from the one in use, so a process
keeps its node while it answers and, once it has given up on it (`move_on`), tries the others in
order, round-robin. A node left because it hung (`move_on(hung=True)`, or a connect to it timed
out) goes to the end of that order for `QUARANTINE_S`: tried again only once every other address
has failed. Passwords never leave this module unredacted in a message or a log line.

Every connection made here has a short heartbeat (`HEARTBEAT_S`): a node that hangs (frozen, a
black-holed link) keeps its TCP connection open, and only missed heartbeats close it. It is the
backstop; `Broker` notices sooner, by a round trip that goes unanswered.
"""

import asyncio
import time
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
# A node that hung is not tried before the others for this long: a SIGSTOPped node, or one whose
# link is black-holed, takes a whole connect timeout per attempt (2-5 s), and a client failing
# over between the healthy nodes while they wait for an election went back to it (`chaos
# hang-node`: a 6.45 s intake gap). Long enough for the cluster to drop the node or see it back.
QUARANTINE_S = 30.0


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

    def __init__(self, urls: Sequence[str], clock: Callable[[], float] = time.monotonic) -> None:
        if not urls:
            raise ValueError("at least one broker URL is needed")
        self.urls = tuple(urls)
        self.current = self.urls[0]
        self._clock = clock
        self._hung_at: dict[str, float] = {}  # URL -> when it was last left as hung

    @property
    def several(self) -> bool:
        return len(self.urls) > 1

    def quarantined(self, url: str) -> bool:
        """`url` was left as hung less than `QUARANTINE_S` ago."""
        at = self._hung_at.get(url)
        return at is not None and self._clock() - at < QUARANTINE_S

    def in_turn(self) -> tuple[str, ...]:
        """Every URL, the one in use first, then those after it, wrapping around; those in
        quarantine last (in that same order)."""
        start = self.urls.index(self.current)
        return tuple(sorted(self.urls[start:] + self.urls[:start], key=self.quarantined))

    def move_on(self, url: str | None = None, hung: bool = False) -> None:
        """Give up on the URL in use (or on `url`), in quarantine if it `hung`: the next one
        (not in quarantine, if any is not) is tried first from now on."""
        if url is not None:
            self.current = url
        if hung and self.several:
            self._hung_at[self.current] = self._clock()
        others = [other for other in self.in_turn() if other != self.current]
        if others:
            self.current = others[0]

    def redacted(self) -> list[str]:
        return [redact(url) for url in self.urls]

    async def connect_first(
        self, connect: Callable[..., Awaitable[C]], timeout_s: float
    ) -> tuple[C, str]:
        """`connect(url, timeout=timeout_s)` to each URL in turn (with `HEARTBEAT_S`), each within
        `timeout_s` (a node that accepts TCP and then says nothing counts as down); the first
        connection made, and its URL. Raises the last URL's error when none answers. The URL in
        use stays as it was: the caller decides whether this connection is the one it lives
        on. A URL that took no answer within `timeout_s` goes into quarantine; one that answered
        leaves it."""
        error: BaseException | None = None
        for url in self.in_turn():
            try:
                async with asyncio.timeout(timeout_s):
                    connection = await connect(with_heartbeat(url), timeout=timeout_s)
            except CONNECT_ERRORS as exc:
                if isinstance(exc, TimeoutError) and self.several:
                    self._hung_at[url] = self._clock()
                error = exc
            else:
                self._hung_at.pop(url, None)
                return connection, url
        assert error is not None
        raise error
