"""The loyalty consumer's accounts in the SQLite store: the `loyalty_accounts` table."""

import sqlite3

from hookhub.sqlite import time_of, time_text
from hookhub_consumers.store.sqlite import SQLiteRepository, write_versioned

from tests.support.loyalty.records import Account


class SQLiteAccounts(SQLiteRepository):
    record = Account
    schema = """
    CREATE TABLE IF NOT EXISTS loyalty_accounts (
        customer_id TEXT PRIMARY KEY,
        points      INTEGER NOT NULL,
        version     INTEGER NOT NULL,
        updated_at  TEXT NOT NULL
    );
    """

    def write(self, db: sqlite3.Connection, state: Account) -> None:
        row = {
            "customer_id": state.customer_id,
            "points": state.points,
            "updated_at": time_text(state.updated_at),
        }
        write_versioned(db, "loyalty_accounts", "customer_id", row, state.version)

    async def get(self, customer_id: str) -> Account | None:
        rows = await self.file.read(
            "SELECT * FROM loyalty_accounts WHERE customer_id = ?", (customer_id,)
        )
        if not rows:
            return None
        return Account(**{**dict(rows[0]), "updated_at": time_of(rows[0]["updated_at"])})
