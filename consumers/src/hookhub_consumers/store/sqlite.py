"""The embedded store: one SQLite file, shared by every consumer process on the machine.

Processes coordinate through SQLite's own file locks. WAL lets readers go on while one process
writes. Every write starts with BEGIN IMMEDIATE, which takes the write lock up front (waiting up to
BUSY_TIMEOUT_S for it): a deferred transaction that read first and then tried to write could fail
at once with "database is locked", because SQLite cannot wait for a lock upgrade without risking a
deadlock.

Each store has two connections. The writer lives in a thread of its own, so that a sync to disk or
a wait for another process's lock never stalls the event loop; calls made while it is busy go in
its next trip, and a whole group of changes is one transaction, one fsync, with a savepoint around
each change so that one that fails (a stale version) is rolled back alone. The reader runs on the
event loop (see `_read`).
"""

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from hookhub import topology
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from hookhub_consumers.records import Delivery, Order, Ticket
from hookhub_consumers.store.base import (
    ConcurrentUpdate,
    EventQuery,
    LoggedEvent,
    Marker,
    Sent,
    Step,
    Store,
    Write,
    Written,
)

URL_PREFIX = "sqlite:///"
# Long enough to wait out another process's write transaction (each takes milliseconds), short
# enough that a stuck process shows up as an error instead of a silent hang.
BUSY_TIMEOUT_S = 10.0
READ_BUSY_TIMEOUT_S = 0.5
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    amount     INTEGER,
    currency   TEXT,
    customer   TEXT,           -- JSON object
    items      TEXT NOT NULL,  -- JSON array
    provider   TEXT,
    payment_id TEXT,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL,
    paid_amount     INTEGER,
    paid_currency   TEXT,
    refunded_amount INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS orders_by_payment ON orders (provider, payment_id);
CREATE TABLE IF NOT EXISTS tickets (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- recording order, the tie-break after `at`
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    url         TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT,
    delivered   INTEGER NOT NULL,
    at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (event_id, at, id);
CREATE INDEX IF NOT EXISTS deliveries_by_attempt ON deliveries (event_id, url, attempt);
CREATE TABLE IF NOT EXISTS outbox (
    consumer  TEXT NOT NULL,
    event_key TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    event     TEXT NOT NULL,       -- a serialized Event, published after the commit
    PRIMARY KEY (consumer, event_key, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (  -- the event log's index; the messages are in the archive
    position       INTEGER PRIMARY KEY,  -- the offset in the archive stream
    id             TEXT NOT NULL,
    source         TEXT NOT NULL,
    type           TEXT NOT NULL,
    time           TEXT NOT NULL,
    subject        TEXT,
    correlation_id TEXT,
    causation_id   TEXT
);
CREATE INDEX IF NOT EXISTS events_by_id ON events (id);
CREATE INDEX IF NOT EXISTS events_by_type ON events (type, position);
CREATE INDEX IF NOT EXISTS events_by_source ON events (source, position);
CREATE INDEX IF NOT EXISTS events_by_correlation ON events (correlation_id);
CREATE INDEX IF NOT EXISTS events_by_subject ON events (subject);
CREATE INDEX IF NOT EXISTS events_by_cause ON events (causation_id);
CREATE INDEX IF NOT EXISTS events_by_time ON events (time);
CREATE TABLE IF NOT EXISTS steps (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    consumer TEXT NOT NULL,
    what     TEXT NOT NULL,
    detail   TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS steps_by_event ON steps (event_id, id);
CREATE TABLE IF NOT EXISTS health (
    id         INTEGER PRIMARY KEY CHECK (id = 1),  -- one row, rewritten by each readiness check
    checked_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS markers (
    consumer     TEXT NOT NULL,
    event_key    TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_key)
) WITHOUT ROWID;
"""
# Columns added to a table after it was first made: SCHEMA has them for a new file, and a file
# an older version made gets them when it is opened (ALTER TABLE ... ADD COLUMN).
ADDED_COLUMNS: dict[str, dict[str, str]] = {
    "orders": {
        "paid_amount": "INTEGER",
        "paid_currency": "TEXT",
        "refunded_amount": "INTEGER NOT NULL DEFAULT 0",
    },
}


def _time_text(at: datetime) -> str:
    # UTC to the millisecond, as MongoDB keeps it, so both adapters give back the same value; the
    # fixed width and offset make text order the time order (deliveries are sorted by it).
    # A naive datetime is taken as UTC, as PyMongo does.
    utc = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _event_filters(query: EventQuery) -> tuple[str, tuple]:
    """The WHERE clause (and its parameters) of an event query; a type pattern by its literal
    head only (`stripe.#` → `stripe.%`): the rest is matched word by word afterwards."""
    clauses, parameters = [], []
    for column in ("id", "source", "correlation_id", "subject", "causation_id"):
        if (value := getattr(query, column)) is not None:
            clauses.append(f"{column} = ?")
            parameters.append(value)
    if query.type is not None:
        head = topology.literal_head(query.type)
        if head == query.type:
            clauses.append("type = ?")
            parameters.append(head)
        else:
            escaped = head.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("type LIKE ? ESCAPE '\\'")
            parameters.append(escaped + "%")
    if query.since is not None:
        clauses.append("time >= ?")
        parameters.append(_time_text(query.since))
    if query.until is not None:
        clauses.append("time < ?")
        parameters.append(_time_text(query.until))
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(parameters)


def _logged(row: sqlite3.Row) -> LoggedEvent:
    return LoggedEvent(
        position=row["position"],
        id=row["id"],
        source=row["source"],
        type=row["type"],
        time=_time(row["time"]),
        subject=row["subject"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
    )


def _json_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _locked(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


def _open(path: Path) -> sqlite3.Connection:
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
        db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
        _transaction(db, _add_missing_columns)
    except BaseException:
        db.close()
        raise
    return db


def _add_missing_columns(db: sqlite3.Connection) -> None:
    # In a write transaction: of two processes opening an old file at once, the second finds
    # the columns the first added.
    for table, columns in ADDED_COLUMNS.items():
        present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, declaration in columns.items():
            if name not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")


def _open_reader(path: Path) -> sqlite3.Connection:
    # A reader never waits for a writer in WAL mode; the short timeout bounds the rare wait
    # (another connection recovering the WAL after a crash) that would stall the event loop.
    db = sqlite3.connect(path, timeout=READ_BUSY_TIMEOUT_S, isolation_level=None)
    db.row_factory = sqlite3.Row
    return db


class _Connection:
    """One sqlite3 connection, opened and used in a thread of its own. Calls made while the
    thread is busy are run together in its next trip: one hand-over to the thread and back for
    all of them, not one each."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{name}")
        self._db: sqlite3.Connection | None = None
        self._queued: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._draining: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` in the connection's thread."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queued.append((work, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain(), name=f"{self._thread}-drain")
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
                    self._db = _open(self.path)
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


def _transaction(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
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


def _write_group(db: sqlite3.Connection, writes: Sequence[Write]) -> list[Written]:
    """Every write in one transaction, each inside a savepoint so that it fails alone."""
    results: list[Written] = []
    for write in writes:
        db.execute("SAVEPOINT one_write")
        try:
            result = _apply(db, write)
        except Exception as error:  # ConcurrentUpdate, or a value SQLite cannot hold
            db.execute("ROLLBACK TO one_write")
            results.append(error)
        else:
            results.append(result)
        db.execute("RELEASE one_write")
    return results


def _apply(db: sqlite3.Connection, write: Write) -> bool:
    if isinstance(write, Step):
        db.execute(
            "INSERT INTO steps (event_id, consumer, what, detail, at) VALUES (?, ?, ?, ?, ?)",
            (write.event_id, write.consumer, write.what, write.detail, _time_text(write.at)),
        )
        return True
    if isinstance(write, Sent):
        db.execute(
            "DELETE FROM outbox WHERE consumer = ? AND event_key = ?",
            (write.marker.consumer, write.marker.event_key),
        )
        return True
    marker = write.marker
    inserted = db.execute(
        "INSERT INTO markers (consumer, event_key, processed_at) VALUES (?, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (marker.consumer, marker.event_key, _time_text(datetime.now(UTC))),
    ).rowcount
    if not inserted:
        return False  # this event was handled before: nothing is written
    if write.state is not None:
        _save_state(db, write.state)
    db.executemany(
        "INSERT INTO outbox (consumer, event_key, seq, event) VALUES (?, ?, ?, ?)",
        [(marker.consumer, marker.event_key, seq, e) for seq, e in enumerate(write.outbox)],
    )
    return True


def _row(state: Order | Ticket) -> tuple[str, dict[str, Any]]:
    """The table and the columns a state is kept in (all but the version)."""
    if isinstance(state, Order):
        return "orders", {
            "order_id": state.order_id,
            "status": state.status,
            "amount": state.amount,
            "currency": state.currency,
            "customer": _json_or_null(state.customer),
            "items": json.dumps(state.items),
            "provider": state.provider,
            "payment_id": state.payment_id,
            "paid_amount": state.paid_amount,
            "paid_currency": state.paid_currency,
            "refunded_amount": state.refunded_amount,
            "updated_at": _time_text(state.updated_at),
        }
    return "tickets", {
        "order_id": state.order_id,
        "status": state.status,
        "updated_at": _time_text(state.updated_at),
    }


def _save_state(db: sqlite3.Connection, state: Order | Ticket) -> None:
    """The state at its version + 1; ConcurrentUpdate when the stored one is not its version."""
    table, row = _row(state)
    if state.version == 0:
        columns, placeholders = ", ".join(row), ", ".join("?" * len(row))
        changed = db.execute(
            f"INSERT INTO {table} ({columns}, version) VALUES ({placeholders}, 1)"
            " ON CONFLICT (order_id) DO NOTHING",
            tuple(row.values()),
        ).rowcount
    else:
        changes = {k: v for k, v in row.items() if k != "order_id"}
        changed = db.execute(
            f"UPDATE {table} SET {', '.join(f'{k} = ?' for k in changes)},"
            " version = version + 1 WHERE order_id = ? AND version = ?",
            (*changes.values(), state.order_id, state.version),
        ).rowcount
    if changed != 1:
        what = table.removesuffix("s")
        raise ConcurrentUpdate(
            f"{what} '{state.order_id}' was saved by someone else since version {state.version}"
        )


def _order(row: sqlite3.Row) -> Order:
    return Order(
        order_id=row["order_id"],
        status=row["status"],
        amount=row["amount"],
        currency=row["currency"],
        customer=None if row["customer"] is None else json.loads(row["customer"]),
        items=json.loads(row["items"]),
        provider=row["provider"],
        payment_id=row["payment_id"],
        paid_amount=row["paid_amount"],
        paid_currency=row["paid_currency"],
        refunded_amount=row["refunded_amount"],
        version=row["version"],
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


def _ticket(row: sqlite3.Row) -> Ticket:
    return Ticket(
        order_id=row["order_id"],
        status=row["status"],
        version=row["version"],
        updated_at=datetime.fromisoformat(row["updated_at"]),
    )


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        event_id=row["event_id"],
        event_type=row["event_type"],
        url=row["url"],
        attempt=row["attempt"],
        status_code=row["status_code"],
        error=row["error"],
        delivered=bool(row["delivered"]),
        at=datetime.fromisoformat(row["at"]),
    )


def _record_delivery(db: sqlite3.Connection, delivery: Delivery) -> None:
    outcome = (delivery.status_code, delivery.error, delivery.delivered, _time_text(delivery.at))
    attempt = (delivery.event_id, delivery.url, delivery.attempt)
    replaced = db.execute(
        "UPDATE deliveries SET status_code = ?, error = ?, delivered = ?, at = ?"
        " WHERE event_id = ? AND url = ? AND attempt = ?",
        (*outcome, *attempt),
    ).rowcount
    if not replaced:
        db.execute(
            "INSERT INTO deliveries"
            " (event_id, url, attempt, event_type, status_code, error, delivered, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*attempt, delivery.event_type, *outcome),
        )


class SQLiteStore(Store):
    """The store in one SQLite file; open as many as you like on the same file, in any process."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self._writer = _Connection(path, "writer")
        self._reader_db: sqlite3.Connection | None = None

    @classmethod
    def from_url(cls, url: str) -> "SQLiteStore":
        """`sqlite:///relative/to/cwd.db` or `sqlite:////absolute/path.db`."""
        if not url.startswith(URL_PREFIX) or len(url) == len(URL_PREFIX):
            raise ValueError(
                f"bad SQLite store URL '{url}': use sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db"
            )
        return cls(Path(url.removeprefix(URL_PREFIX)))

    async def _read(self, sql: str, parameters: tuple = ()) -> list[sqlite3.Row]:
        # Reads run here, on the event loop: a WAL read of a few rows by their key takes
        # microseconds and never waits for a writer, while handing it to a thread cost more
        # than the read itself (the hand-over, the GIL): a third of a consumer's throughput.
        if self._reader_db is None:
            await self._writer.run(lambda _: None)  # the writer creates the file and schema
            self._reader_db = _open_reader(self.path)
        return self._reader_db.execute(sql, parameters).fetchall()

    async def write(self, writes: Sequence[Write]) -> list[Written]:
        return await self._writer.run(
            lambda db: _transaction(db, lambda db: _write_group(db, writes))
        )

    async def get_order(self, order_id: str) -> Order | None:
        rows = await self._read("SELECT * FROM orders WHERE order_id = ?", (order_id,))
        return _order(rows[0]) if rows else None

    async def order_of_payment(self, provider: str, payment_id: str) -> Order | None:
        rows = await self._read(
            "SELECT * FROM orders WHERE provider = ? AND payment_id = ? LIMIT 1",
            (provider, payment_id),
        )
        return _order(rows[0]) if rows else None

    async def get_ticket(self, order_id: str) -> Ticket | None:
        rows = await self._read("SELECT * FROM tickets WHERE order_id = ?", (order_id,))
        return _ticket(rows[0]) if rows else None

    async def pending(self, marker: Marker) -> list[str]:
        rows = await self._read(
            "SELECT event FROM outbox WHERE consumer = ? AND event_key = ? ORDER BY seq",
            (marker.consumer, marker.event_key),
        )
        return [row["event"] for row in rows]

    async def unsent(self, consumer: str, saved_before: datetime) -> list[Marker]:
        # The marker is written in the outbox's own transaction, so its time is the outbox's.
        rows = await self._read(
            "SELECT DISTINCT outbox.event_key FROM outbox JOIN markers"
            " USING (consumer, event_key) WHERE consumer = ? AND processed_at < ?",
            (consumer, _time_text(saved_before)),
        )
        return [Marker(consumer, row["event_key"]) for row in rows]

    async def record_delivery(self, delivery: Delivery) -> None:
        await self._writer.run(
            lambda db: _transaction(db, lambda db: _record_delivery(db, delivery))
        )

    async def deliveries(self, event_id: str | None = None) -> list[Delivery]:
        where, parameters = (
            ("WHERE event_id = ?", (event_id,)) if event_id is not None else ("", ())
        )
        rows = await self._read(f"SELECT * FROM deliveries {where} ORDER BY at, id", parameters)
        return [_delivery(row) for row in rows]

    async def is_processed(self, marker: Marker) -> bool:
        rows = await self._read(
            "SELECT 1 FROM markers WHERE consumer = ? AND event_key = ?",
            (marker.consumer, marker.event_key),
        )
        return bool(rows)

    async def index(self, events: Sequence[LoggedEvent]) -> None:
        rows = [
            (
                e.position,
                e.id,
                e.source,
                e.type,
                _time_text(e.time),
                e.subject,
                e.correlation_id,
                e.causation_id,
            )
            for e in events
        ]
        await self._writer.run(
            lambda db: _transaction(
                db,
                lambda db: db.executemany(
                    "INSERT OR IGNORE INTO events (position, id, source, type, time, subject,"
                    " correlation_id, causation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                ),
            )
        )

    async def indexed_up_to(self) -> int | None:
        rows = await self._read("SELECT max(position) AS last FROM events")
        return rows[0]["last"]

    async def find_events(self, query: EventQuery) -> list[LoggedEvent]:
        where, parameters = _event_filters(query)
        sql = f"SELECT * FROM events {where} ORDER BY position DESC"
        if query.matched_by_the_store:
            sql, parameters = sql + " LIMIT ?", (*parameters, query.limit)
        found = []
        # A topic pattern is narrowed in SQL by its literal head and matched here, word by word.
        for row in await self._read(sql, parameters):
            if query.type is None or topology.binding_matches(query.type, row["type"]):
                found.append(_logged(row))
                if len(found) == query.limit:
                    break
        return found

    async def steps(self, event_id: str) -> list[Step]:
        rows = await self._read("SELECT * FROM steps WHERE event_id = ? ORDER BY id", (event_id,))
        return [
            Step(r["event_id"], r["consumer"], r["what"], r["detail"], _time(r["at"])) for r in rows
        ]

    async def processed_by(self, event_key: str) -> list[tuple[str, datetime]]:
        rows = await self._read(
            "SELECT consumer, processed_at FROM markers WHERE event_key = ? ORDER BY processed_at",
            (event_key,),
        )
        return [(r["consumer"], _time(r["processed_at"])) for r in rows]

    async def check_writable(self) -> None:
        now = _time_text(datetime.now(UTC))
        await self._writer.run(
            lambda db: _transaction(
                db,
                lambda db: db.execute(
                    "INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, ?)", (now,)
                ),
            )
        )

    async def close(self) -> None:
        await self._writer.close()
        if self._reader_db is not None:
            self._reader_db.close()
            self._reader_db = None
