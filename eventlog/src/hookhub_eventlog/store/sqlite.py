"""The event log in the SQLite file the consumers' store uses too (`hookhub.sqlite`): its own
tables `events` and `steps`, and reads of the consumers' `markers` and `deliveries`.

Searches (`find_events`) run in a thread of their own, on a connection of their own, within
`SEARCH_BUDGET_S`: a search over a million rows must not hold the event loop that answers
`/livez`. Every query has a LIMIT and an index that serves its filter (test_event_log_search).
"""

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from hookhub import schema, topology
from hookhub.addresses import redact
from hookhub.providers import WEBHOOK_SOURCE_PREFIX
from hookhub.sqlite import READ_BUSY_TIMEOUT_S, SQLiteFile, Upgrade, path_of, time_of, time_text

from hookhub_eventlog.people import (
    Forgotten,
    Link,
    is_person_id,
    links_of,
    people,
    survivors,
)
from hookhub_eventlog.store.base import (
    COMPONENT,
    MAX_JOURNEY_ROWS,
    MAX_PERSON_EVENTS,
    SEARCH_BUDGET_S,
    Attempt,
    BadPattern,
    EventLog,
    EventQuery,
    LoggedEvent,
    PaymentState,
    Person,
    SearchTooSlow,
    Step,
    pattern_problem,
)
from hookhub_eventlog.store.consumer_tables import (
    DELIVERIES,
    MARKER_EVENT_ID,
    MARKERS,
    ORDERS,
    PAYMENT_FIELDS,
    deliveries_file,
    event_key,
)

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


def index_orders(db: sqlite3.Connection) -> None:
    """Migration 2: the order an event concerns (`LoggedEvent.order_id`), indexed. Events
    indexed before get their subject (a follow-up's order); inbound ones indexed before keep
    none until the index is rebuilt from the archive (docs/event-log.md, "Orders")."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
    if "order_id" not in columns:
        db.execute("ALTER TABLE events ADD COLUMN order_id TEXT")
    db.execute("UPDATE events SET order_id = subject WHERE order_id IS NULL")
    db.execute("CREATE INDEX IF NOT EXISTS events_by_order ON events (order_id, position)")


def index_people(db: sqlite3.Connection) -> None:
    """Migration 3: people (`hookhub_eventlog.people`). Each identifier's person (by person:
    their page), each event's identifiers (by identifier: a person's events), the links that
    made them one person (by either end, by event) and the forgotten events' tombstones. Events
    indexed before have none until the index is rebuilt from the archive."""
    for statement in PEOPLE_TABLES.split(";"):  # not executescript: it would commit
        db.execute(statement)


PEOPLE_TABLES = """
        CREATE TABLE IF NOT EXISTS identifiers (
            identifier  TEXT PRIMARY KEY,
            person_id   TEXT NOT NULL,
            first_event TEXT NOT NULL,
            first_seen  TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS identifiers_by_person ON identifiers (person_id);
        CREATE TABLE IF NOT EXISTS event_identifiers (
            identifier TEXT NOT NULL,
            position   INTEGER NOT NULL,  -- events.position
            PRIMARY KEY (identifier, position)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS event_identifiers_by_position ON event_identifiers (position);
        CREATE TABLE IF NOT EXISTS links (
            a         TEXT NOT NULL,
            b         TEXT NOT NULL,  -- a < b
            event_id  TEXT NOT NULL,
            source    TEXT NOT NULL,
            at        TEXT NOT NULL,
            undone_at TEXT,
            PRIMARY KEY (a, b)
        ) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS links_by_b ON links (b);
        CREATE INDEX IF NOT EXISTS links_by_event ON links (event_id);
        CREATE TABLE IF NOT EXISTS forgotten (
            event_id     TEXT NOT NULL,
            source       TEXT NOT NULL,
            time         TEXT NOT NULL,
            forgotten_at TEXT NOT NULL,
            PRIMARY KEY (event_id, source)
        ) WITHOUT ROWID
"""


# The event log's numbered migrations (`hookhub.schema`): 1, the baseline, is SCHEMA as it was
# when versions began to be recorded (#27). Append; never edit or reorder one that shipped.
MIGRATIONS: tuple[Upgrade, ...] = (schema.baseline, index_orders, index_people)


# How often (in SQLite virtual machine steps) a search looks at its clock: about a millisecond.
PROGRESS_STEPS = 10_000


def _event_filters(query: EventQuery) -> tuple[str, tuple]:
    """The WHERE clause (and its parameters) of an event query. A type pattern narrows by a
    GLOB of its literal head and tail (`stripe.#` → `stripe*`, `#.failed` → `*failed`, in C),
    then word by word (`topic_matches`), all in SQL so that LIMIT applies."""
    clauses, parameters = [], []
    for column in ("id", "source", "correlation_id", "subject", "causation_id", "order_id"):
        if (value := getattr(query, column)) is not None:
            clauses.append(f"{column} = ?")
            parameters.append(value)
    if query.type is not None:
        head = topology.literal_head(query.type)
        if head == query.type:
            clauses.append("type = ?")
            parameters.append(head)
        else:
            if (glob := _glob(query.type)) != "*":
                # `+type`: not on the type index, whose range SQLite would then sort whole to
                # give it newest first (a million rows for `stripe.#`); newest first by position,
                # the search stops at LIMIT, and a pattern that matches little is one scan in C
                # within the budget.
                clauses.append("+type GLOB ?")
                parameters.append(glob)
            clauses.append("topic_matches(?, type)")
            parameters.append(query.type)
    clauses_unbound, parameters_unbound = _unbound_filter(query.unbound_by)
    clauses += clauses_unbound
    parameters += parameters_unbound
    if query.since is not None:
        clauses.append("time >= ?")
        parameters.append(time_text(query.since))
    if query.until is not None:
        clauses.append("time < ?")
        parameters.append(time_text(query.until))
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(parameters)


def _unbound_filter(bindings: tuple[str, ...] | None) -> tuple[list[str], list[str]]:
    """The clauses that keep only the events no binding matches: literal keys by `NOT IN`,
    patterns word by word (`topic_matches`), before LIMIT. None: no such filter; no bindings at
    all: every event is unbound."""
    if not bindings:
        return [], []
    clauses, parameters = [], []
    literals = [key for key in bindings if topology.literal_head(key) == key]
    patterns = [key for key in bindings if key not in literals]
    if literals:
        clauses.append(f"type NOT IN ({', '.join('?' * len(literals))})")
        parameters += literals
    clauses += ["NOT topic_matches(?, type)"] * len(patterns)
    parameters += patterns
    return clauses, parameters


def _glob(pattern: str) -> str:
    """A GLOB every type the pattern matches matches too: its literal head and tail around one
    `*` (the pattern's words are letters, digits, '_' and '-': nothing GLOB reads)."""
    head = topology.literal_head(pattern)
    tail = pattern.rsplit("#", 1)[-1].rsplit("*", 1)[-1].lstrip(".")  # `#.x` matches `x`
    return f"{head}*{tail}"


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
        order_id=row["order_id"],
    )


def _tombstoned(db: sqlite3.Connection, events: Sequence[LoggedEvent]) -> set[tuple[str, str]]:
    """The (id, source) of the events in a batch that were forgotten: not indexed again."""
    ids = sorted({event.id for event in events})
    found: set[tuple[str, str]] = set()
    for start in range(0, len(ids), 500):  # within SQLite's limit on parameters
        chunk = ids[start : start + 500]
        rows = db.execute(
            f"SELECT event_id, source FROM forgotten WHERE event_id IN"
            f" ({', '.join('?' * len(chunk))})",
            chunk,
        )
        found |= {(row[0], row[1]) for row in rows}
    return found


def _link(db: sqlite3.Connection, event: LoggedEvent) -> None:
    """Record an event's identifiers and the links it makes; merge the persons they join."""
    ids = event.identifiers
    at = time_text(event.time)
    db.executemany(
        "INSERT OR IGNORE INTO event_identifiers (identifier, position) VALUES (?, ?)",
        [(one, event.position) for one in ids],
    )
    undone: set[tuple[str, str]] = set()
    for a, b in links_of(ids):
        db.execute(
            "INSERT OR IGNORE INTO links (a, b, event_id, source, at) VALUES (?, ?, ?, ?, ?)",
            (a, b, event.id, event.source, at),
        )
        row = db.execute("SELECT undone_at FROM links WHERE a = ? AND b = ?", (a, b)).fetchone()
        if row[0] is not None:
            undone.add((a, b))
    marks = ", ".join("?" * len(ids))
    rows = db.execute(
        f"SELECT identifier, person_id FROM identifiers WHERE identifier IN ({marks})", ids
    )
    known = {row[0]: row[1] for row in rows}
    now = survivors(ids, known, undone)
    db.executemany(
        "INSERT OR IGNORE INTO identifiers (identifier, person_id, first_event, first_seen)"
        " VALUES (?, ?, ?, ?)",
        [(one, now[one], event.id, at) for one in ids],
    )
    for one, before in known.items():
        if before != now[one]:  # a merge: the smaller id survives
            db.execute(
                "UPDATE identifiers SET person_id = ? WHERE person_id = ?", (now[one], before)
            )


def _split(db: sqlite3.Connection, person: str) -> set[str]:
    """After links were undone: the person's identifiers regrouped by the links left, each
    group under its own id (`people.people`); the ids they have now."""
    rows = db.execute("SELECT identifier FROM identifiers WHERE person_id = ?", (person,))
    ids = [row[0] for row in rows]
    marks = ", ".join("?" * len(ids))
    links = db.execute(
        f"SELECT a, b FROM links WHERE undone_at IS NULL AND a IN ({marks})", ids
    ).fetchall()
    now = people(ids, [(link[0], link[1]) for link in links])
    db.executemany(
        "UPDATE identifiers SET person_id = ? WHERE identifier = ?",
        [(p, one) for one, p in now.items()],
    )
    return set(now.values())


def _link_of(row: sqlite3.Row) -> Link:
    undone = row["undone_at"]
    return Link(
        row["a"],
        row["b"],
        row["event_id"],
        row["source"],
        time_of(row["at"]),
        time_of(undone) if undone else None,
    )


def _at(row: sqlite3.Row) -> str:
    return row["at"]


def _deliveries_rows(store: Path, sql: str, parameters: tuple) -> list[sqlite3.Row]:
    """Rows of the delivery attempts' own file (`deliveries_file`), read-only: none while no
    delivery process has made it."""
    path = deliveries_file(store)
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=READ_BUSY_TIMEOUT_S)
    try:
        db.row_factory = sqlite3.Row
        return db.execute(sql, parameters).fetchall()
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):
            return []
        raise
    finally:
        db.close()


class SQLiteEventLog(EventLog):
    """The event log in one SQLite file; open as many as you like on the same file."""

    def __init__(self, path: Path) -> None:
        self.file = SQLiteFile(path, SCHEMA, migrations={COMPONENT: MIGRATIONS})
        self._searcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eventlog-search")
        self._search_db: sqlite3.Connection | None = None

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
                e.order_id,
            )
            for e in events
        ]

        def write(db: sqlite3.Connection) -> None:
            gone = _tombstoned(db, events)
            db.executemany(
                "INSERT OR IGNORE INTO events (position, id, source, type, time, subject,"
                " correlation_id, causation_id, order_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [row for row in rows if (row[1], row[2]) not in gone],
            )
            for event in events:
                if event.identifiers and (event.id, event.source) not in gone:
                    _link(db, event)
            db.executemany(
                "UPDATE events SET order_id = ? WHERE id = ? AND order_id IS NULL"
                f" AND source GLOB '{WEBHOOK_SOURCE_PREFIX}*'",
                [(e.order_id, e.causation_id) for e in events if e.causation_id and e.order_id],
            )

        await self.file.write(write)

    async def indexed_up_to(self) -> int | None:
        rows = await self.file.read("SELECT max(position) AS last FROM events")
        return rows[0]["last"]

    async def last_indexed(self) -> LoggedEvent | None:
        rows = await self.file.read("SELECT * FROM events ORDER BY position DESC LIMIT 1")
        return _logged(rows[0]) if rows else None

    async def supersede(self) -> None:
        def move(db: sqlite3.Connection) -> None:
            low, high = db.execute("SELECT min(position), max(position) FROM events").fetchone()
            if high is None or high < 0:
                return
            # SQLite checks the key row by row: first above everything held, then down to end
            # at -1, so that no row lands on one not moved yet. One transaction.
            above = high - low + 1
            for table in ("events", "event_identifiers"):
                db.execute(f"UPDATE {table} SET position = position + ?", (above,))
                db.execute(f"UPDATE {table} SET position = position - ?", (above + high + 1,))

        await self.file.write(move)

    async def find_events(self, query: EventQuery) -> list[LoggedEvent]:
        if query.type is not None and (problem := pattern_problem(query.type)):
            raise BadPattern(problem)
        where, parameters = _event_filters(query)
        sql = f"SELECT * FROM events {where} ORDER BY position DESC LIMIT ?"
        rows = await self.search(sql, (*parameters, query.limit))
        return [_logged(row) for row in rows]

    async def search(self, sql: str, parameters: tuple = ()) -> list[sqlite3.Row]:
        """A read in the search thread, stopped with `SearchTooSlow` past `SEARCH_BUDGET_S`."""
        if self._search_db is None:
            await self.file.write(lambda _: None)  # the writer creates the file and schema
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._searcher, self._search, sql, parameters)

    def _search(self, sql: str, parameters: tuple) -> list[sqlite3.Row]:
        if self._search_db is None:
            db = sqlite3.connect(self.file.path, timeout=1, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA query_only = ON")
            db.create_function("topic_matches", 2, topology.binding_matches, deterministic=True)
            self._search_db = db
        deadline = time.monotonic() + SEARCH_BUDGET_S
        self._search_db.set_progress_handler(lambda: time.monotonic() > deadline, PROGRESS_STEPS)
        try:
            return self._search_db.execute(sql, parameters).fetchall()
        except sqlite3.OperationalError as error:
            if str(error) == "interrupted":
                raise SearchTooSlow from None
            raise

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
            "SELECT * FROM steps WHERE event_id = ? ORDER BY id LIMIT ?",
            (event_id, MAX_JOURNEY_ROWS),
        )
        return [
            Step(r["event_id"], r["consumer"], r["what"], r["detail"], time_of(r["at"]))
            for r in rows
        ]

    async def processed_by(self, source: str, event_id: str) -> list[tuple[str, datetime]]:
        rows = await self._theirs(
            f"SELECT consumer, processed_at FROM {MARKERS}"
            " WHERE event_key = ? ORDER BY processed_at LIMIT ?",
            (event_key(source, event_id), MAX_JOURNEY_ROWS),
        )
        return [(r["consumer"], time_of(r["processed_at"])) for r in rows]

    async def marked_sources(self, event_id: str) -> list[str]:
        # On the store's markers_by_event_id (its migration 2).
        rows = await self._theirs(
            f"SELECT DISTINCT substr(event_key, 1, instr(event_key, '#') - 1) AS source"
            f" FROM {MARKERS} WHERE {MARKER_EVENT_ID} = ? LIMIT ?",
            (event_id, MAX_JOURNEY_ROWS),
        )
        return [row["source"] for row in rows]

    async def attempts(self, event_id: str, source: str | None = None) -> list[Attempt]:
        select = (
            f"SELECT url, delivered, at, status_code, error FROM {DELIVERIES} WHERE event_id = ?"
        )
        order = " ORDER BY at, id LIMIT ?"
        if source is None:
            sql, parameters = select + order, (event_id, MAX_JOURNEY_ROWS)
        else:
            sql = select + " AND (source = ? OR source IS NULL)" + order
            parameters = (event_id, source, MAX_JOURNEY_ROWS)
        try:
            # An older release's attempts, in the store's file.
            rows = await self._theirs(sql, parameters)
        except sqlite3.OperationalError as error:
            # A file no consumer of this release has opened yet: no source column, so no row
            # knows its source.
            if "no such column" not in str(error):
                raise
            rows = await self._theirs(select + order, (event_id, MAX_JOURNEY_ROWS))
        # This release's, in their own file; an older release's first where times tie.
        rows = sorted([*rows, *_deliveries_rows(self.file.path, sql, parameters)], key=_at)
        rows = rows[:MAX_JOURNEY_ROWS]
        return [
            Attempt(
                redact(r["url"]),
                bool(r["delivered"]),
                time_of(r["at"]),
                r["status_code"],
                r["error"],
            )
            for r in rows
        ]

    async def payment_state(self, order_id: str) -> PaymentState | None:
        rows = await self._theirs(
            f"SELECT {', '.join(PAYMENT_FIELDS)} FROM {ORDERS} WHERE order_id = ?", (order_id,)
        )
        if not rows:
            return None
        fields = dict(rows[0])
        return PaymentState(
            order_id=order_id,
            **{
                **fields,
                "refunded_amount": fields["refunded_amount"] or 0,
                "updated_at": time_of(fields["updated_at"]),
            },
        )

    async def _theirs(self, sql: str, parameters: tuple) -> list[sqlite3.Row]:
        """A read of the consumers' tables: none yet (no consumer ever opened the file) is no
        rows."""
        try:
            return await self.file.read(sql, parameters)
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return []
            raise

    async def person_of(self, key: str) -> str | None:
        if is_person_id(key):
            sql = "SELECT person_id FROM identifiers WHERE person_id = ? LIMIT 1"
        else:
            sql = "SELECT person_id FROM identifiers WHERE identifier = ?"
        rows = await self.file.read(sql, (key,))
        return rows[0]["person_id"] if rows else None

    async def person(self, person_id: str, limit: int = MAX_PERSON_EVENTS) -> Person | None:
        rows = await self.file.read(
            "SELECT identifier FROM identifiers WHERE person_id = ? ORDER BY identifier",
            (person_id,),
        )
        if not rows:
            return None
        identifiers = [row["identifier"] for row in rows]
        marks = ", ".join("?" * len(identifiers))
        events = await self.file.read(
            f"SELECT * FROM events WHERE position IN (SELECT DISTINCT position FROM"
            f" event_identifiers WHERE identifier IN ({marks})) ORDER BY position DESC LIMIT ?",
            (*identifiers, limit),
        )
        links = await self.file.read(
            f"SELECT * FROM links WHERE a IN ({marks}) UNION"
            f" SELECT * FROM links WHERE b IN ({marks}) ORDER BY at, a, b",
            (*identifiers, *identifiers),
        )
        return Person(
            person_id, identifiers, [_link_of(r) for r in links], [_logged(r) for r in events]
        )

    async def people_at(self, positions: Sequence[int]) -> dict[int, str]:
        if not positions:
            return {}
        marks = ", ".join("?" * len(positions))
        rows = await self.file.read(
            "SELECT e.position, i.person_id FROM event_identifiers e JOIN identifiers i"
            f" ON i.identifier = e.identifier WHERE e.position IN ({marks})",
            tuple(positions),
        )
        return {row["position"]: row["person_id"] for row in rows}

    async def unlink(self, *, identifier: str = "", event_id: str = "") -> list[str]:
        def write(db: sqlite3.Connection) -> list[str]:
            if identifier:
                where, key = "(a = ? OR b = ?)", (identifier, identifier)
            else:
                where, key = "event_id = ?", (event_id,)
            ends = db.execute(f"SELECT a, b FROM links WHERE {where} AND undone_at IS NULL", key)
            touched = {one for row in ends for one in row}
            db.execute(
                f"UPDATE links SET undone_at = ? WHERE {where} AND undone_at IS NULL",
                (time_text(datetime.now(UTC)), *key),
            )
            persons = {
                row[0]
                for one in touched
                for row in db.execute(
                    "SELECT person_id FROM identifiers WHERE identifier = ?", (one,)
                )
            }
            return sorted({p for person in persons for p in _split(db, person)})

        return await self.file.write(write)

    async def forget(self, person_id: str) -> list[Forgotten]:
        now = datetime.now(UTC)

        def write(db: sqlite3.Connection) -> list[Forgotten]:
            identifiers = [
                row[0]
                for row in db.execute(
                    "SELECT identifier FROM identifiers WHERE person_id = ?", (person_id,)
                )
            ]
            marks = ", ".join("?" * len(identifiers))
            positions = [
                row[0]
                for row in db.execute(
                    "SELECT DISTINCT position FROM event_identifiers"
                    f" WHERE identifier IN ({marks})",
                    identifiers,
                )
            ]
            spots = ", ".join("?" * len(positions))
            events = db.execute(
                f"SELECT id, source, time FROM events WHERE position IN ({spots})", positions
            ).fetchall()
            gone = [Forgotten(id, source, time_of(at), now) for id, source, at in events]
            db.executemany(
                "INSERT OR IGNORE INTO forgotten (event_id, source, time, forgotten_at)"
                " VALUES (?, ?, ?, ?)",
                [(f.event_id, f.source, time_text(f.time), time_text(now)) for f in gone],
            )
            db.execute(f"DELETE FROM events WHERE position IN ({spots})", positions)
            db.execute(f"DELETE FROM event_identifiers WHERE position IN ({spots})", positions)
            db.execute(f"DELETE FROM event_identifiers WHERE identifier IN ({marks})", identifiers)
            db.execute(f"DELETE FROM links WHERE a IN ({marks})", identifiers)
            db.execute(f"DELETE FROM links WHERE b IN ({marks})", identifiers)
            db.execute("DELETE FROM identifiers WHERE person_id = ?", (person_id,))
            return gone

        return await self.file.write(write)

    async def forgotten(self, event_id: str) -> list[Forgotten]:
        rows = await self.file.read(
            "SELECT * FROM forgotten WHERE event_id = ? ORDER BY source", (event_id,)
        )
        return [
            Forgotten(r["event_id"], r["source"], time_of(r["time"]), time_of(r["forgotten_at"]))
            for r in rows
        ]

    async def open(self) -> None:
        await self.file.open()

    async def close(self) -> None:
        def close() -> None:
            if self._search_db is not None:
                self._search_db.close()
                self._search_db = None

        await asyncio.get_running_loop().run_in_executor(self._searcher, close)
        self._searcher.shutdown(wait=True)
        await self.file.close()
