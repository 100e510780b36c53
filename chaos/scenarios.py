"""The faults, one scenario each, and how one scenario runs.

A scenario gets a fresh vhost on the cluster (its own queues, and quorum queues replicated on
all three nodes), a fresh store and a fresh hub. Load starts; after WARMUP_S the fault is
injected, and healed; the load goes on for POST_HEAL_S, every sender finishes (202 or gave up),
the consumers get SETTLE_TIMEOUT_S to finish the work, and the verdict is taken.
"""

import asyncio
import errno
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aio_pika
import httpx
from hookhub import specs, topology

from chaos.cluster import Cluster
from chaos.hub import RETRY_DELAYS_S, Hub
from chaos.load import Load, event_id
from chaos.observe import in_flight, not_findable, parked_messages, queue_depths
from chaos.receiver import Receiver
from chaos.verdict import Verdict, judge
from tests.support.net import free_port
from tests.support.processes import HubProcess
from tests.support.tcp_proxy import TcpProxy

WARMUP_S = 3.0
FAULT_S = 8.0  # how long a lasting fault (node down, partition, store full) lasts
KILL_INTERVAL_S = 3.0  # between two SIGKILLs of the repeated-kill scenarios
POST_HEAL_S = 5.0
SETTLE_TIMEOUT_S = 45.0
READY_TIMEOUT_S = 60.0
STORE_TMPFS_MB = 64
HANG_S = 10.0  # how long a node hangs (SIGSTOP … SIGCONT)
HANG_GAP_LIMIT_S = 6.0  # intake must come back within ~5 s of a node hanging
REPLICAS = 3
KILL_ROUNDS = 4
BACKFILL_FILL_S = 15.0  # ~9 archived events an order at 10 orders/s: past 1000 by then
SLOW_SHARE, SLOW_S = 0.2, 10.0
INDEX_CATCH_UP_S = 2.0  # the indexer writes every 0.5 s
SETTLE_POLL_S = 0.5
# With nothing queued and no effect arriving for this long, what is missing is not coming.
QUIET_S = 4.0
WORK_QUEUES = [topology.work_queue(consumer) for consumer in specs.names()]


class Skipped(Exception):
    """This machine cannot inject the fault (says why)."""


@dataclass
class Rig:
    """What a fault acts on; `notes` say what it did (which node, how many kills)."""

    cluster: Cluster
    vhost: str
    hub: Hub
    proxies: list[TcpProxy]
    store_dir: Path
    started_utc: datetime = field(default_factory=lambda: datetime.now(UTC))
    notes: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)  # the scenario's own failed checks


# Each fault returns once healed: the runner measures recovery from that moment.
async def stop_leader(rig: Rig) -> None:
    await _node_down(rig, stop=True)


async def kill_leader(rig: Rig) -> None:
    await _node_down(rig, stop=False)


async def _node_down(rig: Rig, *, stop: bool) -> None:
    # The node leading the work queues: losing it forces a leader election, the hard case.
    node = await asyncio.to_thread(rig.cluster.leader_of, rig.vhost, WORK_QUEUES)
    await asyncio.to_thread(node.stop if stop else node.kill)
    rig.notes.append(f"{'stopped' if stop else 'killed -9'} {node.name}, the queues' leader")
    await asyncio.sleep(FAULT_S)
    await asyncio.to_thread(rig.cluster.wait_running)  # starts it again; it rejoins by itself


async def kill_consumers(rig: Rig) -> None:
    for turn, name in enumerate((*specs.names(), specs.names()[0])):
        if turn:
            await asyncio.sleep(KILL_INTERVAL_S)
        await asyncio.to_thread(rig.hub.kill_consumer, name, signal.SIGKILL)
        await asyncio.to_thread(rig.hub.start_consumer, name)
        rig.notes.append(f"SIGKILL {name}")


async def kill_api(rig: Rig) -> None:
    for turn in range(3):
        if turn:
            await asyncio.sleep(KILL_INTERVAL_S)
        await asyncio.to_thread(rig.hub.kill_api, signal.SIGKILL)
        await asyncio.to_thread(rig.hub.start_api)
        rig.notes.append("SIGKILL hub-api")


async def partition_api(rig: Rig) -> None:
    # A black hole, not a refusal: connections stay open and every byte vanishes, so hub-api
    # learns of it only from its own timeouts.
    for proxy in rig.proxies:
        proxy.freeze()
    await asyncio.sleep(FAULT_S)
    for proxy in rig.proxies:
        proxy.restore()


async def fill_store(rig: Rig) -> None:
    filler = rig.store_dir / "filler"
    fill_disk(filler)
    rig.notes.append("the store's tmpfs full")
    await asyncio.sleep(FAULT_S)
    filler.unlink()


async def hang_node(rig: Rig) -> None:
    # Hung, not dead: its connections stay open and nothing answers, so clients learn of it only
    # from their own timeouts (heartbeats, publish confirms).
    node = await asyncio.to_thread(rig.cluster.leader_of, rig.vhost, WORK_QUEUES)
    node.freeze()
    rig.notes.append(f"SIGSTOP {node.name}, the queues' leader, for {HANG_S:g} s")
    try:
        await asyncio.sleep(HANG_S)
    finally:
        node.thaw()
    await asyncio.to_thread(rig.cluster.wait_running)


async def kill_replicas(rig: Rig) -> None:
    # Three processes per consumer on one store: a kill leaves the others holding the queue,
    # and the killed one's unacked messages go to them mid-flight.
    names = specs.names()
    for turn in range(KILL_ROUNDS):
        if turn:
            await asyncio.sleep(KILL_INTERVAL_S)
        victims = [(names[turn % len(names)], turn % REPLICAS), (names[(turn + 1) % len(names)], 0)]
        for name, replica in victims:
            await asyncio.to_thread(rig.hub.kill_consumer, name, signal.SIGKILL, replica)
        await asyncio.gather(
            *(asyncio.to_thread(rig.hub.start_consumer, name, r) for name, r in victims)
        )
        rig.notes.append("SIGKILL " + ", ".join(f"{n}#{r}" for n, r in victims))


async def kill_indexer(rig: Rig) -> None:
    for _ in range(3):
        await asyncio.sleep(KILL_INTERVAL_S)
        await asyncio.to_thread(rig.hub.kill_indexer, signal.SIGKILL)
        await asyncio.to_thread(rig.hub.start_indexer)
        rig.notes.append("SIGKILL hookhub index")


async def kill_backfill(rig: Rig) -> None:
    # The notifications consumer backfilled from the scenario's start (every event so far is in
    # the archive and already notified by the live replica). It logs backfill.progress every
    # 1000 events read: the load first fills the archive past that, and the first backfill is
    # killed at that line, mid-way; the second reads it all again.
    await asyncio.sleep(BACKFILL_FILL_S)
    since = rig.started_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    for turn in range(2):
        port = free_port()
        args = ["consume", "notifications", "--from", since, "--probe-port", str(port)]
        backfill = rig.hub.run(args, f"backfill-{turn}")
        if turn == 0:
            found = await asyncio.to_thread(
                _wait_log, backfill, ("backfill.progress", "backfill.done"), READY_TIMEOUT_S
            )
            await asyncio.to_thread(backfill.stop, signal.SIGKILL)
            rig.notes.append(f"SIGKILL the backfill at its first {found or 'line (none)'}")
            if found != "backfill.progress":
                rig.checks.append("the backfill was not killed mid-way")
        else:
            url = f"http://127.0.0.1:{port}/readyz"
            live = await asyncio.to_thread(_wait_ready, url, READY_TIMEOUT_S)
            rig.notes.append(
                "the backfill run again: " + ("done, live" if live else "not live in time")
            )
            if not live:
                rig.checks.append("the backfill run again never went live")
            await asyncio.to_thread(backfill.stop)


async def slow_receiver(rig: Rig) -> None:
    rig.hub.endpoint.slow_share = SLOW_SHARE
    rig.notes.append(
        f"the first POST of {SLOW_SHARE:.0%} of webhook-ids answered after {SLOW_S:g} s"
    )
    await asyncio.sleep(FAULT_S)
    rig.hub.endpoint.slow_share = 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str
    inject: Callable[[Rig], Awaitable[None]]
    partition_api: bool = False  # hub-api reaches the nodes through proxies that can freeze
    store_on_tmpfs: bool = False  # the store on a small tmpfs that can be filled
    replicas: int = 1  # processes per consumer
    indexer: bool = False  # `hookhub index` runs; every accepted id must be findable after
    every_event_accepted: bool = False  # a sender that gave up fails the row
    max_gap_s: float | None = None  # a longer ingest gap fails the row


SCENARIOS = [
    Scenario("stop-leader", f"stop the leader node for {FAULT_S:g} s, start it", stop_leader),
    Scenario("kill-leader", f"kill -9 the leader node, start it after {FAULT_S:g} s", kill_leader),
    Scenario(
        "hang-node",
        f"SIGSTOP the leader node for {HANG_S:g} s, SIGCONT",
        hang_node,
        every_event_accepted=True,
        max_gap_s=HANG_GAP_LIMIT_S,
    ),
    Scenario("kill-consumers", "SIGKILL a consumer 4×, restart each at once", kill_consumers),
    Scenario(
        "kill-replicas",
        f"{REPLICAS} processes per consumer, SIGKILL 2 of them {KILL_ROUNDS}×",
        kill_replicas,
        replicas=REPLICAS,
    ),
    Scenario("kill-api", "SIGKILL hub-api 3×, restart it at once", kill_api),
    Scenario(
        "kill-indexer",
        "SIGKILL `hookhub index` 3×; every id findable after",
        kill_indexer,
        indexer=True,
    ),
    Scenario(
        "kill-backfill",
        "SIGKILL a notifications backfill at its first progress line, run it again",
        kill_backfill,
    ),
    Scenario(
        "slow-receiver",
        f"{SLOW_SHARE:.0%} of notifications answered after {SLOW_S:g} s for {FAULT_S:g} s",
        slow_receiver,
    ),
    Scenario(
        "partition-api",
        f"black-hole hub-api ↔ broker for {FAULT_S:g} s; every resent event accepted",
        partition_api,
        partition_api=True,
        every_event_accepted=True,
    ),
    Scenario(
        "store-full", f"the store's disk full for {FAULT_S:g} s", fill_store, store_on_tmpfs=True
    ),
]


def fill_disk(path: Path) -> None:
    """Write to `path` until its file system is full (ENOSPC)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (b"\0" * (1 << 20), b"\0" * 4096):  # then the last pages
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)


@contextmanager
def small_tmpfs(path: Path) -> Iterator[Path]:
    """A tmpfs of STORE_TMPFS_MB at `path`: a disk that can be filled in milliseconds and
    emptied again, without touching the machine's own disk."""
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={STORE_TMPFS_MB}m", "hookhub-chaos", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        raise Skipped(f"cannot mount a tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


async def run_scenario(
    scenario: Scenario, cluster: Cluster, work_dir: Path, orders_per_s: float
) -> tuple[Verdict, list[str]]:
    """Run one scenario end to end; its verdict and what the fault did."""
    vhost = f"chaos-{scenario.name}"
    log_dir = work_dir / scenario.name
    log_dir.mkdir(parents=True)
    with ExitStack() as stack:
        urls = stack.enter_context(cluster.vhost(vhost))
        proxies = (
            [stack.enter_context(TcpProxy.to_url(url)) for url in urls]
            if scenario.partition_api
            else []
        )
        api_urls = [proxy.url_through(url) for proxy, url in zip(proxies, urls, strict=False)]
        store_dir = (
            stack.enter_context(small_tmpfs(log_dir / "store"))
            if scenario.store_on_tmpfs
            else log_dir
        )
        store_url = f"sqlite:///{store_dir}/hookhub.db"
        receiver = Receiver(slow_s=SLOW_S)
        hub = Hub(
            urls,
            store_url,
            log_dir,
            api_urls=api_urls or None,
            replicas=scenario.replicas,
            indexer=scenario.indexer,
            receiver=receiver,
        )
        stack.callback(hub.close)
        started_utc = datetime.now(UTC) - timedelta(seconds=1)
        await asyncio.to_thread(hub.start)
        rig = Rig(cluster, vhost, hub, proxies, store_dir, started_utc=started_utc)

        load, stop, done = Load(hub.api_url, orders_per_s), asyncio.Event(), asyncio.Event()
        sending = asyncio.create_task(load.run(stop))
        load.workshop(receiver.approved, done)
        stack.callback(sending.cancel)  # a fault that failed must not leave senders behind
        await asyncio.sleep(WARMUP_S)
        await scenario.inject(rig)
        healed_at = time.monotonic()
        ready = asyncio.create_task(asyncio.to_thread(_seconds_until_ready, hub, healed_at))
        await asyncio.sleep(POST_HEAL_S)
        stop.set()
        load_ended_at = time.monotonic()
        await load.drain()
        ready_s = await ready

        connection = await aio_pika.connect(cluster.any_running().url(vhost))
        try:
            await settle(load, receiver, connection, SETTLE_TIMEOUT_S)
            done.set()
            await sending
            await settle(load, receiver, connection, SETTLE_TIMEOUT_S / 3)
            verdict = judge(
                load.sent,
                receiver.records(),
                await parked_messages(connection),
                healed_at=healed_at,
                load_ended_at=load_ended_at,
            )
            verdict.queued = in_flight(await queue_depths(connection, RETRY_DELAYS_S))
        finally:
            await connection.close()
        verdict.ready_s = ready_s
        if scenario.indexer:
            ids = {event_id(s.kind, s.order_id) for s in load.sent if s.accepted_at}
            await asyncio.sleep(INDEX_CATCH_UP_S)
            missing = await asyncio.to_thread(not_findable, hub.env, ids)
            verdict.not_findable = len(missing)
            rig.notes.extend(f"not findable: {event}" for event in missing[:5])
        if scenario.every_event_accepted and verdict.gave_up:
            rig.checks.append(f"{verdict.gave_up} events never accepted")
        if scenario.max_gap_s is not None and verdict.ingest_gap_s > scenario.max_gap_s:
            rig.checks.append(f"ingest gap {verdict.ingest_gap_s:g} s > {scenario.max_gap_s:g} s")
        verdict.checks = rig.checks
    return verdict, rig.notes


async def settle(
    load: Load,
    receiver: Receiver,
    connection: aio_pika.abc.AbstractConnection,
    timeout_s: float,
) -> None:
    """Wait until the receiver has every effect the accepted events call for (or their causes
    are parked), or nothing has moved for QUIET_S with nothing queued."""
    deadline = time.monotonic() + timeout_s
    last, quiet_since = None, time.monotonic()
    while time.monotonic() < deadline:
        verdict = judge(load.sent, receiver.records(), await parked_messages(connection))
        if verdict.lost == 0:
            return
        moving = in_flight(await queue_depths(connection, RETRY_DELAYS_S))
        now = (verdict.lost, verdict.accepted, len(receiver.received))
        if now != last or moving:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since > QUIET_S:
            return
        await asyncio.sleep(SETTLE_POLL_S)


def _wait_log(process: HubProcess, texts: tuple[str, ...], timeout_s: float) -> str | None:
    """The first of `texts` to appear in the process's log."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        log = process.log
        if found := [text for text in texts if text in log]:
            return found[0]
        time.sleep(0.1)
    return None


def _wait_ready(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def _seconds_until_ready(hub: Hub, since: float) -> float | None:
    deadline = since + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if hub.all_ready():
            return round(time.monotonic() - since, 2)
        time.sleep(0.2)
    return None
