"""An order's page over a big event log, through the operator service, as a read-only operator's
browser (the console's HTML page) and script (`/api/orders/<id>`) ask for it.

    .venv/bin/python bench/run.py --only order_page               # 1,000,000 indexed events
    .venv/bin/python bench/order_page.py --indexed 200000         # alone, fewer events

`hookhub operator` (uvicorn, 1 worker, as shipped) over a SQLite file holding `--indexed` events
as the indexer writes them (`order_id` included) and the payments consumer's `orders` table, one
row an order. Each order has `EVENTS_PER_ORDER` events (order.created, the provider's payment,
the follow-ups), spread over the archive as concurrent orders' are: its events are
`ORDERS_AT_ONCE` positions apart. Sequential requests for an order at random, each timed from send
to the whole answer. Goal (issue 24): p99 under 50 ms.
"""

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hookhub_consumers.payments.store_sqlite import SQLiteOrders
from hookhub_eventlog.store import LoggedEvent
from operator_harness import fill_event_log, report_pages, serving_operator
from report import console
from support import Options, latency_ms

INDEXED = 1_000_000
SAMPLES = 500
ORDERS_AT_ONCE = 1_000
# One order's life, oldest first: (type, source).
LIFE = (
    ("order.created", "/events/storefront"),
    ("stripe.payment_intent.succeeded", "/webhooks/stripe"),
    ("payment.approved", "/consumers/payments"),
    ("notification.delivered", "/consumers/notifications"),
    ("production.queued", "/consumers/production"),
    ("production.finished", "/events/workshop"),
    ("order.ready", "/consumers/production"),
    ("stripe.charge.refunded", "/webhooks/stripe"),
)
EVENTS_PER_ORDER = len(LIFE)
START = datetime(2026, 11, 1, tzinfo=UTC)
SECONDS_APART = 0.5
GOAL_P99_MS = 50


def _event(position: int) -> LoggedEvent:
    window, offset = divmod(position, ORDERS_AT_ONCE * EVENTS_PER_ORDER)
    step, nth = divmod(offset, ORDERS_AT_ONCE)
    order = f"ord-{window * ORDERS_AT_ONCE + nth:07d}"
    type, source = LIFE[step]
    follow_up = source.startswith("/consumers/")
    return LoggedEvent(
        position=position,
        id=f"evt-{position:08d}",
        source=source,
        type=type,
        time=START + timedelta(seconds=position * SECONDS_APART),
        subject=order if follow_up else None,
        correlation_id=f"corr-{order}",
        order_id=order,
    )


def _orders(path: Path, count: int) -> None:
    """The payments consumer's table, as its store makes it, one approved order a row."""
    with sqlite3.connect(path) as db:
        db.executescript(SQLiteOrders.schema)
        db.executemany(
            "INSERT INTO orders (order_id, status, amount, currency, items, provider,"
            " payment_id, version, updated_at, paid_amount, paid_currency, refunded_amount)"
            " VALUES (?, 'approved', 4990, 'BRL', '[]', 'stripe', ?, 1, ?, 4990, 'BRL', 0)",
            ((f"ord-{n:07d}", f"pi_{n}", "2026-11-01T00:00:00.000Z") for n in range(count)),
        )


async def _pages(client: httpx.AsyncClient, orders: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name, path in (("api", "/api/orders/{}"), ("console", "/orders/{}")):
        samples = []
        for _ in range(SAMPLES):
            order = f"ord-{random.randrange(orders):07d}"
            started = time.perf_counter()
            response = await client.get(path.format(order))
            samples.append(time.perf_counter() - started)
            assert response.status_code == 200, (name, response.status_code, response.text)
            if name == "api":
                assert len(response.json()["events"]) == EVENTS_PER_ORDER
        figures[name] = latency_ms(samples)
    return figures


async def measure(indexed: int, server_python: str = sys.executable) -> dict[str, Any]:
    """The figures, with the operator service run by `server_python`."""
    orders = indexed // (ORDERS_AT_ONCE * EVENTS_PER_ORDER) * ORDERS_AT_ONCE
    indexed = orders * EVENTS_PER_ORDER  # whole orders only
    with tempfile.TemporaryDirectory(prefix="hookhub-bench-orders-") as tmp:
        path = Path(tmp) / "hookhub.db"
        console.print(f"order page: indexing {indexed:,} events ({orders:,} orders) in SQLite ...")
        indexing_s = await fill_event_log(path, indexed, _event)
        _orders(path, indexed // EVENTS_PER_ORDER)
        async with serving_operator(path, server_python) as client:
            await client.get("/api/orders/ord-0000000")  # warm
            pages = await _pages(client, orders)
    return {"indexed": indexed, "orders": orders, "indexing_s": indexing_s, **pages}


def report(figures: dict[str, Any]) -> None:
    title = (
        f"An order's page over {figures['indexed']:,} indexed events, "
        f"{figures['orders']:,} orders (SQLite, HTTP)"
    )
    report_pages(title, figures, ("api", "console"), GOAL_P99_MS)


async def run(options: Options) -> dict[str, Any]:
    figures = await measure(INDEXED)
    report(figures)
    return {"section": "order_page", **figures}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--indexed", type=int, default=INDEXED)
    parser.add_argument("--server-python", default=sys.executable)
    arguments = parser.parse_args()
    report(asyncio.run(measure(arguments.indexed, arguments.server_python)))
