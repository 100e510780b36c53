"""The registry in the SQLite file the consumers' store uses: tables `endpoints` (one row an
endpoint, its fields as one JSON document) and `endpoint_audit` (one row a change)."""

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from hookhub.sqlite import SQLiteFile, path_of, time_of, time_text

from hookhub_endpoints.codec import from_document, to_document
from hookhub_endpoints.model import Endpoint, EndpointError, UnknownEndpoint
from hookhub_endpoints.registry import AuditEntry

ENDPOINTS, AUDIT = "endpoints", "endpoint_audit"
TABLES = f"""
CREATE TABLE IF NOT EXISTS {ENDPOINTS} (
    name     TEXT PRIMARY KEY,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {AUDIT} (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,  -- the registry's change counter
    at       TEXT NOT NULL,
    actor    TEXT NOT NULL,
    action   TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    before   TEXT,
    after    TEXT
);
CREATE INDEX IF NOT EXISTS endpoint_audit_by_endpoint ON {AUDIT} (endpoint, id);
"""


def _load(db: sqlite3.Connection, name: str) -> Endpoint:
    row = db.execute(f"SELECT document FROM {ENDPOINTS} WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise UnknownEndpoint(name)
    return from_document(json.loads(row[0]))


def _audit(
    db: sqlite3.Connection,
    actor: str,
    action: str,
    name: str,
    before: Endpoint | None,
    after: Endpoint | None,
) -> None:
    db.execute(
        f"INSERT INTO {AUDIT} (at, actor, action, endpoint, before, after)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (
            time_text(datetime.now(UTC)),
            actor,
            action,
            name,
            json.dumps(before.shown()) if before else None,
            json.dumps(after.shown()) if after else None,
        ),
    )


def _entry(row: sqlite3.Row) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=time_of(row["at"]),
        actor=row["actor"],
        action=row["action"],
        endpoint=row["endpoint"],
        before=json.loads(row["before"]) if row["before"] else None,
        after=json.loads(row["after"]) if row["after"] else None,
    )


class SQLiteRegistry:
    def __init__(self, file: SQLiteFile) -> None:
        self.file = file

    @classmethod
    def from_url(cls, url: str) -> "SQLiteRegistry":
        return cls(SQLiteFile(path_of(url), TABLES))

    async def open(self) -> None:
        await self.file.open()

    async def close(self) -> None:
        await self.file.close()

    async def endpoints(self) -> list[Endpoint]:
        rows = await self.file.read(f"SELECT document FROM {ENDPOINTS} ORDER BY name")
        return [from_document(json.loads(row[0])) for row in rows]

    async def get(self, name: str) -> Endpoint:
        rows = await self.file.read(f"SELECT document FROM {ENDPOINTS} WHERE name = ?", (name,))
        if not rows:
            raise UnknownEndpoint(name)
        return from_document(json.loads(rows[0][0]))

    async def add(self, endpoint: Endpoint, actor: str) -> Endpoint:
        def add(db: sqlite3.Connection) -> Endpoint:
            try:
                db.execute(
                    f"INSERT INTO {ENDPOINTS} (name, document) VALUES (?, ?)",
                    (endpoint.name, json.dumps(to_document(endpoint))),
                )
            except sqlite3.IntegrityError:
                raise EndpointError(
                    f"an endpoint is already named '{endpoint.name}': pick another name, or"
                    " change that one"
                ) from None
            _audit(db, actor, "add", endpoint.name, None, endpoint)
            return endpoint

        return await self.file.write(add)

    async def change(
        self, name: str, actor: str, action: str, how: Callable[[Endpoint], Endpoint]
    ) -> Endpoint:
        def change(db: sqlite3.Connection) -> Endpoint:
            before = _load(db, name)
            after = how(before)
            if to_document(after) | {"updated_at": None} == to_document(before) | {
                "updated_at": None
            }:
                return before
            db.execute(
                f"UPDATE {ENDPOINTS} SET document = ? WHERE name = ?",
                (json.dumps(to_document(after)), name),
            )
            _audit(db, actor, action, name, before, after)
            return after

        return await self.file.write(change)

    async def remove(self, name: str, actor: str) -> Endpoint:
        def remove(db: sqlite3.Connection) -> Endpoint:
            before = _load(db, name)
            db.execute(f"DELETE FROM {ENDPOINTS} WHERE name = ?", (name,))
            _audit(db, actor, "remove", name, before, None)
            return before

        return await self.file.write(remove)

    async def note(self, name: str, actor: str, action: str) -> None:
        def note(db: sqlite3.Connection) -> None:
            endpoint = _load(db, name)
            _audit(db, actor, action, name, endpoint, endpoint)

        await self.file.write(note)

    async def audit(self, name: str | None = None, limit: int = 100) -> list[AuditEntry]:
        where, parameters = ("WHERE endpoint = ?", (name,)) if name else ("", ())
        rows = await self.file.read(
            f"SELECT * FROM {AUDIT} {where} ORDER BY id DESC LIMIT ?", (*parameters, limit)
        )
        return [_entry(row) for row in rows]

    async def version(self) -> int:
        rows = await self.file.read(f"SELECT coalesce(max(id), 0) FROM {AUDIT}")
        return rows[0][0]
