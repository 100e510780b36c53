"""The notifications consumer's delivery attempts in the SQLite store: the `deliveries` table,
which the event log reads too (`consumer_tables`), in a file of its own next to the store's
(`deliveries_file`), with its own writer: an attempt's outcome is recorded at once, never behind
the payments or production consumers' group commits in the store's file. A store an older
release made keeps the attempts it recorded in its own `deliveries` table: read beside the new
file's, never written again."""

import sqlite3

from hookhub.sqlite import SQLiteFile, time_of, time_text
from hookhub_eventlog.store.consumer_tables import DELIVERIES, deliveries_file

from hookhub_consumers.notifications.records import Delivery
from hookhub_consumers.store.sqlite import SQLiteRepository


def _delivery(row: sqlite3.Row) -> Delivery:
    fields = {name: row[name] for name in row.keys() if name != "id"}
    return Delivery(**{**fields, "delivered": bool(row["delivered"]), "at": time_of(row["at"])})


def _record(db: sqlite3.Connection, delivery: Delivery) -> None:
    outcome = (
        delivery.status_code,
        delivery.error,
        delivery.delivered,
        time_text(delivery.at),
        delivery.latency_ms,
    )
    attempt = (
        delivery.event_id,
        delivery.source,
        delivery.url,
        delivery.attempt,
        delivery.endpoint,
    )
    replaced = db.execute(
        f"UPDATE {DELIVERIES} SET status_code = ?, error = ?, delivered = ?, at = ?, latency_ms = ?"
        " WHERE event_id = ? AND source IS ? AND url = ? AND attempt = ? AND endpoint IS ?",
        (*outcome, *attempt),
    ).rowcount
    if not replaced:
        db.execute(
            f"INSERT INTO {DELIVERIES}"
            " (event_id, source, url, attempt, endpoint, event_type, status_code, error,"
            " delivered, at, latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*attempt, delivery.event_type, *outcome),
        )


_SCHEMA = f"""
    CREATE TABLE IF NOT EXISTS {DELIVERIES} (  -- the event log reads it: consumer_tables
        id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- recording order, the tie-break after `at`
        event_id    TEXT NOT NULL,
        event_type  TEXT NOT NULL,
        url         TEXT NOT NULL,
        attempt     INTEGER NOT NULL,
        status_code INTEGER,
        error       TEXT,
        delivered   INTEGER NOT NULL,
        at          TEXT NOT NULL,
        source      TEXT,  -- the event's; NULL on rows an older release wrote
        latency_ms  REAL,  -- NULL before the outcome, and on rows an older release wrote
        endpoint    TEXT   -- the endpoint's name; NULL on rows an older release wrote
    );
    CREATE INDEX IF NOT EXISTS deliveries_by_event ON {DELIVERIES} (event_id, at, id);
    CREATE INDEX IF NOT EXISTS deliveries_by_attempt ON {DELIVERIES} (event_id, url, attempt);
    """


class SQLiteDeliveries(SQLiteRepository):
    # No `record`: an attempt is written outside a marker, by `record` below, in its own
    # transaction, in its own file (`self.own`). The store's file keeps the table (and the
    # columns added since) for the attempts an older release recorded there.
    schema = _SCHEMA
    # Columns added after the first release: a file it made gets them when it is opened. Its
    # rows keep NULL: recorded before sources were, they match no (source, id) in `attempts`.
    added_columns = {DELIVERIES: {"source": "TEXT", "latency_ms": "REAL", "endpoint": "TEXT"}}

    def __init__(self, file: SQLiteFile) -> None:
        super().__init__(file)
        self.own = SQLiteFile(deliveries_file(file.path), _SCHEMA)

    async def open(self) -> None:
        await self.own.open()

    async def record(self, delivery: Delivery) -> None:
        await self.own.write(lambda db: _record(db, delivery))

    async def close(self) -> None:
        await self.own.close()

    async def attempts(
        self, event_id: str | None = None, source: str | None = None
    ) -> list[Delivery]:
        where, parameters = "", ()
        if event_id is not None:
            where, parameters = "WHERE event_id = ?", (event_id,)
            if source is not None:
                where, parameters = "WHERE event_id = ? AND source = ?", (event_id, source)
        sql = f"SELECT * FROM {DELIVERIES} {where} ORDER BY at, id"
        earlier = [_delivery(row) for row in await self.file.read(sql, parameters)]
        recorded = [_delivery(row) for row in await self.own.read(sql, parameters)]
        # An older release's attempts first where times tie: they were recorded before.
        return sorted(earlier + recorded, key=lambda d: d.at) if earlier else recorded
