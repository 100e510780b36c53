"""The endpoints benchmark: a slow endpoint beside a fast one, on one queue (the design before
endpoints, the baseline) and on a queue each (the endpoint registry's), in one run.

The same load in both cases: for `--duration-s` seconds, `RATE_PER_S` events a second, one in
five of type `ci.bench.slow` (its receiver answers after `SLOW_S`), the rest `ci.bench.fast`
(answered at once); then up to `DRAIN_S` for the fast ones still on their way.

  one queue     `hookhub consume notifications` with HOOKHUB_NOTIFY_URL at one receiver that
                answers each type as above: both kinds share the queue hookhub.notifications
                and its consumer's prefetch (the design before endpoints)
  per endpoint  the same process with two registry endpoints (`hookhub endpoints add`): the
                slow receiver's for `ci.bench.slow`, the fast one's for `ci.bench.fast`

The figure is each fast event's latency, from its publish (confirmed) to its arrival at the fast
receiver, both read on this process's monotonic clock: p50 and p99, and how many arrived.
"""

import asyncio
import json
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aio_pika
from hookhub.events import EXCHANGE, Event
from report import Latencies, console, machine, ratio
from rich.table import Table
from support import VENV_BIN, Options, bench_vhost, child_env, free_port, serve

RATE_PER_S = 20
SLOW_SHARE = 5  # one event in this many is slow
SLOW_S = 10.0
# Under ci.#, which the notifications consumer binds: the baseline's one queue gets both.
SLOW_TYPE, FAST_TYPE = "ci.bench.slow", "ci.bench.fast"
DRAIN_S = 60.0
SECRET = "whsec_" + "QmVuY2htYXJrU2VjcmV0Rm9yRW5kcG9pbnRzMTIzNA=="


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True


class Receiver:
    """A receiver answering `ci.bench.slow` after SLOW_S and anything else at once; it notes when
    each event id arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                event_id = self.headers.get("webhook-id", "")
                receiver.arrived.setdefault(event_id, time.monotonic())
                if json.loads(body).get("type") == SLOW_TYPE:
                    time.sleep(SLOW_S)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def _load(amqp_url: str, duration_s: int) -> dict[str, float]:
    """Publish the load; the publish time of each fast event by id."""
    published: dict[str, float] = {}
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE)
        start = time.monotonic()
        for n in range(duration_s * RATE_PER_S):
            await asyncio.sleep(max(0.0, start + n / RATE_PER_S - time.monotonic()))
            slow = n % SLOW_SHARE == 0
            event = Event(
                id=f"bench-{uuid.uuid4().hex}",
                source="/events/bench",
                type=SLOW_TYPE if slow else FAST_TYPE,
                data=b'{"n": %d}' % n,
            )
            sent = time.monotonic()
            await exchange.publish(event.to_message(), event.routing_key)
            if not slow:
                published[event.id] = sent
    return published


async def _endpoints(env: dict[str, str], *args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        str(VENV_BIN / "hookhub"), "endpoints", *args, "--json",
        env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"hookhub endpoints {args[0]} failed: {stderr.decode()}")


async def _case(name: str, options: Options, per_endpoint: bool) -> dict[str, Any]:
    slow, fast = Receiver(), Receiver()
    try:
        with bench_vhost(options.admin_url) as amqp_url, tempfile.TemporaryDirectory() as tmp:
            env = child_env(
                HOOKHUB_AMQP_URL=amqp_url,
                HOOKHUB_STORE_URL=f"sqlite:///{tmp}/hookhub.db",
                HOOKHUB_LOG_LEVEL="WARNING",
                HOOKHUB_LOG_JSON="true",
            )
            if not per_endpoint:  # one receiver for both kinds, as HOOKHUB_NOTIFY_URL was
                env.update(HOOKHUB_NOTIFY_URL=fast.url, HOOKHUB_NOTIFY_SECRET=SECRET)
            port = free_port()
            args = [
                str(VENV_BIN / "hookhub"),
                "consume",
                "notifications",
                "--probe-port",
                str(port),
            ]
            log = Path(tmp) / "notifications.log"
            async with serve(name, args, env, f"http://127.0.0.1:{port}/readyz", log):
                if per_endpoint:
                    await _endpoints(env, "add", "--name", "slow", "--url", slow.url,
                                     "--types", SLOW_TYPE)  # fmt: skip
                    await _endpoints(env, "add", "--name", "fast", "--url", fast.url,
                                     "--types", FAST_TYPE)  # fmt: skip
                    await asyncio.sleep(3)  # the worker reads the registry every 2 s
                published = await _load(amqp_url, options.duration_s)
                deadline = time.monotonic() + DRAIN_S
                while time.monotonic() < deadline:
                    if published.keys() <= fast.arrived.keys():
                        break
                    await asyncio.sleep(0.1)  # the receiver is a thread's: nothing to await
        samples = [fast.arrived[i] - at for i, at in published.items() if i in fast.arrived]
        latencies = Latencies.from_seconds(samples)
        return {
            "case": name,
            "fast_published": len(published),
            "fast_arrived": len(samples),
            "p50_ms": latencies.percentile_ms(50),
            "p99_ms": latencies.percentile_ms(99),
            "max_ms": latencies.percentile_ms(100),
        }
    finally:
        slow.close()
        fast.close()


async def run(options: Options) -> dict[str, Any]:
    """Both cases, one after the other; the table and the JSON payload."""
    baseline = await _case("one queue (before)", options, per_endpoint=False)
    endpoints = await _case("per endpoint", options, per_endpoint=True)
    table = Table(
        title=f"fast events beside a {SLOW_S:g} s endpoint ({RATE_PER_S}/s, 1 in {SLOW_SHARE}"
        f" slow, {options.duration_s} s)"
    )
    for column in ("case", "fast arrived", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column)
    for case in (baseline, endpoints):
        table.add_row(
            case["case"],
            f"{case['fast_arrived']}/{case['fast_published']}",
            *(
                f"{case[k]:.1f}" if case[k] is not None else "-"
                for k in ("p50_ms", "p99_ms", "max_ms")
            ),
        )
    console.print(table)
    speedup = ratio(baseline["p99_ms"] or 0.0, endpoints["p99_ms"] or 1.0)
    console.print(f"p99 of the fast events, one queue / per endpoint: {speedup:.0f}x")
    return {
        "machine": machine(),
        "rate_per_s": RATE_PER_S,
        "slow_share": 1 / SLOW_SHARE,
        "slow_s": SLOW_S,
        "duration_s": options.duration_s,
        "cases": [baseline, endpoints],
        "p99_ratio": speedup,
    }


if __name__ == "__main__":
    sys.exit("run it through bench/run.py --only endpoints")
