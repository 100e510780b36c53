"""One SQLite file shared by every process on the machine, each with its own tables in it.

The consumers' store and the event log both keep their tables in the file `HOOKHUB_STORE_URL`
names (`sqlite:///path`); this is how either of them reaches it.

Processes coordinate through SQLite's own file locks. WAL lets readers go on while one process
writes. Every write starts with BEGIN IMMEDIATE, which takes the write lock up front (waiting up to
BUSY_TIMEOUT_S for it): a deferred transaction that read first and then tried to write could fail
at once with "database is locked", because SQLite cannot wait for a lock upgrade without risking a
deadlock.

A `SQLiteFile` has two connections. The writer lives in a thread of its own, so that a sync to
disk or a wait for another process's lock never stalls the event loop; calls made while it is busy
go in its next trip. The reader runs on the event loop (see `SQLiteFile.read`).

Each component with tables in the file (the consumers' store, each consumer's records, the event
log) brings them up to date when it opens the file: its numbered migrations (`hookhub.schema`)
run in the write transaction that follows the schema's, and `schema_versions` records how far.
"""

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from hookhub import schema

URL_PREFIX = "sqlite:///"
# Long enough to wait out another process's write transaction (each takes milliseconds), short
# enough that a stuck process shows up as an error instead of a silent hang.
BUSY_TIMEOUT_S = 10.0
READ_BUSY_TIMEOUT_S = 0.5
T = TypeVar("T")
# What a file made by an older version is brought up to date with, in the schema's transaction.
Upgrade = Callable[[sqlite3.Connection], None]
# component → its numbered migrations, 1 (the baseline) first: `hookhub.schema`.
Migrations = Mapping[str, Sequence[Upgrade]]
SCHEMA_VERSIONS = f"""
CREATE TABLE IF NOT EXISTS {schema.TABLE} (
    component  TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    applied_at TEXT NOT NULL
);
"""


def path_of(url: str) -> Path:
    """The file of `sqlite:///relative/to/cwd.db` or `sqlite:////absolute/path.db`."""
    if not url.startswith(URL_PREFIX) or len(url) == len(URL_PREFIX):
        raise ValueError(
            f"bad SQLite store URL '{url}': use sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    return Path(url.removeprefix(URL_PREFIX))


def time_text(at: datetime) -> str:
    """A time as stored: UTC to the millisecond, as MongoDB keeps it, so that both adapters give
    back the same value; the fixed width and offset make text order the time order. A naive
    datetime is taken as UTC, as PyMongo does."""
    utc = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds")


def time_of(text: str) -> datetime:
    return datetime.fromisoformat(text)


def transaction(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """`work` in one write transaction: committed when it returns, rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return result


def _locked(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


def recorded_versions(db: sqlite3.Connection) -> dict[str, int]:
    """component → the schema version the file records for it."""
    return {row[0]: row[1] for row in db.execute(f"SELECT component, version FROM {schema.TABLE}")}


def migrate(
    db: sqlite3.Connection, migrations: Migrations, upgrade: Upgrade | None = None
) -> list[schema.Step[Upgrade]]:
    """Bring the components' tables up to date, in the open write transaction: refuse a newer
    file (NewerSchema, before changing anything), add what `upgrade` adds (the columns a file
    an older release made lacks, safe to repeat), then apply each migration the file lacks and
    record its version and the time. Returns the steps applied."""
    steps = schema.plan(recorded_versions(db), migrations)
    if upgrade is not None:
        upgrade(db)
    now = time_text(datetime.now(UTC))
    for step in steps:
        step.migration(db)
        db.execute(
            f"INSERT INTO {schema.TABLE} (component, version, applied_at) VALUES (?, ?, ?)"
            " ON CONFLICT (component) DO UPDATE SET version = excluded.version,"
            " applied_at = excluded.applied_at",
            (step.component, step.version, now),
        )
    return steps


def _open_writer(
    path: Path, tables: str, upgrade: Upgrade | None, migrations: Migrations
) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the sqlite3 module opens no transactions of its own; we say BEGIN.
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        # Switching a new file to WAL needs it alone, and SQLite answers "locked" at once,
        # without waiting out the busy timeout, while another connection is opening it too.
        for attempt in Retrying(
            retry=retry_if_exception(_locked),
            stop=stop_after_delay(BUSY_TIMEOUT_S),
            wait=wait_random_exponential(multiplier=0.01, max=0.2),
            reraise=True,
        ):
            with attempt:
                db.execute("PRAGMA journal_mode=WAL").fetchall()
        # synchronous stays FULL (the default): a consumer acks an event once its effect is
        # committed, so a commit must survive a power cut, which NORMAL does not promise in WAL.
        # Statements safe to repeat: on a newer release's file they change nothing that exists.
        db.executescript(f"BEGIN IMMEDIATE; {SCHEMA_VERSIONS} {tables} COMMIT;")
        if upgrade is not None or migrations:
            # In a write transaction: of two processes opening an old file at once, the second
            # finds what the first did (and records nothing twice).
            transaction(db, lambda db: migrate(db, migrations, upgrade))
    except BaseException:
        db.close()
        raise
    return db


def _open_reader(path: Path) -> sqlite3.Connection:
    # A reader never waits for a writer in WAL mode; the short timeout bounds the rare wait
    # (another connection recovering the WAL after a crash) that would stall the event loop.
    db = sqlite3.connect(path, timeout=READ_BUSY_TIMEOUT_S, isolation_level=None)
    db.row_factory = sqlite3.Row
    return db


class _Writer:
    """One sqlite3 connection, opened and used in a thread of its own. Calls made while the
    thread is busy are run together in its next trip: one hand-over to the thread and back for
    all of them, not one each."""

    def __init__(
        self, path: Path, tables: str, upgrade: Upgrade | None, migrations: Migrations
    ) -> None:
        self._open = lambda: _open_writer(path, tables, upgrade, migrations)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._db: sqlite3.Connection | None = None
        self._queued: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in the connection's thread."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queued.append((work, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain(), name="sqlite-writer-drain")
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queued:
            trip, self._queued = self._queued, []
            outcomes = await loop.run_in_executor(self._thread, self._call, [w for w, _ in trip])
            for (_, future), (ok, value) in zip(trip, outcomes, strict=True):
                if future.done():  # its caller was cancelled
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    def _call(self, works: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        outcomes: list[tuple[bool, Any]] = []
        for work in works:
            try:
                if self._db is None:
                    self._db = self._open()
                outcomes.append((True, work(self._db)))
            except Exception as error:  # this call's alone: the others of the trip go on
                outcomes.append((False, error))
        return outcomes

    async def close(self) -> None:
        def close(_: sqlite3.Connection) -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        if self._db is not None:
            await self.run(close)
        self._thread.shutdown(wait=True)


class SQLiteFile:
    """A SQLite file with `tables` in it (statements that are safe to repeat; `upgrade` for
    what an older file lacks; `migrations`, numbered, per component), made on the first call;
    open as many as you like on one file, in any process. A file a newer release's schema
    made raises `hookhub.schema.NewerSchema` from every call."""

    def __init__(
        self,
        path: Path,
        tables: str,
        upgrade: Upgrade | None = None,
        migrations: Migrations | None = None,
    ) -> None:
        self.path = path
        self._writer = _Writer(path, tables, upgrade, migrations or {})
        self._reader: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Make the file, its tables and its migrations now (else the first call does)."""
        await self._writer.run(lambda _: None)

    async def read(self, sql: str, parameters: tuple = ()) -> list[sqlite3.Row]:
        # Reads run here, on the event loop: a WAL read of a few rows by their key takes
        # microseconds and never waits for a writer, while handing it to a thread cost more
        # than the read itself (the hand-over, the GIL): a third of a consumer's throughput.
        if self._reader is None:
            await self.open()  # the writer creates the file and schema
            self._reader = _open_reader(self.path)
        return self._reader.execute(sql, parameters).fetchall()

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in one write transaction, in the writer's thread."""
        return await self._writer.run(lambda db: transaction(db, work))

    async def close(self) -> None:
        await self._writer.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
