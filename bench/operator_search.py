"""The operator's search over a big event log, through the operator service's HTTP API, as an
operator's browser or script uses it; and whether the service stays live while someone searches
for the worst pattern there is.

    .venv/bin/python bench/run.py --only operator_search            # 1,000,000 indexed events
    .venv/bin/python bench/operator_search.py --indexed 200000      # alone, fewer events
    .venv/bin/python bench/operator_search.py --indexed 200000 --livez-samples 100 \
        --server-python /path/to/another/checkout/.venv/bin/python   # a baseline: that code

`hookhub operator` (uvicorn, 1 worker, as shipped) over a SQLite event log of `--indexed` events
(eight types, two a second, as an indexer would have written them). Sequential requests, each
timed from send to the whole answer:
  by id          `/api/events?id=...`, an id at random
  type pattern   `/api/events?type=...`, newest 50 of a pattern at random (`stripe.#`, `*.created`,
                 `#.refunded`, `payment.*`, `github.#`)
  time window    `/api/events?since=...&until=...`, newest 50 of an hour at random
  pattern + hour the two together
  hostile        `/api/events?type=%23.nomatch&limit=1`: matches nothing, so every row is looked
                 at, until the search budget (2 s) stops it with a 503
  /livez         while two clients send the hostile search back to back: the event loop must
                 not be the one doing the search
Goals (issue 21): p99 under 200 ms for the searches, /livez p99 under 50 ms under the hostile one.
"""

import argparse
import asyncio
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hookhub_eventlog.store import LoggedEvent
from operator_harness import fill_event_log, serving_operator
from report import console
from rich.table import Table
from support import Options, latency_ms

INDEXED = 1_000_000
SAMPLES = 300
LIVEZ_SAMPLES = 1_000
HOSTILE_CLIENTS = 2
TYPES = (
    "stripe.payment_intent.succeeded",
    "stripe.charge.refunded",
    "hotmart.PURCHASE_APPROVED",
    "order.created",
    "payment.approved",
    "ci.build",
    "github.push",
    "notification.delivered",
)
PATTERNS = ("stripe.#", "*.created", "#.refunded", "payment.*", "github.#")
HOSTILE = {"type": "#.nomatch", "limit": "1"}
START = datetime(2026, 11, 1, tzinfo=UTC)
SECONDS_APART = 0.5


def _event(position: int) -> LoggedEvent:
    return LoggedEvent(
        position=position,
        id=f"evt-{position:08d}",
        source=f"/webhooks/{TYPES[position % len(TYPES)].split('.')[0]}",
        type=TYPES[position % len(TYPES)],
        time=START + timedelta(seconds=position * SECONDS_APART),
        subject=f"ord-{position // 4}",
        correlation_id=f"corr-{position}",
    )


def _hour(indexed: int) -> dict[str, str]:
    span_s = indexed * SECONDS_APART
    since = START + timedelta(seconds=random.uniform(0, max(span_s - 3600, 0)))
    return {"since": since.isoformat(), "until": (since + timedelta(hours=1)).isoformat()}


async def _timed(client: httpx.AsyncClient, params: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    response = await client.get("/api/events", params=params)
    return time.perf_counter() - started, response.status_code


async def _searches(client: httpx.AsyncClient, indexed: int) -> dict[str, Any]:
    kinds = {
        "by_id": lambda: {"id": f"evt-{random.randrange(indexed):08d}"},
        "type_pattern": lambda: {"type": random.choice(PATTERNS)},
        "time_window": lambda: _hour(indexed),
        "pattern_and_hour": lambda: {"type": random.choice(PATTERNS), **_hour(indexed)},
    }
    figures: dict[str, Any] = {}
    for name, params in kinds.items():
        samples = []
        for _ in range(SAMPLES):
            seconds, status = await _timed(client, params())
            assert status == 200, (name, status)
            samples.append(seconds)
        figures[name] = latency_ms(samples)
    hostile, statuses = [], []
    for _ in range(10):
        seconds, status = await _timed(client, HOSTILE)
        hostile.append(seconds)
        statuses.append(status)
    figures["hostile"] = {**latency_ms(hostile), "statuses": sorted(set(statuses))}
    return figures


async def _livez_under_attack(
    client: httpx.AsyncClient, url: str, livez_samples: int
) -> dict[str, Any]:
    stop = asyncio.Event()

    async def attack() -> int:
        sent = 0
        async with httpx.AsyncClient(base_url=url, timeout=30) as attacker:
            while not stop.is_set():
                await attacker.get("/api/events", params=HOSTILE)
                sent += 1
        return sent

    attackers = [asyncio.create_task(attack()) for _ in range(HOSTILE_CLIENTS)]
    await asyncio.sleep(0.5)  # the searches are under way
    samples = []
    try:
        for _ in range(livez_samples):
            started = time.perf_counter()
            response = await client.get("/livez")
            samples.append(time.perf_counter() - started)
            assert response.status_code == 200
    finally:
        stop.set()
        hostile_sent = sum(await asyncio.gather(*attackers))
    return {**latency_ms(samples), "hostile_searches_meanwhile": hostile_sent}


async def measure(
    indexed: int, livez_samples: int = LIVEZ_SAMPLES, server_python: str = sys.executable
) -> dict[str, Any]:
    """The figures, with the operator service run by `server_python` (another checkout's
    interpreter runs that checkout's code: a baseline)."""
    with tempfile.TemporaryDirectory(prefix="hookhub-bench-operator-") as tmp:
        path = Path(tmp) / "hookhub.db"
        console.print(f"operator search: indexing {indexed:,} events in SQLite ...")
        indexing_s = await fill_event_log(path, indexed, _event)
        async with serving_operator(path, server_python) as client:
            await client.get("/api/events", params={"limit": "1"})  # warm
            searches = await _searches(client, indexed)
            livez = await _livez_under_attack(client, str(client.base_url), livez_samples)
    return {"indexed": indexed, "indexing_s": indexing_s, **searches, "livez_under_hostile": livez}


def report(figures: dict[str, Any]) -> None:
    table = Table(
        title=f"Operator search over {figures['indexed']:,} indexed events (SQLite, HTTP)"
    )
    for column in ("case", "n", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for name in ("by_id", "type_pattern", "time_window", "pattern_and_hour", "hostile",
                 "livez_under_hostile"):  # fmt: skip
        f = figures[name]
        table.add_row(name.replace("_", " "), str(f["n"]), f"{f['p50_ms']:.1f}",
                      f"{f['p99_ms']:.1f}", f"{f['max_ms']:.1f}")  # fmt: skip
    console.print(table)
    searches_met = all(
        figures[name]["p99_ms"] < 200
        for name in ("by_id", "type_pattern", "time_window", "pattern_and_hour")
    )
    livez_met = figures["livez_under_hostile"]["p99_ms"] < 50
    console.print(f"  goal search p99 < 200 ms: {'met' if searches_met else 'not met'}")
    console.print(f"  goal /livez p99 < 50 ms, hostile search: {'met' if livez_met else 'not met'}")
    meanwhile = figures["livez_under_hostile"]["hostile_searches_meanwhile"]
    statuses = figures["hostile"]["statuses"]
    console.print(f"  hostile search answered {statuses} ({meanwhile} sent meanwhile)")


async def run(options: Options) -> dict[str, Any]:
    figures = await measure(INDEXED)
    report(figures)
    return {"section": "operator_search", **figures}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--indexed", type=int, default=INDEXED)
    parser.add_argument("--livez-samples", type=int, default=LIVEZ_SAMPLES)
    parser.add_argument("--server-python", default=sys.executable)
    arguments = parser.parse_args()
    result = asyncio.run(
        measure(arguments.indexed, arguments.livez_samples, arguments.server_python)
    )
    report(result)
