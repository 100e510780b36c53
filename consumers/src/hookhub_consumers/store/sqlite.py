"""The embedded store: the consumers' tables in one SQLite file, shared by every consumer
process on the machine (and by the event log, in tables of its own), reached through
`hookhub.sqlite` (WAL, a writer thread, reads on the event loop).

A whole group of changes is one transaction, one fsync, with a savepoint around each change so
that one that fails (a stale version) is rolled back alone.
"""

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hookhub.sqlite import SQLiteFile, path_of, time_of, time_text

from hookhub_consumers.records import Delivery, Order, Ticket
from hookhub_consumers.store.base import (
    ConcurrentUpdate,
    Marker,
    Sent,
    Store,
    Write,
    Written,
)

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
CREATE TABLE IF NOT EXISTS deliveries (  -- the event log reads it: consumer_tables
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
CREATE TABLE IF NOT EXISTS markers (  -- the event log reads it: consumer_tables
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


def _json_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _add_missing_columns(db: sqlite3.Connection) -> None:
    for table, columns in ADDED_COLUMNS.items():
        present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, declaration in columns.items():
            if name not in present:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")


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
        (marker.consumer, marker.event_key, time_text(datetime.now(UTC))),
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
            "updated_at": time_text(state.updated_at),
        }
    return "tickets", {
        "order_id": state.order_id,
        "status": state.status,
        "updated_at": time_text(state.updated_at),
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


# A row holds a record's fields by their names (a delivery's also its recording order, `id`).


def _order(row: sqlite3.Row) -> Order:
    customer = None if row["customer"] is None else json.loads(row["customer"])
    parsed = {"customer": customer, "items": json.loads(row["items"])}
    return Order(**{**dict(row), **parsed, "updated_at": time_of(row["updated_at"])})


def _ticket(row: sqlite3.Row) -> Ticket:
    return Ticket(row["order_id"], row["status"], row["version"], time_of(row["updated_at"]))


def _delivery(row: sqlite3.Row) -> Delivery:
    fields = {name: row[name] for name in row.keys() if name != "id"}
    return Delivery(**{**fields, "delivered": bool(row["delivered"]), "at": time_of(row["at"])})


def _record_delivery(db: sqlite3.Connection, delivery: Delivery) -> None:
    outcome = (delivery.status_code, delivery.error, delivery.delivered, time_text(delivery.at))
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
        self.file = SQLiteFile(path, SCHEMA, _add_missing_columns)

    @classmethod
    def from_url(cls, url: str) -> "SQLiteStore":
        """`sqlite:///relative/to/cwd.db` or `sqlite:////absolute/path.db`."""
        return cls(path_of(url))

    async def write(self, writes: Sequence[Write]) -> list[Written]:
        return await self.file.write(lambda db: _write_group(db, writes))

    async def get_order(self, order_id: str) -> Order | None:
        rows = await self.file.read("SELECT * FROM orders WHERE order_id = ?", (order_id,))
        return _order(rows[0]) if rows else None

    async def order_of_payment(self, provider: str, payment_id: str) -> Order | None:
        rows = await self.file.read(
            "SELECT * FROM orders WHERE provider = ? AND payment_id = ? LIMIT 1",
            (provider, payment_id),
        )
        return _order(rows[0]) if rows else None

    async def get_ticket(self, order_id: str) -> Ticket | None:
        rows = await self.file.read("SELECT * FROM tickets WHERE order_id = ?", (order_id,))
        return _ticket(rows[0]) if rows else None

    async def pending(self, marker: Marker) -> list[str]:
        rows = await self.file.read(
            "SELECT event FROM outbox WHERE consumer = ? AND event_key = ? ORDER BY seq",
            (marker.consumer, marker.event_key),
        )
        return [row["event"] for row in rows]

    async def unsent(self, consumer: str, saved_before: datetime) -> list[Marker]:
        # The marker is written in the outbox's own transaction, so its time is the outbox's.
        rows = await self.file.read(
            "SELECT DISTINCT outbox.event_key FROM outbox JOIN markers"
            " USING (consumer, event_key) WHERE consumer = ? AND processed_at < ?",
            (consumer, time_text(saved_before)),
        )
        return [Marker(consumer, row["event_key"]) for row in rows]

    async def record_delivery(self, delivery: Delivery) -> None:
        await self.file.write(lambda db: _record_delivery(db, delivery))

    async def deliveries(self, event_id: str | None = None) -> list[Delivery]:
        where, parameters = (
            ("WHERE event_id = ?", (event_id,)) if event_id is not None else ("", ())
        )
        rows = await self.file.read(f"SELECT * FROM deliveries {where} ORDER BY at, id", parameters)
        return [_delivery(row) for row in rows]

    async def is_processed(self, marker: Marker) -> bool:
        rows = await self.file.read(
            "SELECT 1 FROM markers WHERE consumer = ? AND event_key = ?",
            (marker.consumer, marker.event_key),
        )
        return bool(rows)

    async def check_writable(self) -> None:
        now = time_text(datetime.now(UTC))
        await self.file.write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, ?)", (now,)
            )
        )

    async def close(self) -> None:
        await self.file.close()
