"""What the operator benchmarks share: an event log filled in SQLite, and the operator service
serving it over HTTP on loopback, and the table of its pages' latencies (`operator_search`,
`order_page`, `people`)."""

import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from hookhub_eventlog.store import LoggedEvent
from hookhub_eventlog.store.sqlite import SQLiteEventLog
from report import console
from rich.table import Table
from support import child_env, free_port, serve

INDEX_BATCH = 50_000


async def fill_event_log(path: Path, count: int, event_at: Callable[[int], LoggedEvent]) -> float:
    """Index `count` events (`event_at(position)`) into the event log at `path`, in batches as
    the indexer writes them; the seconds it took."""
    store = SQLiteEventLog(path)
    started = time.perf_counter()
    try:
        for first in range(0, count, INDEX_BATCH):
            last = min(first + INDEX_BATCH, count)
            await store.index([event_at(p) for p in range(first, last)])
    finally:
        await store.close()
    return time.perf_counter() - started


@asynccontextmanager
async def serving_operator(
    path: Path, server_python: str = sys.executable
) -> AsyncIterator[httpx.AsyncClient]:
    """The operator service over the store at `path`, run by `server_python` (another checkout's
    interpreter runs that checkout's code: a baseline), and a client of it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = child_env(HOOKHUB_STORE_URL=f"sqlite:///{path}", HOOKHUB_LOG_JSON="true")
    # Loopback only, no Kong in front.
    args = [
        server_python,
        "-m",
        "hookhub.cli",
        "operator",
        "--port",
        str(port),
        "--allow-no-gateway",
    ]
    async with (
        serve("operator", args, env, f"{url}/livez", path.parent / "operator.log"),
        httpx.AsyncClient(base_url=url, timeout=30) as client,
    ):
        yield client


def report_pages(title: str, figures: dict, pages: tuple[str, ...], goal_p99_ms: float) -> None:
    """Print each page's latency figures (`support.latency_ms`) as a table, and whether every
    page's p99 is under the goal."""
    table = Table(title=title)
    for column in ("page", "n", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "page" else "right")
    for name in pages:
        f = figures[name]
        table.add_row(name, str(f["n"]), f"{f['p50_ms']:.1f}", f"{f['p99_ms']:.1f}",
                      f"{f['max_ms']:.1f}")  # fmt: skip
    console.print(table)
    met = all(figures[name]["p99_ms"] < goal_p99_ms for name in pages)
    console.print(f"  goal p99 < {goal_p99_ms} ms: {'met' if met else 'not met'}")
