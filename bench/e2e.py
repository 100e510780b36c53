"""The end-to-end benchmark: the whole hub deployed as processes on this machine, at fixed rates.

hub-api (`hookhub api`, its gateway secret required) and the three consumers (`hookhub consume
NAME`, each with a SQLite store file of its own, as each consumer process has in production) run
on a vhost of their own beside the witness (bench/e2e_witness.py): the notification receiver,
which also sees each `payment.approved` the payments consumer publishes after its commit. The
sender (bench/e2e_sender.py, in this process) offers orders at each rate in turn, open loop, for
the warm-up and then the timed window: `order.created`, then the order's signed Stripe payment.

Per rate: the rate achieved, 202s and errors; accept (the Stripe webhook's 202) → payment effect
and → notification received, p50/p99/max; each work queue's peak depth, and whether every queue
drained within BOUNDED_WITHIN_S of the sender stopping (bounded); the cores each process used in
the window. Then the highest offered rate at which every queue stayed bounded.
"""

import asyncio
import base64
import os
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
from e2e_report import HUB_ROLES, Rate, WitnessLog, print_tables, summary
from e2e_sender import Sender
from e2e_witness import APPROVED, NOTIFIED
from hookhub import specs, topology
from hookhub.settings import Settings
from report import CpuWindow, console, machine, pid_of
from support import (
    BENCH_DIR,
    RESULTS_DIR,
    VENV_BIN,
    Options,
    Process,
    bench_vhost,
    child_env,
    free_port,
    queue_depth,
    serve,
)

DEFAULT_RATES = (100, 200, 300)  # orders/s; each order is two requests to hub-api
DEFAULT_DRAIN_S = 30.0
# Bounded: every work queue empty, and every accepted order's effect and notification arrived,
# within this long after the sender stopped. A queue the consumers keep up with empties within a
# poll or two; one that grew during the window takes its backlog ÷ the consumer's rate.
BOUNDED_WITHIN_S = 2.0
DEPTH_POLL_S = 0.25
DRAIN_POLL_S = 0.1
WORK_QUEUES = {name: topology.work_queue(name) for name in specs.names()}
HUB_DEFAULTS = Settings.model_construct()  # every process runs with the defaults; so does the bench
DEADLINES_S = topology.deadline_durations(HUB_DEFAULTS)
LOGS_DIR = RESULTS_DIR / "logs"


@dataclass(frozen=True, slots=True)
class Hub:
    """The deployment: its processes by role, and what the sender needs to reach hub-api."""

    connection: aio_pika.abc.AbstractConnection  # the bench's own, to watch the queues
    api_port: int
    gateway_secret: str
    stripe_secret: str
    processes: dict[str, Process]
    witness: WitnessLog

    def check_running(self) -> None:
        for process in self.processes.values():
            if process.exited():
                raise process.failure(f"exited with code {process.popen.returncode} mid-run")


@asynccontextmanager
async def deployed(
    amqp_url: str, connection: aio_pika.abc.AbstractConnection, tmp: Path
) -> AsyncIterator[Hub]:
    """The witness, the three consumers and hub-api, each ready, stopped in reverse at the end."""
    gateway_secret, stripe_secret = secrets.token_hex(16), f"whsec_{secrets.token_hex(16)}"
    notify_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    witness_port, api_port = free_port(), free_port()
    hookhub = str(VENV_BIN / "hookhub")
    processes: dict[str, Process] = {}
    async with AsyncExitStack() as stack:

        async def start(role: str, args: list[str], env: dict[str, str], ready_url: str) -> None:
            server = serve(role, args, env, ready_url, LOGS_DIR / f"e2e-{role}.log")
            processes[role] = await stack.enter_async_context(server)

        witness_file = tmp / "witness.tsv"
        await start(
            "witness",
            [sys.executable, "-m", "uvicorn", "e2e_witness:app", "--app-dir", str(BENCH_DIR),
             "--host", "127.0.0.1", "--port", str(witness_port), "--loop", "uvloop",
             "--http", "httptools", "--no-access-log", "--log-level", "warning"],
            child_env(BENCH_AMQP_URL=amqp_url, BENCH_WITNESS_FILE=str(witness_file)),
            f"http://127.0.0.1:{witness_port}/readyz",
        )  # fmt: skip
        for name in specs.names():
            probe_port = free_port()
            env = child_env(
                HOOKHUB_AMQP_URL=amqp_url,
                HOOKHUB_STORE_URL=f"sqlite:///{tmp / name}.db",
                HOOKHUB_NOTIFY_URL=f"http://127.0.0.1:{witness_port}/hooks",
                HOOKHUB_NOTIFY_SECRET=notify_secret,
            )
            args = [hookhub, "consume", name, "--probe-port", str(probe_port)]
            await start(name, args, env, f"http://127.0.0.1:{probe_port}/readyz")
        env = child_env(
            HOOKHUB_AMQP_URL=amqp_url,
            HOOKHUB_GATEWAY_SECRET=gateway_secret,
            HOOKHUB_SECRET_STRIPE=stripe_secret,
        )
        args = [hookhub, "api", "--host", "127.0.0.1", "--port", str(api_port)]
        await start("hub-api", args, env, f"http://127.0.0.1:{api_port}/readyz")
        yield Hub(
            connection, api_port, gateway_secret, stripe_secret, processes, WitnessLog(witness_file)
        )


class DepthWatch:
    """Each work queue's ready messages, sampled every DEPTH_POLL_S on a channel of its own."""

    def __init__(self, connection: aio_pika.abc.AbstractConnection) -> None:
        self.connection = connection
        self.samples: list[tuple[float, dict[str, int]]] = []  # (monotonic s, depth by consumer)

    async def sample(self) -> dict[str, int]:
        depths = {}
        for name, queue in WORK_QUEUES.items():
            declared = await self._channel.declare_queue(queue, passive=True)
            depths[name] = declared.declaration_result.message_count or 0
        self.samples.append((time.monotonic(), depths))
        return depths

    async def _poll(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(DEPTH_POLL_S)

    async def __aenter__(self) -> "DepthWatch":
        self._channel = await self.connection.channel()
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._channel.close()

    def peaks(self) -> dict[str, int]:
        return {name: max((d[name] for _, d in self.samples), default=0) for name in WORK_QUEUES}

    def series(self) -> list[list[float]]:
        """[seconds since the first sample, depth of each work queue in WORK_QUEUES' order]"""
        first_s = self.samples[0][0] if self.samples else 0.0
        return [[round(at - first_s, 2), *d.values()] for at, d in self.samples]


async def _drained_after_s(
    hub: Hub, accepted: list[str], depths: DepthWatch, stopped_s: float, limit_s: float
) -> float | None:
    """Seconds from the sender stopping until every work queue is empty and every accepted
    order's effect and notification have arrived; None if that took longer than `limit_s`."""
    waiting = set(accepted)
    while True:
        hub.check_running()
        hub.witness.read()
        waiting = {o for o in waiting if not hub.witness.done(o, APPROVED, NOTIFIED)}
        if not waiting and not any((await depths.sample()).values()):
            return time.monotonic() - stopped_s
        if time.monotonic() - stopped_s > limit_s:
            return None
        await asyncio.sleep(DRAIN_POLL_S)


async def _purge_backlog(connection: aio_pika.abc.AbstractConnection) -> dict[str, int]:
    """Empty the work queues of what an unbounded rate left, so the next rate starts clean."""
    purged = {}
    async with connection.channel() as channel:
        for name, queue in WORK_QUEUES.items():
            result = await (await channel.get_queue(queue, ensure=False)).purge()
            purged[name] = result.message_count or 0
    return purged


async def _failed(connection: aio_pika.abc.AbstractConnection) -> dict[str, int]:
    """Messages in any retry or dead-letter queue: events that failed (see the consumers' logs)."""
    queues = [
        queue.name
        for queue in topology.all_queues(
            HUB_DEFAULTS.retry_delays_s, HUB_DEFAULTS.delivery_limit, deadlines_s=DEADLINES_S
        )
        if queue.name not in {*WORK_QUEUES.values(), topology.UNROUTED_QUEUE}
        # deadlines waiting (an order's payment deadline): not failures
        and not any(topology.deadline_type_of(queue.name, spec) for spec in specs.installed())
    ]
    depths = {queue: await queue_depth(connection, queue) for queue in queues}
    return {queue: depth for queue, depth in depths.items() if depth}


async def measure(hub: Hub, rate_per_s: int, options: Options, tag: str) -> Rate:
    """One offered rate: warm-up, timed window, then the wait for the hub to catch up."""
    console.print(
        f"[bold]{rate_per_s:,} orders/s[/bold]: warm-up {options.warmup_s}s, "
        f"measuring {options.duration_s}s ..."
    )
    sender = Sender("127.0.0.1", hub.api_port, hub.gateway_secret, hub.stripe_secret)
    roles = {role: p.popen.pid for role, p in hub.processes.items()}
    # The sender is this process (which also samples the queue depths, a few calls a second).
    roles |= {"broker": pid_of("beam.smp"), "sender": os.getpid()}
    # Also over the whole run, first order sent → every queue drained, per order accepted: what an
    # order costs even when the hub falls behind in the window (a busy machine), which the
    # window's figure then understates (the work is done after it).
    whole, whole_from = CpuWindow(roles), time.monotonic()
    async with DepthWatch(hub.connection) as depths:
        sending = asyncio.create_task(
            sender.offer(rate_per_s, options.warmup_s, options.duration_s, tag)
        )
        try:
            await asyncio.sleep(options.warmup_s)
            cpu, window_from = CpuWindow(roles), time.time()
            await asyncio.sleep(options.duration_s)
            cores, window_to = cpu.close(options.duration_s, 0)["cores"], time.time()
            stopped_s = time.monotonic()
            sent = await sending
        finally:
            sending.cancel()
        accepted = [o.order_id for o in sent.orders if o.accepted_at is not None]
        accepted_all = sum(1 for o in sent.orders if o.accepted_at is not None)
        drained_after_s = await _drained_after_s(hub, accepted, depths, stopped_s, options.drain_s)
        whole_s = time.monotonic() - whole_from
        whole_cores = whole.close(whole_s, 0)["cores"]
        peaks, depth_series = depths.peaks(), depths.series()
    purged = await _purge_backlog(hub.connection) if drained_after_s is None else {}
    cores.pop("wrk", None)  # CpuWindow's count of waited-for children: none here
    return Rate.of(
        rate_per_s,
        sent,
        hub.witness,
        peak_depth=peaks,
        depth_series=depth_series,
        drained_after_s=drained_after_s,
        bounded=drained_after_s is not None and drained_after_s <= BOUNDED_WITHIN_S,
        purged=purged,
        failed=await _failed(hub.connection),
        cores=cores,
        cpu_ms_per_order_whole_run=_per_order_ms(whole_cores, whole_s, accepted_all)
        if drained_after_s is not None
        else {},
        window=(window_from, window_to),
    )


def _per_order_ms(
    cores: dict[str, float | None], seconds: float, orders: int
) -> dict[str, float | None]:
    """CPU ms per order by hub role and all of them ("hub"), from cores used over `seconds`."""
    per_role = {
        role: None if (c := cores.get(role)) is None or not orders else c * seconds * 1000 / orders
        for role in HUB_ROLES
    }
    known = [ms for ms in per_role.values() if ms is not None]
    return {**per_role, "hub": sum(known) if len(known) == len(HUB_ROLES) else None}


async def run(options: Options) -> dict[str, Any]:
    """Deploy the hub, offer each rate in turn; prints the tables, returns the JSON payload."""
    load_before = machine()
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    run_tag = secrets.token_hex(3)
    rates: list[Rate] = []
    with (
        bench_vhost(options.admin_url) as amqp_url,
        tempfile.TemporaryDirectory(prefix="hookhub-bench-e2e-") as tmp,
    ):
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            async with connection.channel() as channel:
                await topology.declare(
                    channel,
                    HUB_DEFAULTS.retry_delays_s,
                    HUB_DEFAULTS.delivery_limit,
                    deadlines_s=DEADLINES_S,
                )
            async with deployed(amqp_url, connection, Path(tmp)) as hub:
                for rate_per_s in options.rates:
                    tag = f"e2e-{run_tag}-{rate_per_s}"  # in every order id of this rate
                    rates.append(await measure(hub, rate_per_s, options, tag))
    print_tables(options, rates, BOUNDED_WITHIN_S)
    return {
        "section": "e2e",
        "options": {
            "rates_orders_per_s": list(options.rates),
            "warmup_s": options.warmup_s,
            "duration_s": options.duration_s,
            "drain_s": options.drain_s,
            "bounded_within_s": BOUNDED_WITHIN_S,
            "store": "sqlite, a file per consumer process",
            "prefetch": HUB_DEFAULTS.prefetch_count,
        },
        "machine_before": load_before,
        "machine_after": machine(),
        "rates": [r.as_json() for r in rates],
        **summary(rates),
    }
