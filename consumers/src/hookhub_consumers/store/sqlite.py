"""The embedded store: one SQLite file, shared by every consumer process on the machine.

Processes coordinate through SQLite's own file locks. WAL lets readers go on while one process
writes. Every write starts with BEGIN IMMEDIATE, which takes the write lock up front (waiting up to
BUSY_TIMEOUT_S for it): a deferred transaction that read first and then tried to write could fail
at once with "database is locked", because SQLite cannot wait for a lock upgrade without risking a
deadlock. A state change and its marker commit in that one transaction.
"""

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_random_exponential

from hookhub_consumers.records import Delivery, Order, Ticket
from hookhub_consumers.store.base import ConcurrentUpdate, Marker, Store

URL_PREFIX = "sqlite:///"
# Long enough to wait out another process's write transaction (each takes milliseconds), short
# enough that a stuck process shows up as an error instead of a silent hang.
BUSY_TIMEOUT_S = 10.0

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
    updated_at TEXT NOT NULL
);
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


def _time_text(at: datetime) -> str:
    # UTC to the millisecond, as MongoDB keeps it, so both adapters give back the same value; the
    # fixed width and offset make text order the time order (deliveries are sorted by it).
    # A naive datetime is taken as UTC, as PyMongo does.
    utc = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds")


# Every statement's cursor is closed before the next one: a SELECT left open would hold on to its
# read snapshot, and SQLite refuses to commit while a statement is in progress.
async def _one(db: aiosqlite.Connection, sql: str, parameters: tuple) -> aiosqlite.Row | None:
    rows = await db.execute_fetchall(sql, parameters)
    return next(iter(rows), None)


async def _changed(db: aiosqlite.Connection, sql: str, parameters: tuple) -> int:
    """Run a write; the number of rows it changed."""
    async with db.execute(sql, parameters) as cursor:
        return cursor.rowcount


def _locked(error: BaseException) -> bool:
    return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)


def _json_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


class SQLiteStore(Store):
    """The store in one SQLite file; open as many as you like on the same file, in any process."""

    def __init__(self, path: Path):
        self.path = path
        self._db: aiosqlite.Connection | None = None
        # One connection per store, shared by the process's coroutines: they take turns, so one
        # coroutine's statements never land inside another's open transaction.
        self._turn = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> "SQLiteStore":
        """`sqlite:///relative/to/cwd.db` or `sqlite:////absolute/path.db`."""
        if not url.startswith(URL_PREFIX) or len(url) == len(URL_PREFIX):
            raise ValueError(
                f"bad SQLite store URL '{url}': use sqlite:///relative/path.db "
                "or sqlite:////absolute/path.db"
            )
        return cls(Path(url.removeprefix(URL_PREFIX)))

    async def _open(self) -> aiosqlite.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: the sqlite3 module opens no transactions of its own; we say BEGIN.
        db = await aiosqlite.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.row_factory = aiosqlite.Row
            # Switching a new file to WAL needs it alone, and SQLite answers "locked" at once,
            # without waiting out the busy timeout, while another connection is opening it too.
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_locked),
                stop=stop_after_delay(BUSY_TIMEOUT_S),
                wait=wait_random_exponential(multiplier=0.01, max=0.2),
                reraise=True,
            ):
                with attempt:
                    await db.execute_fetchall("PRAGMA journal_mode=WAL")
            # synchronous stays FULL (the default): a consumer acks an event once its effect is
            # committed, so a commit must survive a power cut, which NORMAL does not promise in WAL.
            await db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
        except BaseException:
            await db.close()  # its worker thread would otherwise keep the process alive
            raise
        return db

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._turn:
            if self._db is None:
                self._db = await self._open()
            yield self._db

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: committed when the block returns, rolled back if it raises."""
        async with self._reading() as db:
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                await db.rollback()
                raise
            await db.commit()

    async def _insert_marker(self, db: aiosqlite.Connection, marker: Marker) -> bool:
        return 1 == await _changed(
            db,
            "INSERT INTO markers (consumer, event_key, processed_at) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (marker.consumer, marker.event_key, _time_text(datetime.now(UTC))),
        )

    async def _save(
        self,
        table: str,
        row: dict[str, Any],
        version: int,
        marker: Marker,
        what: str,
        outbox: Sequence[str],
    ) -> bool:
        """Write `row` (keyed by order_id) at `version + 1` with the marker and the outbox, in
        one transaction."""
        async with self._writing() as db:
            if not await self._insert_marker(db, marker):
                return False  # nothing was written, so committing the empty transaction is moot
            if version == 0:
                columns, placeholders = ", ".join(row), ", ".join("?" * len(row))
                changed = await _changed(
                    db,
                    f"INSERT INTO {table} ({columns}, version) VALUES ({placeholders}, 1)"
                    " ON CONFLICT (order_id) DO NOTHING",
                    tuple(row.values()),
                )
            else:
                changes = {k: v for k, v in row.items() if k != "order_id"}
                changed = await _changed(
                    db,
                    f"UPDATE {table} SET {', '.join(f'{k} = ?' for k in changes)},"
                    " version = version + 1 WHERE order_id = ? AND version = ?",
                    (*changes.values(), row["order_id"], version),
                )
            if changed != 1:
                # Raising rolls the marker back too: the event is handled again from a fresh read.
                raise ConcurrentUpdate(
                    f"{what} '{row['order_id']}' was saved by someone else since version {version}"
                )
            await db.executemany(
                "INSERT INTO outbox (consumer, event_key, seq, event) VALUES (?, ?, ?, ?)",
                [(marker.consumer, marker.event_key, seq, e) for seq, e in enumerate(outbox)],
            )
        return True

    async def get_order(self, order_id: str) -> Order | None:
        async with self._reading() as db:
            row = await _one(db, "SELECT * FROM orders WHERE order_id = ?", (order_id,))
        if row is None:
            return None
        return Order(
            order_id=row["order_id"],
            status=row["status"],
            amount=row["amount"],
            currency=row["currency"],
            customer=None if row["customer"] is None else json.loads(row["customer"]),
            items=json.loads(row["items"]),
            provider=row["provider"],
            payment_id=row["payment_id"],
            version=row["version"],
            updated_at=datetime.fromisoformat(row["updated_at"]),
        )

    async def save_order(self, order: Order, marker: Marker, outbox: Sequence[str] = ()) -> bool:
        row = {
            "order_id": order.order_id,
            "status": order.status,
            "amount": order.amount,
            "currency": order.currency,
            "customer": _json_or_null(order.customer),
            "items": json.dumps(order.items),
            "provider": order.provider,
            "payment_id": order.payment_id,
            "updated_at": _time_text(order.updated_at),
        }
        saved = await self._save("orders", row, order.version, marker, "order", outbox)
        if saved:
            order.version += 1
        return saved

    async def get_ticket(self, order_id: str) -> Ticket | None:
        async with self._reading() as db:
            row = await _one(db, "SELECT * FROM tickets WHERE order_id = ?", (order_id,))
        if row is None:
            return None
        return Ticket(
            order_id=row["order_id"],
            status=row["status"],
            version=row["version"],
            updated_at=datetime.fromisoformat(row["updated_at"]),
        )

    async def save_ticket(self, ticket: Ticket, marker: Marker, outbox: Sequence[str] = ()) -> bool:
        row = {
            "order_id": ticket.order_id,
            "status": ticket.status,
            "updated_at": _time_text(ticket.updated_at),
        }
        saved = await self._save("tickets", row, ticket.version, marker, "ticket", outbox)
        if saved:
            ticket.version += 1
        return saved

    async def pending(self, marker: Marker) -> list[str]:
        async with self._reading() as db:
            rows = await db.execute_fetchall(
                "SELECT event FROM outbox WHERE consumer = ? AND event_key = ? ORDER BY seq",
                (marker.consumer, marker.event_key),
            )
        return [row["event"] for row in rows]

    async def sent(self, marker: Marker) -> None:
        async with self._writing() as db:
            await db.execute(
                "DELETE FROM outbox WHERE consumer = ? AND event_key = ?",
                (marker.consumer, marker.event_key),
            )

    async def unsent(self, consumer: str, saved_before: datetime) -> list[Marker]:
        # The marker is written in the outbox's own transaction, so its time is the outbox's.
        async with self._reading() as db:
            rows = await db.execute_fetchall(
                "SELECT DISTINCT outbox.event_key FROM outbox JOIN markers"
                " USING (consumer, event_key) WHERE consumer = ? AND processed_at < ?",
                (consumer, _time_text(saved_before)),
            )
        return [Marker(consumer, row["event_key"]) for row in rows]

    async def record_delivery(self, delivery: Delivery) -> None:
        outcome = (
            delivery.status_code,
            delivery.error,
            delivery.delivered,
            _time_text(delivery.at),
        )
        attempt = (delivery.event_id, delivery.url, delivery.attempt)
        async with self._writing() as db:
            replaced = await _changed(
                db,
                "UPDATE deliveries SET status_code = ?, error = ?, delivered = ?, at = ?"
                " WHERE event_id = ? AND url = ? AND attempt = ?",
                (*outcome, *attempt),
            )
            if not replaced:
                await _changed(
                    db,
                    "INSERT INTO deliveries"
                    " (event_id, url, attempt, event_type, status_code, error, delivered, at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*attempt, delivery.event_type, *outcome),
                )

    async def deliveries(self, event_id: str | None = None) -> list[Delivery]:
        query = "SELECT * FROM deliveries"
        parameters: tuple[str, ...] = ()
        if event_id is not None:
            query += " WHERE event_id = ?"
            parameters = (event_id,)
        async with self._reading() as db:
            rows = await db.execute_fetchall(query + " ORDER BY at, id", parameters)
        return [
            Delivery(
                event_id=row["event_id"],
                event_type=row["event_type"],
                url=row["url"],
                attempt=row["attempt"],
                status_code=row["status_code"],
                error=row["error"],
                delivered=bool(row["delivered"]),
                at=datetime.fromisoformat(row["at"]),
            )
            for row in rows
        ]

    async def is_processed(self, marker: Marker) -> bool:
        async with self._reading() as db:
            found = await _one(
                db,
                "SELECT 1 FROM markers WHERE consumer = ? AND event_key = ?",
                (marker.consumer, marker.event_key),
            )
            return found is not None

    async def mark_processed(self, marker: Marker) -> bool:
        async with self._writing() as db:
            return await self._insert_marker(db, marker)

    async def check_writable(self) -> None:
        async with self._writing() as db:
            await db.execute(
                "INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, ?)",
                (_time_text(datetime.now(UTC)),),
            )

    async def close(self) -> None:
        async with self._turn:
            if self._db is not None:
                await self._db.close()
                self._db = None
