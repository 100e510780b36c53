"""The event log benchmark: finding an event in a big index, and replaying from the archive.

Two cases, one after the other:
  lookup   1,000,000 events indexed in a SQLite store (the default store), then 2,000 lookups by
           id and 200 by type pattern and time window, each through `EventLog.find_events`, as
           `hookhub events list` does: p50/p99/max per kind. Goal: by id p99 < 50 ms.
  replay   10,000 events in the archive stream of a vhost of its own, replayed by query to a
           consumer's work queue (no consumer runs, so nothing else costs): copies/s, each
           confirmed by the broker, as `hookhub events replay` does.
"""

import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
from hookhub import topology
from hookhub.events import EXCHANGE, Event
from hookhub_eventlog.replay import replay
from hookhub_eventlog.store import EventQuery, LoggedEvent
from hookhub_eventlog.store.sqlite import SQLiteEventLog
from report import console
from rich.table import Table
from support import Options, bench_vhost, latency_ms

INDEXED = 1_000_000
INDEX_BATCH = 10_000
LOOKUPS_BY_ID = 2_000
LOOKUPS_BY_PATTERN = 200
ARCHIVED = 10_000
TYPES = ("stripe.payment_intent.succeeded", "hotmart.PURCHASE_APPROVED", "order.created", "ci.b")
START = datetime(2026, 11, 1, tzinfo=UTC)


def _event(position: int) -> LoggedEvent:
    return LoggedEvent(
        position=position,
        id=f"evt-{position:08d}",
        source="/webhooks/stripe",
        type=TYPES[position % len(TYPES)],
        time=START + timedelta(seconds=position),
        subject=f"ord-{position // 4}",
        correlation_id=f"corr-{position}",
    )


async def lookup_case() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hookhub-bench-eventlog-") as tmp:
        store = SQLiteEventLog(Path(tmp) / "index.db")
        try:
            started = time.perf_counter()
            for first in range(0, INDEXED, INDEX_BATCH):
                await store.index([_event(p) for p in range(first, first + INDEX_BATCH)])
            indexing_s = time.perf_counter() - started
            by_id, by_pattern = [], []
            for _ in range(LOOKUPS_BY_ID):
                wanted = random.randrange(INDEXED)
                t = time.perf_counter()
                found = await store.find_events(EventQuery(id=f"evt-{wanted:08d}"))
                by_id.append(time.perf_counter() - t)
                assert [e.position for e in found] == [wanted]
            for _ in range(LOOKUPS_BY_PATTERN):
                since = START + timedelta(seconds=random.randrange(INDEXED - 3_600))
                query = EventQuery(type="stripe.#", since=since, until=since + timedelta(hours=1))
                t = time.perf_counter()
                await store.find_events(query)
                by_pattern.append(time.perf_counter() - t)
        finally:
            await store.close()
    return {
        "indexed": INDEXED,
        "indexed_per_s": INDEXED / indexing_s,
        "by_id": latency_ms(by_id),
        "by_type_pattern_and_hour": latency_ms(by_pattern),
    }


async def replay_case(admin_url: str) -> dict[str, Any]:
    with bench_vhost(admin_url) as amqp_url:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare(channel, (5.0,), 20, topology.Archive())
            exchange = await channel.get_exchange(EXCHANGE)
            events = [
                Event(id=f"r-{n}", source="/bench", type="ci.replayed", data=b"x" * 1024)
                for n in range(ARCHIVED)
            ]
            await asyncio.gather(*(exchange.publish(e.to_message(), e.routing_key) for e in events))
            selected = [
                LoggedEvent(
                    position=n, id=f"r-{n}", source="/bench", type="ci.replayed", time=START
                )
                for n in range(ARCHIVED)
            ]
            started = time.perf_counter()
            result = await replay(connection, selected, to="notifications")
            seconds = time.perf_counter() - started
    return {
        "events": ARCHIVED,
        "published": result.published,
        "copies_per_s": result.published / seconds,
    }


async def run(options: Options) -> dict[str, Any]:
    console.print(f"lookup: indexing {INDEXED:,} events in SQLite ...")
    lookup = await lookup_case()
    console.print(f"replay: {ARCHIVED:,} archived events ...")
    replay = await replay_case(options.admin_url)
    table = Table(title=f"Event log: {INDEXED:,} indexed (SQLite), {ARCHIVED:,} replayed")
    for column in ("case", "p50 ms", "p99 ms", "max ms", "per s"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for name in ("by_id", "by_type_pattern_and_hour"):
        figures = lookup[name]
        table.add_row(
            f"find {name.replace('_', ' ')}",
            f"{figures['p50_ms']:.2f}",
            f"{figures['p99_ms']:.2f}",
            f"{figures['max_ms']:.2f}",
            "",
        )
    table.add_row("index (write)", "", "", "", f"{lookup['indexed_per_s']:,.0f}")
    table.add_row("replay (confirmed copies)", "", "", "", f"{replay['copies_per_s']:,.0f}")
    console.print(table)
    goal = lookup["by_id"]["p99_ms"] < 50
    console.print(f"  goal lookup by id p99 < 50 ms at 1M: {'met' if goal else 'not met'}")
    return {"section": "eventlog", "lookup": lookup, "replay": replay}
