"""The delivery attempts an endpoint got, as the notifications consumer records them (its
`deliveries` table or collection, whose shape `hookhub_eventlog.store.consumer_tables` names):
read here, never written, for stats and resends. An endpoint's attempts are those recorded with
its name (two endpoints may share a URL), and those an older release recorded without a name to
its URL (kept with any password redacted). SQLite: both files, `consumer_tables.deliveries_file`."""

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from hookhub.addresses import redact
from hookhub.settings import Settings
from hookhub.sqlite import path_of, time_of, time_text
from hookhub_eventlog.store.consumer_tables import DELIVERIES, deliveries_file
from hookhub_eventlog.store.mongo import DEFAULT_DATABASE, connect

MAX_ROWS = 100_000  # the most attempts one read looks at: stats over a busy day stay bounded
LOOKUP_MS = 5000


@dataclass(frozen=True, slots=True)
class Attempt:
    event_id: str
    source: str | None
    delivered: bool
    status_code: int | None
    error: str | None
    at: datetime
    latency_ms: float | None


def _sqlite(store: Path, name: str, url: str, since: datetime) -> list[Attempt]:
    """From the store's file (an older release's attempts) and the attempts' own file."""
    both = [
        *_sqlite_file(store, name, url, since),
        *_sqlite_file(deliveries_file(store), name, url, since),
    ]
    return sorted(both, key=lambda a: a.at)[:MAX_ROWS]


def _sqlite_file(path: Path, name: str, url: str, since: datetime) -> list[Attempt]:
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5)
    try:
        db.row_factory = sqlite3.Row
        columns = {row[1] for row in db.execute(f"PRAGMA table_info({DELIVERIES})")}
        if not columns:
            return []
        latency = "latency_ms" if "latency_ms" in columns else "NULL AS latency_ms"
        ours, parameters = "url = ?", (url,)
        if "endpoint" in columns:
            ours = "(endpoint = ? OR (endpoint IS NULL AND url = ?))"
            parameters = (name, url)
        rows = db.execute(
            f"SELECT event_id, source, delivered, status_code, error, at, {latency}"
            f" FROM {DELIVERIES} WHERE {ours} AND at >= ? ORDER BY at, id LIMIT ?",
            (*parameters, time_text(since), MAX_ROWS),
        ).fetchall()
    finally:
        db.close()
    return [
        Attempt(
            r["event_id"],
            r["source"],
            bool(r["delivered"]),
            r["status_code"],
            r["error"],
            time_of(r["at"]),
            r["latency_ms"],
        )
        for r in rows
    ]


async def _mongo(settings: Settings, name: str, url: str, since: datetime) -> list[Attempt]:
    client = connect(settings.store_url, settings)
    try:
        db = client.get_default_database(DEFAULT_DATABASE)
        ours = {"$or": [{"endpoint": name}, {"endpoint": None, "url": url}]}
        cursor = db[DELIVERIES].find({**ours, "at": {"$gte": since}}, max_time_ms=LOOKUP_MS)
        documents = await cursor.sort([("at", 1)]).to_list(MAX_ROWS)
    finally:
        await client.close()
    return [
        Attempt(
            d["event_id"],
            d.get("source"),
            bool(d.get("delivered")),
            d.get("status_code"),
            d.get("error"),
            d["at"],
            d.get("latency_ms"),
        )
        for d in documents
    ]


async def attempts_to(
    settings: Settings, name: str, endpoint_url: str, since: datetime
) -> list[Attempt]:
    """Every attempt to the endpoint `name` (at `endpoint_url`) since `since`, oldest first."""
    url = redact(endpoint_url)
    if settings.store_url.startswith("sqlite:"):
        return _sqlite(path_of(settings.store_url), name, url, since)
    return await _mongo(settings, name, url, since)
