"""The consumer benchmark: events/s through one Hookhub consumer against a FastStream subscriber
doing the same work, with the same SQLite store, in one run.

The work is the production consumer's first saga step, which takes every part of the runtime:
`payment.approved` → marker check → ticket read → `production.queued` published and confirmed →
ticket and processed-marker saved in one SQLite transaction → ack.

Three cases, one after the other, each on a backlog loaded before its consumer starts:

  plain       bench/plain_consumer.py: the limit case, plain aio-pika with group commit: the
              messages in hand read and committed as one SQLite transaction (synchronous=FULL),
              the two follow-ups (production.queued and its deadline) confirmed, one `multiple` ack
  FastStream  bench/faststream_consumer.py: a RabbitBroker subscriber doing those steps itself
  Hookhub     `hookhub consume production`: the real runtime and handler

Each case also reports the consumer process's CPU per event (user + system, from /proc, ready →
done), which, unlike events/s, does not depend on what else the machine is doing.

Each case gets the same N `payment.approved` events (distinct event and order ids) in the same
quorum work queue, a fresh SQLite file, the same prefetch (Hookhub's default), one process. The
clock starts when the runner sees the consumer ready (Hookhub's /readyz, FastStream's ready file)
and stops at the commit time of the last ticket, read from the store's markers; events/s = N over
that. Afterwards the case must show N tickets and N markers for exactly the events loaded, N
`production.queued` events emitted, and nothing left in the work, retry or dead-letter queues.
"""

import asyncio
import json
import sqlite3
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
from hookhub import specs, topology
from hookhub.events import EXCHANGE, Event, new_event_id
from hookhub.settings import Settings
from report import console, machine, process_cpu_s, ratio
from rich.table import Table
from support import (
    BENCH_DIR,
    READY_TIMEOUT_S,
    RESULTS_DIR,
    VENV_BIN,
    BenchError,
    Options,
    Process,
    bench_vhost,
    child_env,
    free_port,
    queue_depth,
)

DEFAULT_EVENTS = 5000
CONSUMER = "production"
WORK_QUEUE = topology.work_queue(CONSUMER)
CONSUMED_TYPE = "payment.approved"
EMITTED_TYPE = "production.queued"
# No binding matches production.queued (no consumer spec binds it yet), so
# hookhub.events hands each one to its alternate exchange, and hookhub.unrouted counts them.
EMITTED_QUEUE = topology.UNROUTED_QUEUE
# payment.* also reaches the notifications work queue; no notifications consumer runs here, so
# its copies are purged after loading and the broker holds only the backlog being measured.
ALSO_ROUTED_QUEUE = topology.work_queue("notifications")
# Both consumers run with Hookhub's defaults (prefetch 32): the consumer's environment carries no
# HOOKHUB_* setting, and the topology is declared with the same defaults it declares at start.
HUB_DEFAULTS = Settings.model_construct()
DEADLINES_S = topology.deadline_durations(HUB_DEFAULTS, (specs.by_name(CONSUMER),))

LOGS_DIR = RESULTS_DIR / "logs"
LOAD_IN_FLIGHT = 256  # unconfirmed publishes while loading the backlog
READY_POLL_S = 0.01  # the clock starts within this of the consumer being ready
PROGRESS_POLL_S = 0.1  # the end comes from the store, so this only sets how soon we notice it
STALL_TIMEOUT_S = 60.0  # no new ticket for this long: the consumer is stuck


@dataclass(slots=True)
class ConsumerResult:
    case: str
    events: int
    # Ready → commit of the last ticket. No per-event latency: the two cases do the same steps in
    # a different order (Hookhub commits, then publishes; FastStream publishes, then commits), so
    # no timestamp in the store spans the same work in both.
    seconds: float
    cpu_s: float | None = None  # the consumer process's, ready → done noticed
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us_per_event(self) -> float | None:
        return None if self.cpu_s is None else self.cpu_s * 1e6 / self.events

    def as_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "events_per_s": self.events_per_s,
            "cpu_us_per_event": self.cpu_us_per_event,
        }


def approvals(tag: str, count: int) -> list[Event]:
    """`payment.approved` events as the payments consumer emits them, one order each."""
    events = []
    for i in range(count):
        order_id = f"bench-{tag}-{i:06d}"
        data = {
            "order_id": order_id,
            "provider": "stripe",
            "payment_id": f"pi_bench_{tag}_{i:06d}",
            "amount": 4990,
            "currency": "usd",
            "customer": {"id": "cus_bench", "email": "bench@example.com", "name": "Bench Buyer"},
        }
        events.append(
            Event(
                id=new_event_id(),
                source="/consumers/payments",
                type=CONSUMED_TYPE,
                data=json.dumps(data, separators=(",", ":"), sort_keys=True).encode(),
                subject=order_id,
                correlation_id=new_event_id(),
            )
        )
    return events


def _order_id(event: Event) -> str:
    return json.loads(event.data)["order_id"]


def _event_key(event: Event) -> str:
    return f"{event.source}#{event.id}"  # the store's Marker.event_key


def _read_store(path: Path, sql: str) -> list[tuple]:
    """Rows from the store file, read-only, beside the consumer writing it (WAL lets both)."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # not created yet: the store opens its file on the first message


def _ticket_count(path: Path) -> int:
    rows = _read_store(path, "SELECT count(*) FROM tickets")
    return rows[0][0] if rows else 0


def _epoch_s(stored_time: str) -> float:
    return datetime.fromisoformat(stored_time).timestamp()


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.HTTPError, OSError):
        return False


@dataclass(frozen=True, slots=True)
class Launched:
    process: Process
    is_ready: Callable[[], bool]  # blocking; called in a thread


class Bench:
    """One vhost with the topology declared, a connection to load and watch it, a temp dir."""

    def __init__(
        self,
        options: Options,
        amqp_url: str,
        connection: aio_pika.abc.AbstractConnection,
        tmp: Path,
    ):
        self.options = options
        self.amqp_url = amqp_url
        self.connection = connection
        self.tmp = tmp
        # The ticket's production deadline (one per event) waits in its timer queue: not a failure.
        self.deadline_queues = [
            topology.deadline_queue(CONSUMER, deadline, duration_s)
            for deadline, duration_s in DEADLINES_S.items()
        ]
        self.failure_queues = [
            spec.name
            for spec in topology.consumer_queues(
                specs.by_name(CONSUMER),
                HUB_DEFAULTS.retry_delays_s,
                HUB_DEFAULTS.delivery_limit,
                DEADLINES_S,
            )
            if spec.name != WORK_QUEUE and spec.name not in self.deadline_queues
        ]

    async def _purge(self, queue: str) -> None:
        async with self.connection.channel() as channel:
            await (await channel.get_queue(queue, ensure=False)).purge()

    async def _expect_depth(self, queue: str, expected: int, why: str) -> None:
        depth = await queue_depth(self.connection, queue)
        if depth != expected:
            raise BenchError(f"{queue} holds {depth} messages, expected {expected}: {why}")

    async def load(self, events: Sequence[Event]) -> None:
        """Publish the backlog through hookhub.events, persistent, every publish confirmed."""
        async with self.connection.channel(publisher_confirms=True) as channel:
            exchange = await channel.get_exchange(EXCHANGE, ensure=False)
            window = asyncio.Semaphore(LOAD_IN_FLIGHT)

            async def publish(event: Event) -> None:
                async with window:
                    confirmation = await exchange.publish(event.to_message(), event.routing_key)
                if not isinstance(confirmation, aiormq.spec.Basic.Ack):
                    raise BenchError(f"loading the backlog: the broker refused {confirmation!r}")

            await asyncio.gather(*(publish(event) for event in events))
        await self._expect_depth(WORK_QUEUE, len(events), "the backlog did not all arrive")
        await self._purge(ALSO_ROUTED_QUEUE)

    async def _wait_ready(self, launched: Launched) -> float:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not await asyncio.to_thread(launched.is_ready):
            if launched.process.exited():
                raise launched.process.failure(
                    f"exited with code {launched.process.popen.returncode} while starting"
                )
            if time.monotonic() > deadline:
                raise launched.process.failure(f"was not ready within {READY_TIMEOUT_S:g}s")
            await asyncio.sleep(READY_POLL_S)
        return time.time()

    async def _wait_done(self, launched: Launched, store: Path, count: int) -> float:
        """Until `count` tickets are saved; the wall-clock time it was noticed."""
        done, last_progress = 0, time.monotonic()
        while (now_done := await asyncio.to_thread(_ticket_count, store)) < count:
            if now_done > done:
                done, last_progress = now_done, time.monotonic()
            if launched.process.exited():
                raise launched.process.failure(
                    f"exited with code {launched.process.popen.returncode} after {done} events"
                )
            if time.monotonic() - last_progress > STALL_TIMEOUT_S:
                raise launched.process.failure(
                    f"saved no ticket for {STALL_TIMEOUT_S:g}s, stuck at {done} of {count}"
                )
            await asyncio.sleep(PROGRESS_POLL_S)
        return time.time()

    async def measure(
        self, case: str, tag: str, launch: Callable[[Path], Launched]
    ) -> ConsumerResult:
        count = self.options.events
        await self._expect_depth(EMITTED_QUEUE, 0, "left over from an earlier case")
        events = approvals(tag, count)
        console.print(f"[bold]{case}[/bold]: loading {count:,} events, ", end="")
        await self.load(events)
        store = self.tmp / f"{tag}.db"
        console.print("consuming ...")
        launched = launch(store)
        try:
            ready_at = await self._wait_ready(launched)
            cpu_at_ready = process_cpu_s(launched.process.popen.pid)
            noticed_at = await self._wait_done(launched, store, count)
            cpu_at_done = process_cpu_s(launched.process.popen.pid)
            await self._expect_depth(WORK_QUEUE, 0, "every ticket is saved, yet messages wait")
        finally:
            await launched.process.stop()
        # Stopped, a message it had not acked would be back in the queue: none may be.
        await self._expect_depth(WORK_QUEUE, 0, "messages were not acked after their work")
        for queue in self.failure_queues:
            await self._expect_depth(queue, 0, "an event failed (see the consumer's log)")
        for queue in self.deadline_queues:
            await self._purge(queue)
        await self._check_emitted(count)
        result = self._result(case, events, store, ready_at, noticed_at)
        if cpu_at_ready is not None and cpu_at_done is not None:
            result.cpu_s = cpu_at_done - cpu_at_ready
        return result

    async def _check_emitted(self, count: int) -> None:
        await self._expect_depth(
            EMITTED_QUEUE, count, f"each event must emit exactly one {EMITTED_TYPE}"
        )
        async with self.connection.channel() as channel:
            queue = await channel.get_queue(EMITTED_QUEUE, ensure=False)
            sample = await queue.get(no_ack=True, fail=False)
        if sample is None or Event.from_message(sample).type != EMITTED_TYPE:
            raise BenchError(f"{EMITTED_QUEUE} holds something other than {EMITTED_TYPE}")
        await self._purge(EMITTED_QUEUE)

    def _result(
        self, case: str, events: Sequence[Event], store: Path, ready_at: float, noticed_at: float
    ) -> ConsumerResult:
        tickets = dict(_read_store(store, "SELECT order_id, status FROM tickets"))
        committed = {
            event_key: _epoch_s(processed_at)
            for event_key, processed_at in _read_store(
                store,
                f"SELECT event_key, processed_at FROM markers WHERE consumer = '{CONSUMER}'",
            )
        }
        expected_orders = {_order_id(e) for e in events}
        expected_keys = {_event_key(e) for e in events}
        if set(tickets) != expected_orders or set(tickets.values()) != {"queued"}:
            raise BenchError(f"{case}: the tickets are not one queued ticket per event loaded")
        if set(committed) != expected_keys:
            raise BenchError(f"{case}: the markers are not one per event loaded")
        last_commit = max(committed.values())
        return ConsumerResult(
            case=case,
            events=len(events),
            seconds=last_commit - ready_at,
            detail={
                "first_commit_after_ready_s": min(committed.values()) - ready_at,
                "done_noticed_after_ready_s": noticed_at - ready_at,
            },
        )


async def _declare_topology(connection: aio_pika.abc.AbstractConnection) -> None:
    async with connection.channel() as channel:
        await topology.declare(
            channel,
            HUB_DEFAULTS.retry_delays_s,
            HUB_DEFAULTS.delivery_limit,
            deadlines_s=DEADLINES_S,
        )


async def plain_case(bench: Bench) -> ConsumerResult:
    def launch(store: Path) -> Launched:
        ready_file = bench.tmp / "plain.ready"
        env = child_env(
            BENCH_AMQP_URL=bench.amqp_url,
            BENCH_STORE_PATH=str(store),
            BENCH_PREFETCH=str(HUB_DEFAULTS.prefetch_count),
            BENCH_READY_FILE=str(ready_file),
        )
        args = [sys.executable, str(BENCH_DIR / "plain_consumer.py")]
        process = Process("plain consumer", args, env, LOGS_DIR / "plain-consumer.log")
        return Launched(process, ready_file.exists)

    return await bench.measure("plain (limit)", "plain", launch)


async def faststream_case(bench: Bench) -> ConsumerResult:
    def launch(store: Path) -> Launched:
        ready_file = bench.tmp / "faststream.ready"
        env = child_env(
            BENCH_AMQP_URL=bench.amqp_url,
            BENCH_STORE_PATH=str(store),
            BENCH_PREFETCH=str(HUB_DEFAULTS.prefetch_count),
            BENCH_READY_FILE=str(ready_file),
        )
        args = [sys.executable, str(BENCH_DIR / "faststream_consumer.py")]
        process = Process("FastStream consumer", args, env, LOGS_DIR / "faststream-consumer.log")
        return Launched(process, ready_file.exists)

    return await bench.measure("FastStream", "faststream", launch)


async def hookhub_case(bench: Bench) -> ConsumerResult:
    def launch(store: Path) -> Launched:
        port = free_port()
        # The event log's archive off, as for the FastStream case: it is the broker's work, not
        # the runtime's, and it would take production.queued from hookhub.unrouted.
        env = child_env(
            HOOKHUB_AMQP_URL=bench.amqp_url,
            HOOKHUB_STORE_URL=f"sqlite:///{store}",
            HOOKHUB_ARCHIVE_ENABLED="false",
        )
        args = [str(VENV_BIN / "hookhub"), "consume", CONSUMER, "--probe-port", str(port)]
        process = Process("hookhub consume", args, env, LOGS_DIR / "hookhub-consume.log")
        ready_url = f"http://127.0.0.1:{port}/readyz"
        return Launched(process, lambda: _http_ok(ready_url))

    return await bench.measure("Hookhub", "hookhub", launch)


def print_table(title: str, results: Sequence[ConsumerResult]) -> None:
    table = Table(title=title)
    for column in ("case", "events", "seconds", "events/s", "CPU µs/event"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in results:
        table.add_row(
            r.case,
            f"{r.events:,}",
            f"{r.seconds:.2f}",
            f"{r.events_per_s:,.0f}",
            "-" if r.cpu_us_per_event is None else f"{r.cpu_us_per_event:,.0f}",
        )
    console.print(table)


async def run(options: Options) -> dict[str, Any]:
    """Run both cases; prints the table and returns everything for the JSON file."""
    load_before = machine()
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    with (
        bench_vhost(options.admin_url) as amqp_url,
        tempfile.TemporaryDirectory(prefix="hookhub-bench-consumer-") as tmp,
    ):
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            await _declare_topology(connection)
            bench = Bench(options, amqp_url, connection, Path(tmp))
            plain = await plain_case(bench)
            faststream = await faststream_case(bench)
            hookhub = await hookhub_case(bench)
    results = [plain, faststream, hookhub]
    print_table(
        f"Consumer: {options.events:,} {CONSUMED_TYPE} → ticket (SQLite) + {EMITTED_TYPE}, "
        f"one process, prefetch {HUB_DEFAULTS.prefetch_count}",
        results,
    )
    ratios = {
        "hookhub/plain (goal >= 0.8x)": ratio(hookhub.events_per_s, plain.events_per_s),
        "hookhub/FastStream": ratio(hookhub.events_per_s, faststream.events_per_s),
        "hookhub/plain, CPU per event": ratio(
            hookhub.cpu_us_per_event or 0.0, plain.cpu_us_per_event or 0.0
        ),
    }
    for name, value in ratios.items():
        console.print(f"{name}: " + ("-" if value is None else f"{value:.2f}x"))
    return {
        "section": "consumer",
        "options": {
            "events": options.events,
            "consumer": CONSUMER,
            "work_queue": WORK_QUEUE,
            "prefetch": HUB_DEFAULTS.prefetch_count,
            "store": "sqlite (a fresh file per case)",
        },
        "machine_before": load_before,
        "machine_after": machine(),
        "cases": [r.as_json() for r in results],
        "ratios": ratios,
    }
