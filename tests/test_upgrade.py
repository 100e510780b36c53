"""Upgrading loses nothing (#27). The previous release runs a hub with work in flight of every
kind: orders pending, a payment held for an order not yet created, a notification waiting in a
retry queue, one parked, deadlines set, and a backlog in the work queues of stopped consumers.
The current release then takes over the same vhost and SQLite store with only the documented
steps, and every event hub-api accepted (answered 202) has its effect exactly once.

And the way back: the current release refuses a store that a newer release's schema made."""

import asyncio
import base64
import json
import re
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
import pytest
from hookhub import specs, topology

from tests.support import releases
from tests.support.broker import fresh_vhost
from tests.support.net import free_port
from tests.support.notify_endpoint import NotifyEndpoint, Received
from tests.support.processes import HubProcess, wait_http_ready
from tests.support.releases import Release
from tests.support.senders import (
    create_order,
    new_order_id,
    post_event,
    post_stripe,
    stripe_event,
)
from tests.support.settings import GATEWAY_SECRET, hub_env

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"upgrade-test-secret").decode()
# The first delay outlasts stopping the previous release while a notification waits in its
# retry queue.
RETRY_DELAYS_S = (8, 3)
# Long enough that the pending orders are still pending when the current release takes over,
# short enough that the deadline the previous release set for one fires under the current one.
ORDER_PAYMENT_TIMEOUT_S = 40
FLAKY = "production.cancelled"  # refused with 503 once under each release, then delivered
REJECTED = "payment.mismatched"  # refused with 400 once: the previous release parks it
# The receiver's refusals: type → (its answer, to how many POSTs); anything else gets 200.
REFUSALS = {FLAKY: (503, 2), REJECTED: (400, 1)}
SHORT_AMOUNT = 1000  # of the 4990 an order costs (tests.support.senders): a mismatch
SETTLE_TIMEOUT_S = 60
QUIET_S = 2  # after everything arrived, how long a late repeat has to show up
CONSUMERS = specs.names()


@dataclass
class Hub:
    """One release's processes on the shared vhost and store, as an operator runs them."""

    release: Release
    env: dict[str, str]
    log_dir: Path
    api: HubProcess | None = None
    api_url: str = ""
    workers: list[HubProcess] = field(default_factory=list)  # the consumers and the indexer

    def start(self) -> "Hub":
        """`hookhub api`, `hookhub consume <name>` for each consumer and `hookhub index`; back
        once hub-api and every consumer answer /readyz."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.api = self.release.start(
            ["api", "--port", str(port)], self.env, self.log_dir / "api.log"
        )
        self.api_url = f"http://127.0.0.1:{port}"
        readiness = [(f"{self.api_url}/readyz", self.api)]
        for name in CONSUMERS:
            probe_port = free_port()
            consumer = self.release.start(
                ["consume", name, "--probe-port", str(probe_port)],
                self.env,
                self.log_dir / f"{name}.log",
            )
            self.workers.append(consumer)
            readiness.append((f"http://127.0.0.1:{probe_port}/readyz", consumer))
        self.workers.append(self.release.start(["index"], self.env, self.log_dir / "index.log"))
        for url, process in readiness:
            wait_http_ready(url, timeout_s=60, process=process)
        return self

    def stop_workers(self) -> None:
        """Stop the consumers and the indexer together (SIGTERM, as a deployment does)."""
        for process in self.workers:
            process.process.terminate()
        for process in self.workers:
            process.stop()

    def stop(self) -> None:
        self.stop_workers()
        if self.api is not None:
            self.api.stop()

    def logs(self) -> str:
        processes = [p for p in (self.api, *self.workers) if p is not None]
        return "\n".join(f"--- {p.log_path.name}\n{p.log[-3000:]}" for p in processes)

    def logged(self, consumer: str, what: str) -> list[dict]:
        """The JSON log lines of one kind (`event.retried`, ...) a consumer wrote."""
        log = (self.log_dir / f"{consumer}.log").read_text()
        lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == what]


class StoreReader:
    """The SQLite store, read-only, as `docs/saga.md`'s `state` helper reads it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rows(self, sql: str, *parameters: object) -> list[tuple]:
        if not self.path.exists():
            return []
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute(sql, parameters).fetchall()
        finally:
            db.close()

    def order(self, order_id: str) -> tuple[str, int] | None:
        """(status, version) of an order."""
        found = self.rows("select status, version from orders where order_id = ?", order_id)
        return found[0] if found else None

    def ticket(self, order_id: str) -> str | None:
        found = self.rows("select status from tickets where order_id = ?", order_id)
        return found[0][0] if found else None

    def states(self, order_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
        """Each order's (status, ticket status)."""
        return {o: ((self.order(o) or (None, 0))[0], self.ticket(o)) for o in order_ids}

    def processed_by(self, event_id: str) -> list[str]:
        """The consumers holding a processed-marker of this event (its key is `<source>#<id>`)."""
        rows = self.rows(
            "select consumer from markers where substr(event_key, -length(?)) = ?",
            f"#{event_id}",
            f"#{event_id}",
        )
        return sorted(consumer for (consumer,) in rows)

    def indexed(self, event_id: str) -> int:
        """How many times the event log's index holds this event."""
        return self.rows("select count(*) from events where id = ?", event_id)[0][0]


class Answers(dict[str, int]):
    """The receiver's answer by event type (`NotifyEndpoint.status_for_type`), where a type is
    refused only its first few times: `refusals` = {type: (status, how many times)}."""

    def __init__(self, refusals: dict[str, tuple[int, int]]) -> None:
        super().__init__()
        self.refusals = refusals
        self.asked: Counter[str] = Counter()
        self._lock = threading.Lock()

    def get(self, event_type: str, default: int | None = None) -> int | None:  # type: ignore[override]
        if event_type in self.refusals:
            status, times = self.refusals[event_type]
            with self._lock:
                self.asked[event_type] += 1
                if self.asked[event_type] <= times:
                    return status
        return super().get(event_type, default)


@dataclass
class Accepted:
    """An event hub-api answered 202 for."""

    id: str
    type: str
    order_id: str
    release: str  # which release's hub-api accepted it


@dataclass
class Upgrade:
    """What the scenario did, and what it saw at the handover, for the tests to judge."""

    amqp_url: str
    store: StoreReader
    endpoint: NotifyEndpoint
    orders: dict[str, tuple[str, str | None]]  # order id → expected (status, ticket)
    control_order: str  # created and paid under the current release alone
    expected_notifications: set[tuple[str, str]]  # (type, order id)
    accepted: list[Accepted]
    handover_depths: dict[str, int]
    topology_steps: list[str]  # the commands run between the releases
    parked_id: str
    dlq_list: str
    dlq_show: str
    dlq_replay: tuple[int, str]
    previous: Hub
    current: Hub
    logs: str = ""
    # The previous release's deadline queue: its depth right after the topology steps; the
    # steps run once it had drained; whether it was left then.
    deadlines_after_steps: dict[str, int] = field(default_factory=dict)
    final_steps: list[str] = field(default_factory=list)
    deadline_queue_left: bool = True


def delivered(upgrade: Upgrade) -> list[Received]:
    """The POSTs the receiver answered with 2xx: all but the first ones of a refused type (one
    event each, so its POSTs come one after the other)."""
    refusals_left = {event_type: times for event_type, (_, times) in REFUSALS.items()}
    accepted = []
    for received in list(upgrade.endpoint.received):
        event_type = received.json["type"]
        if refusals_left.get(event_type, 0) > 0:
            refusals_left[event_type] -= 1
        else:
            accepted.append(received)
    return accepted


def delivered_pairs(upgrade: Upgrade) -> list[tuple[str, str]]:
    return sorted((r.json["type"], r.json["data"].get("order_id")) for r in delivered(upgrade))


async def queue_depths(amqp_url: str, names: list[str]) -> dict[str, int]:
    """Messages ready in each queue (a passive declare: nothing is created)."""
    depths = {}
    connection = await aio_pika.connect(amqp_url)
    try:
        for name in names:
            async with connection.channel() as channel:
                queue = await channel.declare_queue(name, passive=True)
                depths[name] = queue.declaration_result.message_count
    finally:
        await connection.close()
    return depths


async def queue_exists(amqp_url: str, name: str) -> bool:
    connection = await aio_pika.connect(amqp_url)
    try:
        async with connection.channel() as channel:
            await channel.declare_queue(name, passive=True)
        return True
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        await connection.close()


async def arrived_in(amqp_url: str, queue: str, timeout_s: float = SETTLE_TIMEOUT_S) -> bool:
    """Whether a message arrived in `queue` within the time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await queue_depths(amqp_url, [queue]))[queue] > 0:
            return True
        await asyncio.sleep(0.1)
    return False


async def wait_for(check, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Whether `check()` came true within the time; the scenario records, the tests judge."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(check):
            return True
        await asyncio.sleep(interval_s)
    return False


def work_queues() -> list[str]:
    return [topology.work_queue(name) for name in CONSUMERS]


def failure_queues() -> list[str]:
    return [
        *(topology.retry_queue(name, d) for name in CONSUMERS for d in RETRY_DELAYS_S),
        *(topology.dead_letter_queue(name) for name in CONSUMERS),
    ]


# The previous release's one deadline queue per type (per-message TTLs): drained in place by the
# current release, which has one queue per duration.
ORDER_DEADLINES = topology.legacy_deadline_queue("payments", "deadline.order_payment")


@pytest.fixture(scope="session")
def previous_release() -> Release:
    """The previous release, built from git history once and cached in `.cache/releases/`."""
    try:
        return releases.built(releases.PREVIOUS_RELEASE)
    except releases.ReleaseUnavailable as exc:
        pytest.fail(str(exc))


def topology_upgrade_steps(current: Release, env: dict[str, str]) -> list[str]:
    """The documented topology step between releases, where the current release has one:
    `hookhub topology plan`, then `hookhub topology apply --yes`. The commands run, each with
    its exit status and output."""
    if "apply" not in current.cli("topology", "--help", env=env).stdout:
        return []
    ran = []
    for args in (("topology", "plan"), ("topology", "apply", "--yes")):
        result = current.cli(*args, env=env)
        ran.append(
            f"hookhub {' '.join(args)} → {result.returncode}\n{result.stdout}{result.stderr}"
        )
    return ran


@pytest.fixture(scope="module")
async def upgrade(
    previous_release: Release, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Upgrade]:
    tmp = tmp_path_factory.mktemp("upgrade")
    store = StoreReader(tmp / "hookhub.db")
    endpoint = NotifyEndpoint()
    endpoint.status_for_type = Answers(REFUSALS)
    current = releases.current()
    accepted: list[Accepted] = []

    def accept(response: httpx.Response, order_id: str, release: Release) -> None:
        body = response.json()
        accepted.append(Accepted(body["id"], body["type"], order_id, release.name))

    async def pay(client: httpx.AsyncClient, order_id: str, release: Release, **kw) -> None:
        accept(await post_stripe(client, stripe_event(order_id, **kw)), order_id, release)

    async def create(client: httpx.AsyncClient, order_id: str, release: Release) -> None:
        accept(await create_order(client, order_id), order_id, release)

    async def finish(client: httpx.AsyncClient, order_id: str, release: Release) -> None:
        data = {"order_id": order_id}
        accept(await post_event(client, "production.finished", data), order_id, release)

    def client(hub: Hub) -> httpx.AsyncClient:
        headers = {"x-hookhub-gateway-secret": GATEWAY_SECRET, "x-consumer-username": "storefront"}
        return httpx.AsyncClient(base_url=hub.api_url, headers=headers, timeout=10)

    ready, refunded, short, pay_later, expiring, early, backlog, control = (
        new_order_id() for _ in range(8)
    )
    orders = {
        ready: ("approved", "ready"),  # finished while the consumers were down
        refunded: ("refunded", "cancelled"),  # its cancellation notified across the upgrade
        short: ("mismatched", None),  # its notification parked by the previous release
        pay_later: ("approved", "queued"),  # pending; its payment waited in the backlog
        expiring: ("expired", None),  # pending; the previous release's deadline fires later
        early: ("approved", "queued"),  # paid before its order: held across the upgrade
        backlog: ("approved", "queued"),  # created and paid while the consumers were down
        control: ("approved", "queued"),  # the current release alone
    }
    expected_notifications = {
        *(("payment.approved", o) for o in (ready, refunded, pay_later, early, backlog, control)),
        ("order.ready", ready),
        ("payment.refunded", refunded),
        (FLAKY, refunded),
        (REJECTED, short),
        ("order.expired", expiring),
    }
    with fresh_vhost() as amqp_url:
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=f"sqlite:///{store.path}",
            HOOKHUB_NOTIFY_URL=endpoint.url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
            HOOKHUB_RETRY_DELAYS=",".join(map(str, RETRY_DELAYS_S)),
            HOOKHUB_ORDER_PAYMENT_TIMEOUT_S=str(ORDER_PAYMENT_TIMEOUT_S),
        )
        old = Hub(previous_release, env, tmp / "previous")
        new = Hub(current, env, tmp / "current")
        try:
            # The previous release at work.
            await asyncio.to_thread(old.start)
            async with client(old) as api:
                await create(api, expiring, previous_release)  # first: it expires soonest
                await pay(api, early, previous_release)  # before its order: held
                for order_id in (ready, refunded, short):
                    await create(api, order_id, previous_release)
                await pay(api, ready, previous_release)
                await pay(api, refunded, previous_release)
                await pay(api, short, previous_release, amount=SHORT_AMOUNT)
                await wait_for(
                    lambda: (
                        store.states([ready, refunded, short, early])
                        == {
                            ready: ("approved", "queued"),
                            refunded: ("approved", "queued"),
                            short: ("mismatched", None),
                            early: ("held", None),
                        }
                    ),
                    timeout_s=SETTLE_TIMEOUT_S,
                )
                # Last before the consumers stop, so that its deadline is far off when it is paid.
                await create(api, pay_later, previous_release)
                await pay(api, refunded, previous_release, type="charge.refunded")
                # The notification of the refund's cancellation fails once and waits to be
                # retried; the mismatch's is parked.
                await arrived_in(amqp_url, topology.retry_queue("notifications", RETRY_DELAYS_S[0]))
                await arrived_in(amqp_url, topology.dead_letter_queue("notifications"))
                old.stop_workers()
                # What the failures and the deadlines left, before a retry comes back to the
                # work queue (its delay is longer than this takes).
                waiting = await queue_depths(amqp_url, [*failure_queues(), ORDER_DEADLINES])
                # A backlog: accepted while no consumer runs.
                await finish(api, ready, previous_release)
                await pay(api, pay_later, previous_release)
                await create(api, backlog, previous_release)
                await pay(api, backlog, previous_release)
            old.stop()
            handover_depths = {**waiting, **await queue_depths(amqp_url, work_queues())}

            # The current release takes over, with the documented steps only.
            topology_steps = await asyncio.to_thread(topology_upgrade_steps, current, env)
            deadlines_after_steps = await queue_depths(amqp_url, [ORDER_DEADLINES])
            await asyncio.to_thread(new.start)
            async with client(new) as api:
                await create(api, early, current)
                await create(api, control, current)
                await pay(api, control, current)

            # The parked notification, found and replayed with the current release's commands.
            parked = endpoint.of(REJECTED, short)
            parked_id = parked[0].headers["webhook-id"] if parked else ""
            dlq_list = current.cli("dlq", "list", "notifications", env=env)
            dlq_show = current.cli("dlq", "show", "notifications", parked_id, env=env)
            replay = current.cli("dlq", "replay", "notifications", "--id", parked_id, env=env)

            upgrade = Upgrade(
                amqp_url=amqp_url,
                store=store,
                endpoint=endpoint,
                orders=orders,
                control_order=control,
                expected_notifications=expected_notifications,
                accepted=accepted,
                handover_depths=handover_depths,
                topology_steps=topology_steps,
                deadlines_after_steps=deadlines_after_steps,
                parked_id=parked_id,
                dlq_list=dlq_list.stdout + dlq_list.stderr,
                dlq_show=dlq_show.stdout + dlq_show.stderr,
                dlq_replay=(replay.returncode, replay.stdout + replay.stderr),
                previous=old,
                current=new,
            )
            # Settled: every notification the saga owes was delivered and the expiring order
            # expired; then a quiet moment for a late repeat to show.
            await wait_for(
                lambda: (
                    set(delivered_pairs(upgrade)) >= expected_notifications
                    and store.states(list(orders)) == orders
                ),
                SETTLE_TIMEOUT_S,
            )
            await asyncio.sleep(QUIET_S)
            # The previous release's deadline queue drains by itself (the last deadline in it
            # expires ORDER_PAYMENT_TIMEOUT_S after it was set); the next apply removes it.
            drained_by = time.monotonic() + ORDER_PAYMENT_TIMEOUT_S + SETTLE_TIMEOUT_S
            while time.monotonic() < drained_by:
                if (await queue_depths(amqp_url, [ORDER_DEADLINES]))[ORDER_DEADLINES] == 0:
                    break
                await asyncio.sleep(0.5)
            upgrade.final_steps = await asyncio.to_thread(topology_upgrade_steps, current, env)
            upgrade.deadline_queue_left = await queue_exists(amqp_url, ORDER_DEADLINES)
            upgrade.logs = old.logs() + "\n" + new.logs()
            yield upgrade
        finally:
            new.stop()
            old.stop()
            endpoint.close()


def test_the_handover_has_work_in_flight_in_every_kind_of_queue(upgrade):
    depths = upgrade.handover_depths
    assert depths[topology.retry_queue("notifications", RETRY_DELAYS_S[0])] == 1, depths
    assert depths[topology.dead_letter_queue("notifications")] == 1, depths
    assert depths[topology.work_queue("payments")] == 3, depths  # a payment, an order, its payment
    assert depths[topology.work_queue("production")] == 1, depths  # production.finished
    assert depths[ORDER_DEADLINES] >= 1, depths
    by_release = {a.release for a in upgrade.accepted}
    assert by_release == {releases.PREVIOUS_RELEASE, "current"}


def test_the_topology_steps_between_the_releases_succeed(upgrade):
    if not upgrade.topology_steps:
        pytest.skip("no `hookhub topology apply` in this release: the upgrade is starting it")
    assert all(" → 0\n" in step for step in upgrade.topology_steps), upgrade.topology_steps


def test_the_previous_releases_deadlines_drain_in_place_then_their_queue_is_removed(upgrade):
    """Its one queue per type is no longer this release's: `topology apply` leaves its
    deadlines to expire on time (moved to the work queue they would all fire at once), and
    removes it once they have."""
    if not upgrade.topology_steps:
        pytest.skip("no `hookhub topology apply` in this release: the upgrade is starting it")
    after = upgrade.deadlines_after_steps
    # Still pending (the last one set has most of its time left): none was moved out.
    assert after[ORDER_DEADLINES] >= 1, (after, upgrade.topology_steps)
    assert f"drain   {ORDER_DEADLINES} (" in upgrade.topology_steps[0], upgrade.topology_steps
    assert all(" → 0\n" in step for step in upgrade.final_steps), upgrade.final_steps
    assert not upgrade.deadline_queue_left, upgrade.final_steps


def test_every_order_reaches_its_state_in_the_store(upgrade):
    assert upgrade.store.states(list(upgrade.orders)) == upgrade.orders, upgrade.logs


def test_an_order_carried_across_the_upgrade_ends_as_one_the_current_release_handled_alone(
    upgrade,
):
    """Same status, same version: no step applied twice, none skipped."""
    control = upgrade.store.order(upgrade.control_order)
    approved = [o for o, (status, _) in upgrade.orders.items() if status == "approved"]
    assert {o: upgrade.store.order(o) for o in approved} == dict.fromkeys(approved, control)


def test_every_notification_owed_is_delivered_exactly_once(upgrade):
    assert delivered_pairs(upgrade) == sorted(upgrade.expected_notifications), upgrade.logs


def test_the_receiver_gets_each_webhook_id_once(upgrade):
    ids = [r.headers["webhook-id"] for r in delivered(upgrade)]
    assert len(ids) == len(set(ids)) == len(upgrade.expected_notifications)


def test_a_retry_keeps_its_attempt_count_across_the_upgrade(upgrade):
    """Refused once under each release: the current release counts the previous one's attempt
    (the count rides on the message), and its next retry delivers."""
    posts = upgrade.endpoint.of(FLAKY)
    [event_id] = {post.headers["webhook-id"] for post in posts}

    def retried(hub: Hub) -> list[int]:
        lines = hub.logged("notifications", "event.retried")
        return [line["attempts"] for line in lines if line["event_id"] == event_id]

    assert (retried(upgrade.previous), retried(upgrade.current)) == ([1], [2])
    assert len(posts) == 3 and posts[-1] in delivered(upgrade)


def test_the_parked_message_is_listed_by_the_current_release(upgrade):
    assert upgrade.parked_id, "the receiver never got the notification that was to be parked"
    assert upgrade.parked_id in upgrade.dlq_list, upgrade.dlq_list
    assert "notification endpoint answered 400" in upgrade.dlq_show, upgrade.dlq_show


def test_the_parked_message_replays_with_the_current_release(upgrade):
    returncode, output = upgrade.dlq_replay
    assert returncode == 0, output
    assert "replayed 1 message(s) to hookhub.notifications" in output
    [replayed] = [r for r in delivered(upgrade) if r.json["type"] == REJECTED]
    assert replayed.headers["webhook-id"] == upgrade.parked_id


def test_every_accepted_event_is_processed_by_each_consumer_bound_to_it(upgrade):
    def bound(event_type: str) -> list[str]:
        return sorted(
            spec.name
            for spec in specs.installed()
            if any(topology.binding_matches(b, event_type) for b in spec.bindings)
        )

    processed = {a.id: upgrade.store.processed_by(a.id) for a in upgrade.accepted}
    assert processed == {a.id: bound(a.type) for a in upgrade.accepted}, upgrade.logs


async def test_every_accepted_event_is_in_the_event_log_once(upgrade):
    def all_indexed_once() -> bool:
        return all(upgrade.store.indexed(a.id) == 1 for a in upgrade.accepted)

    await wait_for(all_indexed_once, timeout_s=20)
    assert {a.id: upgrade.store.indexed(a.id) for a in upgrade.accepted} == {
        a.id: 1 for a in upgrade.accepted
    }


async def test_no_work_queue_retry_queue_or_parking_lot_keeps_a_message(upgrade):
    names = [*work_queues(), *failure_queues(), topology.UNROUTED_QUEUE]
    assert await queue_depths(upgrade.amqp_url, names) == dict.fromkeys(names, 0)


# ---- the way back ---------------------------------------------------------------------------

NEWER_SCHEMA_MESSAGE = re.compile(
    r"store schema is version (\d+), newer than this release's (\d+): "
    r"run the newer release, or restore"
)


# Which component's schema it refused: the message begins with its name.
REFUSED_COMPONENT = re.compile(r"([\w.-]+): store schema is version")


def record_a_newer_schema(db: Path) -> dict[str, int]:
    """Make the store look like a newer release's: every component's recorded schema version,
    plus one. Returns component → the version it now records."""
    connection = sqlite3.connect(db)
    try:
        with connection:
            connection.execute("update schema_versions set version = version + 1")
        return dict(connection.execute("select component, version from schema_versions"))
    finally:
        connection.close()


@pytest.fixture
def fresh_store(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    """A store the current release made (a consumer ran on it once), and the environment."""
    db = tmp_path / "hookhub.db"
    with fresh_vhost() as amqp_url:
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=f"sqlite:///{db}")
        probe_port = free_port()
        consumer = releases.current().start(
            ["consume", "payments", "--probe-port", str(probe_port)], env, tmp_path / "first.log"
        )
        try:
            wait_http_ready(f"http://127.0.0.1:{probe_port}/readyz", process=consumer)
        finally:
            consumer.stop()
        yield env, db


@pytest.mark.parametrize(
    "command",
    [
        ["consume", "payments"],
        ["index"],
        ["operator", "--port", "{port}"],
        ["dev", "--port", "{port}", "--operator-port", "{port}"],
    ],
    ids=lambda command: command[0],
)
def test_the_current_release_refuses_a_store_a_newer_release_made(fresh_store, command, tmp_path):
    env, db = fresh_store
    env = {**env, "HOOKHUB_OPERATOR_CSRF_KEY": "k" * 64}  # else the operator stops before
    newer = record_a_newer_schema(db)
    command = [arg.format(port=free_port()) for arg in command]  # should it start after all
    process = releases.current().start(command, env, tmp_path / "refused.log")
    try:
        returncode = process.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        returncode = None
    finally:
        process.stop()
    assert returncode not in (None, 0), f"{' '.join(command)} started:\n{process.log[-2000:]}"
    found = NEWER_SCHEMA_MESSAGE.search(process.log)
    assert found, process.log[-2000:]
    [component] = set(REFUSED_COMPONENT.findall(process.log))
    assert (int(found[1]), int(found[2])) == (newer[component], newer[component] - 1)
