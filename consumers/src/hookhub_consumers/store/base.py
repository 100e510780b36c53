"""The runtime's part of the consumers' state: processed-markers, the outbox, group commit, and
saving a state change atomically with them through the repository its consumer registered.

Two adapters implement `Store`: SQLite (the embedded default, `sqlite:///path`) and MongoDB
through PyMongo's async API (`mongodb://...`). One contract test suite runs against both.

The records themselves are the consumers': each consumer package declares its records and one
repository per adapter (its tables or collections, how a state is written inside the store's
transaction, its reads), named in its spec's `repositories`. A store is opened with the
repositories of the consumers it serves, and hands each its own (`repository`); it never knows
an order from a ticket: a state is saved by the repository registered for its record type.

Exactly-once in effect: every state change is saved together with a processed-marker for the
(consumer, event) that caused it and the events it emits (its outbox), atomically. Saving again
with a marker that already exists writes nothing and returns False, so a redelivered event has
the effect of one; its outbox is published after the commit and forgotten once confirmed.

Group commit: the changes of the messages a consumer has in hand are written together. `save`
queues a change and waits; whatever was queued while one write was running goes in the next
(`write`, one transaction on SQLite), each change still atomic and independent of its
neighbours: one that fails fails alone. Forgetting a published outbox (`forget_soon`) waits for
nobody: it rides with the next group, or is written alone within `FORGET_WITHIN_S`, so that at
low load an event costs one transaction (one sync to disk), not two. Where a group shares one
commit (SQLite), a change that finds the store idle may wait a few milliseconds for company
(`gather_writes`, from `HOOKHUB_COMMIT_LINGER_MS`): at low load one sync for several events.

Times come back tz-aware in UTC, to the millisecond (MongoDB's precision; SQLite keeps the same).

The event log (`hookhub_eventlog`) keeps its index and journeys in the same file or database, in
tables of its own, and reads the markers (and the notifications consumer's delivery attempts):
their shape is `hookhub_eventlog.store.consumer_tables`'s, and the contract suites check that it
reads them.
"""

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from hookhub.specs import ConsumerSpec, installed
from hookhub_eventlog.store.consumer_tables import event_key

# A consumer's record: a dataclass whose `version` (an int, 0 before its first save) the store
# manages. Its repository says where it is kept.
Record = Any


@dataclass(frozen=True, slots=True)
class Marker:
    """The processed-marker of one event in one consumer."""

    consumer: str
    event_key: str  # the CloudEvents (source, id) pair, which is unique per event

    @classmethod
    def of(cls, consumer: str, source: str, event_id: str) -> "Marker":
        return cls(consumer, event_key(source, event_id))


class ConcurrentUpdate(Exception):
    """Someone saved the aggregate since it was read; handle the event again (retryable)."""


@dataclass(frozen=True, slots=True)
class Change:
    """One event's effect: its marker, the new state of a record a repository of this store
    keeps (none: the marker alone), and the follow-up events it emits (serialized), which need
    a state to ride with."""

    marker: Marker
    state: Record | None = None
    outbox: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.outbox and self.state is None:
            raise ValueError("follow-ups are saved with a state change, not with a marker alone")


@dataclass(frozen=True, slots=True)
class Sent:
    """Forget a marker's outbox: its events were published."""

    marker: Marker


Write = Change | Sent
# A write's result: True saved (or forgotten), False a Change whose marker existed (nothing
# written), or the exception that change alone raised (ConcurrentUpdate).
Written = bool | Exception
# The most writes one transaction takes; more wait for the next.
MAX_GROUP = 256
# How long a write nobody waits for (forgetting a published outbox) waits for a group to ride
# with. Well under the outbox relay's interval, so that the relay does not publish again what
# was published and not yet forgotten (it would be dropped downstream by its id, but wasted).
FORGET_WITHIN_S = 0.5


class Repository:
    """What every adapter's repository base shares: the record type whose changes the store
    saves through it, with their markers. None for records written outside a marker (the
    notifications consumer's delivery attempts): the repository writes those itself."""

    record: ClassVar[type | None] = None


def load_repositories(
    scheme: str, specs: Iterable[ConsumerSpec] | None = None
) -> dict[str, type[Repository]]:
    """Consumer name → its repository class for a store scheme ("sqlite", "mongodb"), for the
    consumers of `specs` (every installed one when None) that keep records."""
    found = {}
    for spec in installed() if specs is None else specs:
        if not spec.repositories:
            continue  # it keeps nothing but markers
        repository = spec.load_repository(scheme)
        if repository is None:
            has = ", ".join(spec.repositories)
            raise ValueError(
                f"{spec.name} keeps no records in a {scheme} store: its spec's repositories "
                f"name {has} only; add a '{scheme}' one or use a {has} HOOKHUB_STORE_URL"
            )
        found[spec.name] = repository
    return found


def by_record(repositories: Mapping[str, Repository]) -> dict[type, Repository]:
    """Record type → the repository that saves its changes; two consumers may not share one."""
    found: dict[type, Repository] = {}
    for name, repository in repositories.items():
        if (record := repository.record) is None:
            continue
        if record in found:
            raise ValueError(f"{name} and another consumer both keep {record.__name__} records")
        found[record] = repository
    return found


class GroupCommit:
    """Queues writes and hands them to `write` in groups: whatever arrived while the previous
    group was being written goes in the next one. A group of changes that starts with the store
    idle waits up to `linger_s` for company, unless `enough` writes are queued (a consumer's
    prefetch: no more can come) or one is an outbox to forget (the relay forgets one marker
    after another, waiting on each): a commit, its fsync and its thread hand-off shared by a few
    events instead of paid by each. Nothing waits past `linger_s`; under load, with the store
    idle only between groups, a group still starts alone when fewer than `enough` of the
    messages in hand write (repeats, failures, an order's later events waiting their turn)."""

    def __init__(self, write: Callable[[Sequence[Write]], Awaitable[list[Written]]]) -> None:
        self._write = write
        self._queued: list[tuple[Write, asyncio.Future[Written]]] = []
        self._later: list[Write] = []  # nobody waits for them (`later`)
        self._later_timer: asyncio.TimerHandle | None = None
        self._draining: asyncio.Task[None] | None = None
        self.linger_s = 0.0
        self.enough = MAX_GROUP
        self._lingering: asyncio.Future[None] | None = None
        self._closing = False

    async def submit(self, write: Write) -> bool:
        future: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        self._queued.append((write, future))
        if len(self._queued) >= self.enough or isinstance(write, Sent):
            self._stop_lingering()
        self._start_draining()
        result = await future
        if isinstance(result, Exception):
            raise result
        return result

    def later(self, write: Write, within_s: float = FORGET_WITHIN_S) -> None:
        """Queue a write nobody waits for: it goes with the next group, or alone within
        `within_s`. What becomes of it is not said to anyone: only what may be lost goes here."""
        self._later.append(write)
        if self._later_timer is None:
            loop = asyncio.get_running_loop()
            self._later_timer = loop.call_later(within_s, self._start_draining)

    async def flush(self) -> None:
        """Write what waits (before the store closes)."""
        self._closing = True  # a group that has not begun its linger does not begin it
        self._stop_lingering()
        try:
            if self._later:
                self._start_draining()
            while self._draining is not None and not self._draining.done():
                await asyncio.shield(self._draining)
        finally:
            self._closing = False

    def _start_draining(self) -> None:
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain(), name="group-commit")

    def _stop_lingering(self) -> None:
        if self._lingering is not None and not self._lingering.done():
            self._lingering.set_result(None)

    def _may_linger(self) -> bool:
        return (
            self.linger_s > 0
            and 0 < len(self._queued) < self.enough
            and not self._closing
            and not any(isinstance(write, Sent) for write, _ in self._queued)
        )

    async def _linger(self) -> None:
        loop = asyncio.get_running_loop()
        self._lingering = loop.create_future()
        timer = loop.call_later(self.linger_s, self._stop_lingering)
        try:
            await self._lingering
        finally:
            timer.cancel()
            self._lingering = None

    async def _drain(self) -> None:
        if self._may_linger():
            await self._linger()
        while self._queued or self._later:
            if self._later_timer is not None:
                self._later_timer.cancel()
                self._later_timer = None
            group, self._queued = self._queued[:MAX_GROUP], self._queued[MAX_GROUP:]
            riding, self._later = self._later, []
            try:
                results = await self._write([*riding, *(write for write, _ in group)])
            except Exception as error:  # the whole group failed (the store is down): every
                results = [error] * (len(riding) + len(group))  # write of it fails alone
            for (_, future), result in zip(group, results[len(riding) :], strict=True):
                if not future.done():  # its waiter may have been cancelled
                    future.set_result(result)


class Store(ABC):
    def __init__(self, repositories: Mapping[str, Repository]) -> None:
        self._repositories = dict(repositories)
        self._by_record = by_record(self._repositories)
        self._group_commit = GroupCommit(self.write)

    def repository(self, consumer: str) -> Any:
        """The repository of `consumer`'s records, opened on this store (a handler has its
        own as `ctx.records`)."""
        try:
            return self._repositories[consumer]
        except KeyError:
            known = ", ".join(self._repositories) or "none"
            raise KeyError(
                f"this store keeps no records of {consumer!r} (it was opened with the "
                f"repositories of: {known}); name one in its spec's repositories"
            ) from None

    def _repository_of(self, state: Record) -> Any:
        try:
            return self._by_record[type(state)]
        except KeyError:
            raise TypeError(
                f"no repository of this store keeps {type(state).__name__} records: register "
                "one in its consumer's spec (repositories), and open the store with that spec"
            ) from None

    async def save(self, change: Change) -> bool:
        """Write the change atomically, in the next group: False (nothing written) if its marker
        exists; ConcurrentUpdate if the stored version is not `change.state.version`. On success
        the stored version is one more, and so is `change.state.version`."""
        if change.state is not None:
            self._repository_of(change.state)  # refused before it is queued
        saved = await self._group_commit.submit(change)
        if saved and change.state is not None:
            change.state.version += 1
        return saved

    async def mark_processed(self, marker: Marker) -> bool:
        """Write a marker alone (for effects outside the store); False if it existed."""
        return await self.save(Change(marker))

    async def sent(self, marker: Marker) -> None:
        """Forget the marker's outbox: its events were published (in the next group)."""
        await self._group_commit.submit(Sent(marker))

    def forget_soon(self, marker: Marker, within_s: float = FORGET_WITHIN_S) -> None:
        """Forget the marker's outbox, its events published, with the next group or within
        `within_s`, waiting for nothing; `close` writes it if nothing else did. Lost
        (the process dies first, the store fails), the relay publishes the outbox once more,
        and a repeat downstream drops by its id."""
        self._group_commit.later(Sent(marker), within_s)

    # A group written as one transaction, one sync to disk (SQLite): worth waiting for company.
    groups_share_a_commit: ClassVar[bool] = False

    def gather_writes(self, linger_s: float, enough: int) -> None:
        """Where a group shares one commit, let a change that finds the store idle wait up to
        `linger_s` for others, unless `enough` are queued (a consumer's prefetch: no more can
        come until these are acknowledged). Off (0) unless set: a consumer sets it from
        `commit_linger_ms`. A store whose writes each commit alone (MongoDB) ignores it."""
        if self.groups_share_a_commit:
            self._group_commit.linger_s, self._group_commit.enough = linger_s, max(enough, 1)

    async def flush(self) -> None:
        """Write what `forget_soon` left waiting; each adapter's `close` does it first."""
        await self._group_commit.flush()

    @abstractmethod
    async def write(self, writes: Sequence[Write]) -> list[Written]:
        """Apply the writes, each atomically and independently of the others (one that raises
        fails alone, and its result is the exception); raise only when none could be applied.
        On SQLite one transaction, so one sync to disk for the whole group."""

    @abstractmethod
    async def pending(self, marker: Marker) -> list[str]:
        """The outbox saved with this marker and not yet `sent`, in the order given."""

    @abstractmethod
    async def unsent(self, consumer: str, saved_before: datetime) -> list[Marker]:
        """The markers of `consumer` whose outbox was saved before `saved_before` and is not yet
        `sent`: follow-ups a publish failure or a crash left behind, for the outbox relay."""

    @abstractmethod
    async def is_processed(self, marker: Marker) -> bool: ...

    @abstractmethod
    async def open(self) -> None:
        """Make the schema and apply the migrations it lacks now, rather than on the first
        call (`hookhub.schema`); NewerSchema when a newer release's schema made the store."""

    @abstractmethod
    async def check_writable(self) -> None:
        """A small real write, so that readiness proves the store takes writes (a full disk, a
        read-only file, an unreachable server raise)."""

    @abstractmethod
    async def close(self) -> None: ...
