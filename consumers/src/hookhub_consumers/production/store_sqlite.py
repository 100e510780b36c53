"""The production consumer's tickets in the SQLite store: the `tickets` table."""

import sqlite3

from hookhub.sqlite import time_of, time_text

from hookhub_consumers.production.records import Ticket
from hookhub_consumers.store.sqlite import SQLiteRepository, write_versioned


class SQLiteTickets(SQLiteRepository):
    record = Ticket
    schema = """
    CREATE TABLE IF NOT EXISTS tickets (
        order_id   TEXT PRIMARY KEY,
        status     TEXT NOT NULL,
        version    INTEGER NOT NULL,
        updated_at TEXT NOT NULL
    );
    """

    def write(self, db: sqlite3.Connection, state: Ticket) -> None:
        row = {
            "order_id": state.order_id,
            "status": state.status,
            "updated_at": time_text(state.updated_at),
        }
        write_versioned(db, "tickets", "order_id", row, state.version)

    async def get(self, order_id: str) -> Ticket | None:
        rows = await self.file.read("SELECT * FROM tickets WHERE order_id = ?", (order_id,))
        if not rows:
            return None
        row = rows[0]
        return Ticket(row["order_id"], row["status"], row["version"], time_of(row["updated_at"]))
