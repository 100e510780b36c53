"""The payments consumer's orders in the SQLite store: the `orders` table, one row an order."""

import json
import sqlite3
from typing import Any

from hookhub.sqlite import time_of, time_text

from hookhub_consumers.payments.records import Order
from hookhub_consumers.store.sqlite import SQLiteRepository, write_versioned


def _json_or_null(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _order(row: sqlite3.Row) -> Order:
    customer = None if row["customer"] is None else json.loads(row["customer"])
    parsed = {"customer": customer, "items": json.loads(row["items"])}
    return Order(**{**dict(row), **parsed, "updated_at": time_of(row["updated_at"])})


class SQLiteOrders(SQLiteRepository):
    record = Order
    schema = """
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
    """
    # Columns added after the first release: a file it made gets them when it is opened.
    added_columns = {
        "orders": {
            "paid_amount": "INTEGER",
            "paid_currency": "TEXT",
            "refunded_amount": "INTEGER NOT NULL DEFAULT 0",
        },
    }

    def write(self, db: sqlite3.Connection, state: Order) -> None:
        row = {
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
        write_versioned(db, "orders", "order_id", row, state.version)

    async def get(self, order_id: str) -> Order | None:
        rows = await self.file.read("SELECT * FROM orders WHERE order_id = ?", (order_id,))
        return _order(rows[0]) if rows else None

    async def by_payment(self, provider: str, payment_id: str) -> Order | None:
        rows = await self.file.read(
            "SELECT * FROM orders WHERE provider = ? AND payment_id = ? LIMIT 1",
            (provider, payment_id),
        )
        return _order(rows[0]) if rows else None
