"""The embedded store: the consumers' tables in one SQLite file, shared by every consumer
process on the machine (and by the event log, in tables of its own), reached through
`hookhub.sqlite` (WAL, a writer thread, reads on the event loop).

The store keeps the runtime's tables (markers, outbox, health); each consumer's repository
(`SQLiteRepository`) adds its own to the file's schema and writes its states inside the store's
transaction. A whole group of changes is one transaction, one fsync, with a savepoint around
each change so that one that fails (a stale version) is rolled back alone.

Schema versions (`hookhub.schema`): the runtime's tables are the component `store`
(`MIGRATIONS`), each consumer's records the component named for the consumer (its
repository's `migrations`, after the baseline), recorded in `schema_versions` when the file is
opened; a file a newer release made is refused.
"""

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from hookhub import schema
from hookhub.sqlite import Migrations, SQLiteFile, Upgrade, path_of, time_text
from hookhub_eventlog.store.consumer_tables import MARKER_EVENT_ID, MARKERS

from hookhub_consumers.store.base import (
    ConcurrentUpdate,
    Marker,
    Record,
    Repository,
    Sent,
    Store,
    Write,
    Written,
    load_repositories,
)

SCHEMA = f"""
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
CREATE TABLE IF NOT EXISTS {MARKERS} (  -- the event log reads it: consumer_tables
    consumer     TEXT NOT NULL,
    event_key    TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_key)
) WITHOUT ROWID;
"""
COMPONENT = "store"  # the runtime's tables, in schema_versions


def index_markers_by_event_id(db: sqlite3.Connection) -> None:
    """The event log finds the markers of an event it has no index row for (accepted before the
    archive existed) by its id alone."""
    db.execute(f"CREATE INDEX IF NOT EXISTS markers_by_event_id ON {MARKERS} ({MARKER_EVENT_ID})")


# The runtime's tables' numbered migrations: 1, the baseline, is SCHEMA as it was when
# versions began to be recorded (#27). Append; never edit or reorder one that shipped.
MIGRATIONS: tuple[Upgrade, ...] = (schema.baseline, index_markers_by_event_id)


class SQLiteRepository(Repository):
    """A consumer's records in the store's file: its tables (`schema`, statements safe to
    repeat; `added_columns` for what a file an older version made lacks), how a state is
    written inside the store's transaction (`write`), and its reads, on `self.file`."""

    schema: ClassVar[str] = ""
    # table → column → declaration: added (ALTER TABLE ... ADD COLUMN) where a file lacks them.
    added_columns: ClassVar[Mapping[str, Mapping[str, str]]] = {}
    # Numbered migrations after the baseline (version 1, `schema` and `added_columns`), for
    # what a column added where a file lacks it cannot do (a data step, a new index...):
    # version 2 first. Append; never edit or reorder one that shipped.
    migrations: ClassVar[Sequence[Upgrade]] = ()

    def __init__(self, file: SQLiteFile) -> None:
        self.file = file

    async def open(self) -> None:
        """Open what it keeps besides the store's file (the delivery attempts' own file)."""

    async def close(self) -> None:
        """Close what it opened besides the store's file."""

    def write(self, db: sqlite3.Connection, state: Record) -> None:
        """Save `state` at its version + 1, in the store's open transaction (`write_versioned`
        does it for a row); raise ConcurrentUpdate when the stored version is not its version."""
        raise TypeError(f"{type(self).__name__} saves no state with a marker")


def write_versioned(
    db: sqlite3.Connection, table: str, key: str, row: Mapping[str, Any], version: int
) -> None:
    """Insert `row` at version 1 (`version` 0) or update the row whose `key` column matches at
    `version` to version + 1; ConcurrentUpdate when there is no such row (someone saved it)."""
    if version == 0:
        columns, placeholders = ", ".join(row), ", ".join("?" * len(row))
        changed = db.execute(
            f"INSERT INTO {table} ({columns}, version) VALUES ({placeholders}, 1)"
            f" ON CONFLICT ({key}) DO NOTHING",
            tuple(row.values()),
        ).rowcount
    else:
        changes = {k: v for k, v in row.items() if k != key}
        changed = db.execute(
            f"UPDATE {table} SET {', '.join(f'{k} = ?' for k in changes)},"
            f" version = version + 1 WHERE {key} = ? AND version = ?",
            (*changes.values(), row[key], version),
        ).rowcount
    if changed != 1:
        raise ConcurrentUpdate(
            f"{table.removesuffix('s')} '{row[key]}' was saved by someone else since version "
            f"{version}"
        )


def _upgrade(repositories: Sequence[type[SQLiteRepository]]) -> Upgrade:
    """What brings a file an older release made up to date: the columns it lacks."""

    def add_missing_columns(db: sqlite3.Connection) -> None:
        for repository in repositories:
            for table, columns in repository.added_columns.items():
                present = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
                for name, declaration in columns.items():
                    if name not in present:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")

    return add_missing_columns


def migrations_of(repositories: Mapping[str, type[SQLiteRepository]]) -> Migrations:
    """Each component's numbered migrations: the runtime's tables', then each consumer's."""
    return {
        COMPONENT: MIGRATIONS,
        **{name: (schema.baseline, *cls.migrations) for name, cls in repositories.items()},
    }


class SQLiteStore(Store):
    """The store in one SQLite file; open as many as you like on the same file, in any process.
    `repositories`: consumer name → its repository class (every installed consumer's if None)."""

    groups_share_a_commit = True

    def __init__(
        self, path: Path, repositories: Mapping[str, type[SQLiteRepository]] | None = None
    ):
        classes = load_repositories("sqlite") if repositories is None else repositories
        for name, cls in classes.items():
            if not (isinstance(cls, type) and issubclass(cls, SQLiteRepository)):
                raise TypeError(f"{name}'s sqlite repository {cls!r} is not a SQLiteRepository")
        tables = SCHEMA + "".join(cls.schema for cls in classes.values())
        self.file = SQLiteFile(
            path, tables, _upgrade(list(classes.values())), migrations_of(classes)
        )
        super().__init__({name: cls(self.file) for name, cls in classes.items()})

    @classmethod
    def from_url(
        cls, url: str, repositories: Mapping[str, type[SQLiteRepository]] | None = None
    ) -> "SQLiteStore":
        """`sqlite:///relative/to/cwd.db` or `sqlite:////absolute/path.db`."""
        return cls(path_of(url), repositories)

    async def write(self, writes: Sequence[Write]) -> list[Written]:
        return await self.file.write(lambda db: self._write_group(db, writes))

    def _write_group(self, db: sqlite3.Connection, writes: Sequence[Write]) -> list[Written]:
        """Every write in one transaction, each inside a savepoint so that it fails alone."""
        results: list[Written] = []
        for write in writes:
            if isinstance(write, Sent):  # one statement, atomic alone: no savepoint needed
                try:
                    results.append(self._apply(db, write))
                except Exception as error:
                    results.append(error)
                continue
            db.execute("SAVEPOINT one_write")
            try:
                result = self._apply(db, write)
            except Exception as error:  # ConcurrentUpdate, or a value SQLite cannot hold
                db.execute("ROLLBACK TO one_write")
                results.append(error)
            else:
                results.append(result)
            db.execute("RELEASE one_write")
        return results

    def _apply(self, db: sqlite3.Connection, write: Write) -> bool:
        if isinstance(write, Sent):
            db.execute(
                "DELETE FROM outbox WHERE consumer = ? AND event_key = ?",
                (write.marker.consumer, write.marker.event_key),
            )
            return True
        marker = write.marker
        inserted = db.execute(
            f"INSERT INTO {MARKERS} (consumer, event_key, processed_at) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (marker.consumer, marker.event_key, time_text(datetime.now(UTC))),
        ).rowcount
        if not inserted:
            return False  # this event was handled before: nothing is written
        if write.state is not None:
            self._repository_of(write.state).write(db, write.state)
        db.executemany(
            "INSERT INTO outbox (consumer, event_key, seq, event) VALUES (?, ?, ?, ?)",
            [(marker.consumer, marker.event_key, seq, e) for seq, e in enumerate(write.outbox)],
        )
        return True

    async def pending(self, marker: Marker) -> list[str]:
        rows = await self.file.read(
            "SELECT event FROM outbox WHERE consumer = ? AND event_key = ? ORDER BY seq",
            (marker.consumer, marker.event_key),
        )
        return [row["event"] for row in rows]

    async def unsent(self, consumer: str, saved_before: datetime) -> list[Marker]:
        # The marker is written in the outbox's own transaction, so its time is the outbox's.
        rows = await self.file.read(
            f"SELECT DISTINCT outbox.event_key FROM outbox JOIN {MARKERS}"
            " USING (consumer, event_key) WHERE consumer = ? AND processed_at < ?",
            (consumer, time_text(saved_before)),
        )
        return [Marker(consumer, row["event_key"]) for row in rows]

    async def is_processed(self, marker: Marker) -> bool:
        rows = await self.file.read(
            f"SELECT 1 FROM {MARKERS} WHERE consumer = ? AND event_key = ?",
            (marker.consumer, marker.event_key),
        )
        return bool(rows)

    async def open(self) -> None:
        await self.file.open()
        for repository in self._repositories.values():
            await repository.open()

    async def check_writable(self) -> None:
        now = time_text(datetime.now(UTC))
        await self.file.write(
            lambda db: db.execute(
                "INSERT OR REPLACE INTO health (id, checked_at) VALUES (1, ?)", (now,)
            )
        )

    async def close(self) -> None:
        await self.flush()
        for repository in self._repositories.values():
            await repository.close()
        await self.file.close()
