"""The deadlines benchmark: what pending deadlines cost the broker, per million.

N deadlines (`--deadlines`, 200,000 by default to keep it short) are set as the payments
consumer's outbox sets them (`Event.to_message()` with the delay as TTL: headers, the order id as
body) into one duration's delay queue, `hookhub.payments.deadline.order_payment.86400s`, of a
vhost of its own on the local broker, with publisher confirms. Before and after, it reads from
the broker (`rabbitmqctl`, `rabbitmq-diagnostics`; the management API is not needed):
  queue memory   the queue's process (`list_queues memory`);
  node memory    the node's `memory_breakdown`: quorum_ets (the Raft log's in-memory tables,
                 which hold every entry until the write-ahead log is rolled over into segments),
                 binary, quorum_queue_procs, and the total;
  disk           the queue's own Raft directory (segments) and the node's write-ahead log.
Each delta is divided by N and multiplied by a million: an extrapolation, printed as such. The
node is shared with other runs, so the node-wide figures (memory_breakdown, the WAL) carry their
noise; the queue's own are its alone. The vhost is deleted afterwards, deadlines and all.
"""

import asyncio
import json
import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pamqp.header
from hookhub import specs, topology
from hookhub.events import Event
from report import console
from rich.table import Table
from support import RABBITMQCTL_TIMEOUT_S, BenchError, Options, bench_vhost, require_tool

DEFAULT_DEADLINES = 200_000
DURATION_S = 86_400.0  # the payment timeout's default: none expires while measured
DEADLINE_TYPE = "deadline.order_payment"
IN_FLIGHT = 2_000  # publishes awaiting their confirm at once
SETTLE_S = 5.0  # for the broker's memory figures to catch up after the last confirm
MILLION = 1_000_000
NODE_MEMORY = ("quorum_ets", "binary", "quorum_queue_procs", "total")


def _ctl(tool: str, *args: str) -> str:
    path = require_tool(tool, "install RabbitMQ (apt-get install rabbitmq-server)")
    result = subprocess.run(
        [path, "-q", *args], capture_output=True, text=True, timeout=RABBITMQCTL_TIMEOUT_S
    )
    if result.returncode != 0:
        raise BenchError(f"{tool} {args[0]} failed: {result.stderr.strip()}")
    return result.stdout


def _queue(vhost: str, queue: str) -> dict[str, int]:
    columns = ("name", "messages", "memory", "--formatter", "json")
    rows = json.loads(_ctl("rabbitmqctl", "list_queues", "-p", vhost, *columns))
    [row] = [r for r in rows if r["name"] == queue]
    return {"messages": int(row["messages"]), "memory": int(row["memory"])}


def _node_memory() -> dict[str, int]:
    breakdown = json.loads(
        _ctl("rabbitmq-diagnostics", "memory_breakdown", "--unit", "bytes", "--formatter", "json")
    )
    figures = {key: int(value["bytes"]) for key, value in breakdown.items() if key != "total"}
    total = breakdown.get("total", {})
    rss = total.get("rss", sum(figures.values())) if isinstance(total, dict) else total
    figures["total"] = int(rss)
    return figures


def _raft_dirs(vhost: str, queue: str) -> tuple[Path, Path]:
    """The queue's own Raft directory and the node's Raft data directory (with its WAL)."""
    found = _ctl(
        "rabbitmqctl",
        "eval",
        f'{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"{vhost}">>, queue, <<"{queue}">>)),'
        f"{{Name, _}} = amqqueue:get_pid(Q),"
        f'io:format("~s~n~s~n", [ra_directory:uid_of(quorum_queues, Name), ra_env:data_dir()]).',
    ).split()
    uid, data_dir = found[0], Path(found[1])
    return data_dir / uid, data_dir


def _bytes_under(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def _wal_bytes(data_dir: Path) -> int:
    return sum(f.stat().st_size for f in data_dir.glob("*.wal"))


def _measure(vhost: str, queue: str, own_dir: Path, data_dir: Path) -> dict[str, Any]:
    return {
        "queue": _queue(vhost, queue),
        "node_memory": _node_memory(),
        "queue_dir_bytes": _bytes_under(own_dir),
        "wal_bytes": _wal_bytes(data_dir),
    }


def _deadline(n: int) -> aio_pika.Message:
    return _event(n).to_message()


def _wire_bytes(event: Event) -> int:
    """One deadline's body and properties (CloudEvents headers, TTL...) as published."""
    return len(event.data) + len(pamqp.header.ContentHeader(0, 0, event.to_properties()).marshal())


def _event(n: int) -> Event:
    order_id = f"bench-{n:08d}"
    return Event(
        id=f"deadline-{n:08d}-{os.urandom(8).hex()}",
        source="/consumers/payments",
        type=DEADLINE_TYPE,
        data=json.dumps({"order_id": order_id}).encode(),
        subject=order_id,
        correlation_id=os.urandom(16).hex(),
        delay_s=DURATION_S,
        causation_id=f"order-{order_id}",
        time=datetime.now(UTC),
    )


async def _set(url: str, queue: str, n: int) -> float:
    """Publish n deadlines with confirms; how long it took."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        started = time.monotonic()
        for first in range(0, n, IN_FLIGHT):
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(_deadline(i), queue, mandatory=True)
                    for i in range(first, min(n, first + IN_FLIGHT))
                )
            )
        return time.monotonic() - started


async def run(options: Options) -> dict[str, Any]:
    n = options.deadlines
    payments = specs.by_name("payments")
    queue = topology.deadline_queue(payments.name, DEADLINE_TYPE, DURATION_S)
    with bench_vhost(options.admin_url) as url:
        vhost = url.rsplit("/", 1)[1]
        connection = await aio_pika.connect(url)
        async with connection, connection.channel() as channel:
            await topology.declare(
                channel, (5.0,), 20, consumers=(payments,), deadlines_s={DEADLINE_TYPE: DURATION_S}
            )
        own_dir, data_dir = await asyncio.to_thread(_raft_dirs, vhost, queue)
        before = await asyncio.to_thread(_measure, vhost, queue, own_dir, data_dir)
        console.print(f"setting {n:,} deadlines in {queue} ...")
        took_s = await _set(url, queue, n)
        await asyncio.sleep(SETTLE_S)
        after = await asyncio.to_thread(_measure, vhost, queue, own_dir, data_dir)
    if after["queue"]["messages"] != n:
        raise BenchError(f"{queue} holds {after['queue']['messages']} deadlines, not {n}")
    delta: dict[str, int] = {
        "queue memory": after["queue"]["memory"] - before["queue"]["memory"],
        **{
            f"node {key}": after["node_memory"].get(key, 0) - before["node_memory"].get(key, 0)
            for key in NODE_MEMORY
        },
        "queue's Raft directory (disk)": after["queue_dir_bytes"] - before["queue_dir_bytes"],
        "node write-ahead log (disk)": after["wal_bytes"] - before["wal_bytes"],
    }
    per_million = {what: value * MILLION / n for what, value in delta.items()}
    table = Table(title=f"{n:,} pending deadlines, extrapolated per million")
    for column in ("what", f"for {n:,}", "bytes each", "per million (extrapolated)"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for what, value in delta.items():
        table.add_row(what, _size(value), f"{value / n:,.0f}", _size(per_million[what]))
    console.print(table)
    wire = _wire_bytes(_event(0))
    console.print(
        f"each deadline {wire} bytes as published (body and properties, as the outbox sets "
        f"them); set at {n / took_s:,.0f} deadlines/s with confirms. Node-wide rows include "
        f"other runs on the shared broker, and fall when the write-ahead log rolls over into "
        f"segments (which frees quorum_ets): read the queue's own rows"
    )
    return {
        "deadlines": n,
        "queue": queue,
        "publish_s": took_s,
        "wire_bytes_each": wire,
        "before": before,
        "after": after,
        "delta_bytes": delta,
        "per_million_bytes": per_million,
    }


def _size(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError
