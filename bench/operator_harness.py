"""What the operator benchmarks share: an event log filled in SQLite, and the operator service
serving it over HTTP on loopback (`operator_search`, `order_page`)."""

import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from hookhub_eventlog.store import LoggedEvent
from hookhub_eventlog.store.sqlite import SQLiteEventLog
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
