"""The event log in the SQLite file the consumers' store uses too (`hookhub.sqlite`): its own
tables `events` and `steps`, and reads of the consumers' `markers` and `deliveries`."""

import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from hookhub import topology
from hookhub.sqlite import SQLiteFile, path_of, time_of, time_text

from hookhub_eventlog.store.base import Attempt, EventLog, EventQuery, LoggedEvent, Step
from hookhub_eventlog.store.consumer_tables import DELIVERIES, MARKERS, event_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (  -- the index; the messages are in the archive
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
"""


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
        parameters.append(time_text(query.since))
    if query.until is not None:
        clauses.append("time < ?")
        parameters.append(time_text(query.until))
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(parameters)


def _logged(row: sqlite3.Row) -> LoggedEvent:
    return LoggedEvent(
        position=row["position"],
        id=row["id"],
        source=row["source"],
        type=row["type"],
        time=time_of(row["time"]),
        subject=row["subject"],
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
    )


class SQLiteEventLog(EventLog):
    """The event log in one SQLite file; open as many as you like on the same file."""

    def __init__(self, path: Path) -> None:
        self.file = SQLiteFile(path, SCHEMA)

    @classmethod
    def from_url(cls, url: str) -> "SQLiteEventLog":
        """`sqlite:///relative/to/cwd.db` or `sqlite:////absolute/path.db`."""
        return cls(path_of(url))

    async def index(self, events: Sequence[LoggedEvent]) -> None:
        rows = [
            (
                e.position,
                e.id,
                e.source,
                e.type,
                time_text(e.time),
                e.subject,
                e.correlation_id,
                e.causation_id,
            )
            for e in events
        ]
        await self.file.write(
            lambda db: db.executemany(
                "INSERT OR IGNORE INTO events (position, id, source, type, time, subject,"
                " correlation_id, causation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        )

    async def indexed_up_to(self) -> int | None:
        rows = await self.file.read("SELECT max(position) AS last FROM events")
        return rows[0]["last"]

    async def find_events(self, query: EventQuery) -> list[LoggedEvent]:
        where, parameters = _event_filters(query)
        sql = f"SELECT * FROM events {where} ORDER BY position DESC"
        if query.matched_by_the_store:
            sql, parameters = sql + " LIMIT ?", (*parameters, query.limit)
        found = []
        # A topic pattern is narrowed in SQL by its literal head and matched here, word by word.
        for row in await self.file.read(sql, parameters):
            if query.type is None or topology.binding_matches(query.type, row["type"]):
                found.append(_logged(row))
                if len(found) == query.limit:
                    break
        return found

    async def record(self, step: Step) -> None:
        row = (step.event_id, step.consumer, step.what, step.detail, time_text(step.at))
        await self.file.write(
            lambda db: db.execute(
                "INSERT INTO steps (event_id, consumer, what, detail, at) VALUES (?, ?, ?, ?, ?)",
                row,
            )
        )

    async def steps(self, event_id: str) -> list[Step]:
        rows = await self.file.read(
            "SELECT * FROM steps WHERE event_id = ? ORDER BY id", (event_id,)
        )
        return [
            Step(r["event_id"], r["consumer"], r["what"], r["detail"], time_of(r["at"]))
            for r in rows
        ]

    async def processed_by(self, source: str, event_id: str) -> list[tuple[str, datetime]]:
        rows = await self._theirs(
            f"SELECT consumer, processed_at FROM {MARKERS}"
            " WHERE event_key = ? ORDER BY processed_at",
            (event_key(source, event_id),),
        )
        return [(r["consumer"], time_of(r["processed_at"])) for r in rows]

    async def attempts(self, event_id: str) -> list[Attempt]:
        rows = await self._theirs(
            f"SELECT url, delivered, at, status_code, error FROM {DELIVERIES}"
            " WHERE event_id = ? ORDER BY at, id",
            (event_id,),
        )
        return [
            Attempt(r["url"], bool(r["delivered"]), time_of(r["at"]), r["status_code"], r["error"])
            for r in rows
        ]

    async def _theirs(self, sql: str, parameters: tuple) -> list[sqlite3.Row]:
        """A read of the consumers' tables: none yet (no consumer ever opened the file) is no
        rows."""
        try:
            return await self.file.read(sql, parameters)
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return []
            raise

    async def close(self) -> None:
        await self.file.close()
