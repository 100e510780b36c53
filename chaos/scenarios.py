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
from pathlib import Path

import aio_pika
from hookhub import specs, topology
from hookhub_consumers.store import open_store

from chaos.cluster import Cluster
from chaos.hub import RETRY_DELAYS_S, Hub
from chaos.load import Load
from chaos.verdict import Verdict, judge, settle
from tests.support.tcp_proxy import TcpProxy

WARMUP_S = 3.0
FAULT_S = 8.0  # how long a lasting fault (node down, partition, store full) lasts
KILL_INTERVAL_S = 3.0  # between two SIGKILLs of the repeated-kill scenarios
POST_HEAL_S = 5.0
SETTLE_TIMEOUT_S = 45.0
READY_TIMEOUT_S = 60.0
STORE_TMPFS_MB = 64
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
    notes: list[str] = field(default_factory=list)


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


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str
    inject: Callable[[Rig], Awaitable[None]]
    partition_api: bool = False  # hub-api reaches the nodes through proxies that can freeze
    store_on_tmpfs: bool = False  # the store on a small tmpfs that can be filled


SCENARIOS = [
    Scenario("stop-leader", f"stop the leader node for {FAULT_S:g} s, start it", stop_leader),
    Scenario("kill-leader", f"kill -9 the leader node, start it after {FAULT_S:g} s", kill_leader),
    Scenario("kill-consumers", "SIGKILL a consumer 4×, restart each at once", kill_consumers),
    Scenario("kill-api", "SIGKILL hub-api 3×, restart it at once", kill_api),
    Scenario(
        "partition-api",
        f"black-hole hub-api ↔ broker for {FAULT_S:g} s",
        partition_api,
        partition_api=True,
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
        hub = Hub(urls, store_url, log_dir, api_urls=api_urls or None)
        stack.callback(hub.close)
        await asyncio.to_thread(hub.start)
        rig = Rig(cluster, vhost, hub, proxies, store_dir)

        load, stop = Load(hub.api_url, orders_per_s), asyncio.Event()
        sending = asyncio.create_task(load.run(stop))
        stack.callback(sending.cancel)  # a fault that failed must not leave senders behind
        await asyncio.sleep(WARMUP_S)
        await scenario.inject(rig)
        healed_at = time.monotonic()
        ready = asyncio.create_task(asyncio.to_thread(_seconds_until_ready, hub, healed_at))
        await asyncio.sleep(POST_HEAL_S)
        stop.set()
        load_ended_at = time.monotonic()
        await sending
        ready_s = await ready

        store = open_store(store_url)
        connection = await aio_pika.connect(cluster.any_running().url(vhost))
        try:
            received = hub.endpoint.received
            await settle(load.sent, store, received, connection, RETRY_DELAYS_S, SETTLE_TIMEOUT_S)
            verdict = await judge(
                load.sent,
                store,
                received,
                connection,
                RETRY_DELAYS_S,
                healed_at=healed_at,
                ready_s=ready_s,
                load_ended_at=load_ended_at,
            )
        finally:
            await connection.close()
            await store.close()
    return verdict, rig.notes


def _seconds_until_ready(hub: Hub, since: float) -> float | None:
    deadline = since + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if hub.all_ready():
            return round(time.monotonic() - since, 2)
        time.sleep(0.2)
    return None
