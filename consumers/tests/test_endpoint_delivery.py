"""Outbound endpoints, delivered for real: `hookhub consume notifications` running as a process
on a private vhost, endpoints added with `hookhub endpoints add` while it runs (so each test
also shows a running worker picking up a new endpoint without a restart), local receivers."""

import asyncio
import base64
import json
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest
import standardwebhooks
from hookhub import topology
from hookhub.events import EXCHANGE, Event
from hookhub.settings import Settings
from hookhub_endpoints.attempts import attempts_to

from tests.support.broker import fresh_vhost
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import HubProcess, running_consumer
from tests.support.settings import hub_env

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"endpoint-delivery-shorthand-secret").decode()


@dataclass
class Hub:
    amqp_url: str
    env: dict[str, str]
    consumer: HubProcess
    shorthand: NotifyEndpoint
    tmp: Path

    def endpoints(self, *args: str) -> dict:
        """`hookhub endpoints <args> --json`, as a person would run it, its JSON answer."""
        done = subprocess.run(
            [sys.executable, "-m", "hookhub.cli", "endpoints", *args, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return json.loads(done.stdout)

    def add(self, receiver: NotifyEndpoint, types: str, *options: str) -> dict:
        name = f"ep-{uuid.uuid4().hex[:8]}"
        added = self.endpoints(
            "add", "--name", name, "--url", receiver.url, "--types", types, *options
        )
        return added

    async def publish(self, *events: Event) -> None:
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(EXCHANGE)
            for event in events:
                await exchange.publish(event.to_message(), event.routing_key)

    async def depth(self, queue: str) -> int:
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            declared = await (await connection.channel()).declare_queue(queue, passive=True)
            return declared.declaration_result.message_count


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("endpoints")
    shorthand = NotifyEndpoint()
    with fresh_vhost() as amqp_url:
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=f"sqlite:///{tmp}/hookhub.db",
            HOOKHUB_NOTIFY_URL=shorthand.url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
            HOOKHUB_ENDPOINT_BREAKER_FAILURES="3",
            HOOKHUB_ENDPOINT_BREAKER_OVER_S="0",
            HOOKHUB_ENDPOINT_PROBE_EVERY_S="1",
        )
        with running_consumer("notifications", env, tmp) as consumer:
            yield Hub(amqp_url, env, consumer, shorthand, tmp)
    shorthand.close()


def an_event(type: str) -> Event:
    return Event(
        id=f"ev-{uuid.uuid4().hex[:10]}", source="/events/tests", type=type, data=b'{"n": 1}'
    )


async def until(condition, timeout_s: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def ids(receiver: NotifyEndpoint) -> list[str]:
    return [r.headers["webhook-id"] for r in receiver.received]


async def test_a_slow_endpoint_does_not_delay_a_fast_one(hub: Hub) -> None:
    slow, fast = NotifyEndpoint(), NotifyEndpoint()
    slow.delay_s = 5.0
    try:
        hub.add(slow, "ci.isolation", "--max-in-flight", "2")
        hub.add(fast, "ci.isolation")
        await asyncio.sleep(3)  # the worker reads the registry every 2 s
        events = [an_event("ci.isolation") for _ in range(20)]
        await hub.publish(*events)
        await until(lambda: len(fast.received) >= 20, what="the fast endpoint's 20")
        # The slow one answers 2 at a time, 5 s each: it has had at most its first 2-4.
        assert len(slow.received) <= 4
        assert set(ids(fast)) == {e.id for e in events}
    finally:
        slow.close()
        fast.close()


async def test_an_endpoint_answering_in_11_s_is_posted_once_and_never_parked(hub: Hub) -> None:
    receiver = NotifyEndpoint()
    receiver.delay_s = 11.0
    try:
        added = hub.add(receiver, "ci.slow-answer")
        await asyncio.sleep(3)
        event = an_event("ci.slow-answer")
        await hub.publish(event)
        await until(lambda: receiver.received, what="the POST")
        await asyncio.sleep(20)  # past the answer and a retry's 5 s, had there been one
        assert ids(receiver) == [event.id]
        owner = topology.endpoint_owner(added["name"])
        assert await hub.depth(topology.dead_letter_queue(owner)) == 0
    finally:
        receiver.close()


async def test_the_shorthand_endpoint_answering_in_11_s_is_posted_once(hub: Hub) -> None:
    """HOOKHUB_NOTIFY_URL with its default timeout: a receiver that takes 11 s is not cut off
    at 10 s into a retry (a second POST) and in the end a false 'parked'."""
    hub.shorthand.delay_for_type["ci.shorthand-slow"] = 11.0
    event = an_event("ci.shorthand-slow")
    await hub.publish(event)
    await until(lambda: event.id in ids(hub.shorthand), what="the POST")
    await asyncio.sleep(20)
    assert ids(hub.shorthand).count(event.id) == 1
    assert await hub.depth(topology.dead_letter_queue("notifications")) == 0


async def test_retry_after_sends_the_retry_to_the_queue_that_waits_at_least_that_long(
    hub: Hub,
) -> None:
    receiver = NotifyEndpoint()
    receiver.status_for_type["ci.busy"] = 429
    receiver.headers_for_type["ci.busy"] = {"retry-after": "200"}
    try:
        added = hub.add(receiver, "ci.busy")
        await asyncio.sleep(3)
        event = an_event("ci.busy")
        await hub.publish(event)
        await until(lambda: receiver.received, what="the POST")
        waiting = topology.retry_queue(topology.endpoint_owner(added["name"]), 300.0)
        connection = await aio_pika.connect(hub.amqp_url)
        async with connection:
            queue = await (await connection.channel()).get_queue(waiting)
            for _ in range(100):
                if message := await queue.get(fail=False, no_ack=True):
                    break
                await asyncio.sleep(0.1)
        assert message is not None and message.message_id == event.id
        # Not sooner than asked: its own wait is within [200 s, 300 s].
        assert message.expiration is None or 200 <= float(message.expiration) <= 300
    finally:
        receiver.close()


async def test_the_shorthand_endpoint_honours_retry_after(hub: Hub) -> None:
    hub.shorthand.status_for_type["ci.shorthand-busy"] = 503
    hub.shorthand.headers_for_type["ci.shorthand-busy"] = {"retry-after": "200"}
    event = an_event("ci.shorthand-busy")
    await hub.publish(event)
    await until(lambda: event.id in ids(hub.shorthand), what="the POST")
    longest = topology.retry_queue("notifications", 300.0)  # the settings' 5, 30, 300
    for _ in range(100):
        if await hub.depth(longest):
            break
        await asyncio.sleep(0.1)
    assert await hub.depth(longest) == 1


async def test_max_in_flight_and_rate_are_respected(hub: Hub) -> None:
    limited, paced = NotifyEndpoint(), NotifyEndpoint()
    limited.delay_s = 0.5
    try:
        hub.add(limited, "ci.limits", "--max-in-flight", "3")
        hub.add(paced, "ci.limits", "--rate", "5")
        await asyncio.sleep(3)
        await hub.publish(*(an_event("ci.limits") for _ in range(12)))
        await until(lambda: len(limited.received) == 12 and len(paced.received) == 12)
        assert limited.most_in_flight == 3
        # 12 starts at 5 a second: 11 gaps of 0.2 s at least.
        arrivals = [r.at for r in paced.received]
        assert arrivals[-1] - arrivals[0] >= 11 * 0.2 * 0.95
    finally:
        limited.close()
        paced.close()


async def test_a_rotated_secret_signs_with_both_secrets_during_the_overlap(hub: Hub) -> None:
    receiver = NotifyEndpoint()
    try:
        added = hub.add(receiver, "ci.rotation")
        rotated = hub.endpoints("rotate-secret", added["name"], "--overlap", "3600")
        await asyncio.sleep(3)
        await hub.publish(an_event("ci.rotation"))
        await until(lambda: receiver.received, what="the POST")
        got = receiver.received[0]
        assert len(got.headers["webhook-signature"].split(" ")) == 2
        for secret in (added["secret"], rotated["secret"]):
            standardwebhooks.Webhook(secret).verify(got.body, got.headers)
    finally:
        receiver.close()


async def about(
    queue: aio_pika.abc.AbstractQueue, endpoint: str
) -> aio_pika.abc.AbstractIncomingMessage:
    """The next message on `queue` about `endpoint`: the hub is shared with other tests, whose
    endpoints may be paused or resumed meanwhile."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.1)
        elif json.loads(message.body)["endpoint"] == endpoint:
            return message
    raise AssertionError(f"no endpoint event about {endpoint} within 10 s")


async def test_a_failing_endpoint_is_paused_then_resumed_by_a_probe_with_events(
    hub: Hub,
) -> None:
    receiver = NotifyEndpoint()
    receiver.status_for_type["ci.breaker"] = 500
    connection = await aio_pika.connect(hub.amqp_url)
    try:
        channel = await connection.channel()
        heard = await channel.declare_queue(exclusive=True)
        await heard.bind(await channel.get_exchange(EXCHANGE), "endpoint.*")
        added = hub.add(receiver, "ci.breaker")
        name = added["name"]
        await asyncio.sleep(3)
        await hub.publish(*(an_event("ci.breaker") for _ in range(4)))
        await until(lambda: hub.endpoints("show", name)["state"] == "paused", what="the pause")
        # POSTs before the pause (the receiver's clock is monotonic; the audit's is UTC): after
        # it, only probes, one a second, however long the polling above took to see it.
        changes = hub.endpoints("show", name)["changes"]
        paused_at = datetime.fromisoformat(changes[0]["at"]).timestamp()
        offset_s = time.time() - time.monotonic()
        seen_while_failing = sum(1 for r in receiver.received if r.at + offset_s < paused_at)
        disabled = await about(heard, name)
        assert disabled.headers["cloudEvents:type"] == "endpoint.disabled"

        receiver.status_for_type.pop("ci.breaker")  # it is back: the next probe gets through
        await until(lambda: hub.endpoints("show", name)["state"] == "active", 30, "the resume")
        recovered = await about(heard, name)
        assert recovered.headers["cloudEvents:type"] == "endpoint.recovered"
        assert seen_while_failing <= 4  # paused at once: no burst of attempts while failing
        audit = [c["actor"] for c in hub.endpoints("show", name)["changes"]]
        assert audit[:2] == ["circuit-breaker", "circuit-breaker"]
    finally:
        await connection.close()
        receiver.close()


async def test_a_worker_killed_right_after_the_post_sends_again_only_with_the_same_id(
    tmp_path: Path,
) -> None:
    """What is promised (docs/notifications.md): not that a kill between the receiver's 2xx and
    its recording never repeats the POST, but that a repeat carries the same webhook-id (which
    the receiver drops), and that the delivery is then done: not parked, not sent a third time."""
    receiver = NotifyEndpoint()
    with fresh_vhost() as amqp_url:
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/hookhub.db")
        with running_consumer("notifications", env, tmp_path) as first:
            hub = Hub(amqp_url, env, first, receiver, tmp_path)
            added = hub.add(receiver, "ci.killed")
            await asyncio.sleep(3)
            event = an_event("ci.killed")
            await hub.publish(event)
            await until(lambda: receiver.received, what="the first POST")
            first.process.kill()  # SIGKILL as soon as the receiver has the POST
            first.process.wait()
        with running_consumer("notifications", env, tmp_path):
            await asyncio.sleep(8)  # a redelivery comes at once; a retry after 5 s
            owner = topology.endpoint_owner(added["name"])
            parked = await hub.depth(topology.dead_letter_queue(owner))
            waiting = await hub.depth(topology.endpoint_queue(added["name"]))
    receiver.close()
    assert set(ids(receiver)) == {event.id}
    assert 1 <= len(receiver.received) <= 2
    assert parked == 0 and waiting == 0


async def test_a_refused_delivery_is_parked_in_the_endpoints_own_lot_and_listed(hub: Hub) -> None:
    receiver = NotifyEndpoint()
    receiver.status_for_type["ci.refused"] = 400
    try:
        added = hub.add(receiver, "ci.refused")
        await asyncio.sleep(3)
        event = an_event("ci.refused")
        await hub.publish(event)
        owner = topology.endpoint_owner(added["name"])
        await until(lambda: receiver.received, what="the POST")
        for _ in range(100):
            if await hub.depth(topology.dead_letter_queue(owner)):
                break
            await asyncio.sleep(0.1)
        assert len(receiver.received) == 1  # a 4xx is permanent: no retry
        listed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "hookhub.cli", "dlq", "list", owner],
            env={**hub.env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert event.id in listed.stdout and "answered 400" in listed.stdout
    finally:
        receiver.close()


async def test_resend_posts_a_delivered_event_again_with_the_same_id(tmp_path: Path) -> None:
    receiver = NotifyEndpoint()
    with fresh_vhost() as amqp_url:
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/hookhub.db")
        with running_consumer("notifications", env, tmp_path) as consumer:
            indexer = HubProcess(["index"], env, tmp_path / "index.log")
            try:
                hub = Hub(amqp_url, env, consumer, receiver, tmp_path)
                added = hub.add(receiver, "ci.resent")
                await asyncio.sleep(3)
                event = an_event("ci.resent")
                await hub.publish(event)
                await until(lambda: receiver.received, what="the delivery")
                for _ in range(100):  # the indexer writes in batches
                    done = await asyncio.to_thread(
                        subprocess.run,
                        [sys.executable, "-m", "hookhub.cli", "endpoints", "resend",
                         added["name"], "--event", event.id, "--json"],
                        env=env, capture_output=True, text=True, timeout=60,
                    )  # fmt: skip
                    if done.returncode == 0:
                        break
                    await asyncio.sleep(0.3)
                assert done.returncode == 0, done.stderr
                await until(lambda: len(receiver.received) == 2, what="the resend")
                # An event of a type it does not take is refused, not delivered to it.
                other = an_event("ci.elsewhere")
                await hub.publish(other)
                for _ in range(100):
                    refused = await asyncio.to_thread(
                        subprocess.run,
                        [sys.executable, "-m", "hookhub.cli", "endpoints", "resend",
                         added["name"], "--event", other.id],
                        env=env, capture_output=True, text=True, timeout=60,
                    )  # fmt: skip
                    if "no event" not in refused.stderr:  # indexed by now
                        break
                    await asyncio.sleep(0.3)
                shown = await asyncio.to_thread(hub.endpoints, "show", added["name"])
            finally:
                indexer.stop()
    receiver.close()
    assert ids(receiver) == [event.id, event.id]
    assert refused.returncode != 0
    assert "ci.elsewhere, which this endpoint does not take" in " ".join(refused.stderr.split())
    # Who resent what, in the endpoint's audit (the operator's endpoint page shows the same).
    latest = shown["changes"][0]
    assert latest["action"] == f"resend {event.id}" and latest["actor"].startswith("cli:")


def hold_the_store(path: Path, released: threading.Event, held: threading.Event) -> None:
    """Another process's long write transaction on the store's file (a payments group commit
    stuck on a slow disk): BEGIN IMMEDIATE, held until `released` (at most 9 s, under the
    writers' 10 s busy timeout)."""
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        held.set()
        released.wait(9)
        db.execute("ROLLBACK")
    finally:
        db.close()


async def test_an_attempts_outcome_is_recorded_while_the_store_is_held_by_another_writer(
    hub: Hub,
) -> None:
    """The attempt is recorded before the POST and its outcome after: neither waits behind
    another consumer's write on the store's file, so a kill right after the POST does not find
    the outcome still queued behind that writer."""
    receiver = NotifyEndpoint()
    released, held = threading.Event(), threading.Event()
    holder = threading.Thread(
        target=hold_the_store, args=(hub.tmp / "hookhub.db", released, held), daemon=True
    )
    try:
        added = hub.add(receiver, "lock.held")
        await asyncio.sleep(3)
        since = datetime.now(UTC)
        holder.start()
        assert await asyncio.to_thread(held.wait, 10), "the store's write lock was not taken"
        event = an_event("lock.held")
        await hub.publish(event)
        settings = Settings(store_url=hub.env["HOOKHUB_STORE_URL"])
        delivered = []
        while holder.is_alive() and not delivered:
            attempts = await attempts_to(settings, added["name"], added["url"], since)
            delivered = [a for a in attempts if a.event_id == event.id and a.delivered]
            await asyncio.sleep(0.05)
        still_held = holder.is_alive()
        assert delivered and still_held, "the outcome waited for the store's writer"
        assert ids(receiver) == [event.id]
    finally:
        released.set()
        holder.join(10)
        receiver.close()


async def test_two_endpoints_at_one_url_each_deliver_and_count_their_own(hub: Hub) -> None:
    """Attempts are the endpoint's by name: another endpoint's 2xx at the same URL is not this
    one's delivery, nor in its stats."""
    receiver = NotifyEndpoint()
    try:
        first = hub.add(receiver, "ci.shared-url")
        second = hub.add(receiver, "ci.shared-url")
        hub.endpoints("disable", second["name"])  # its copy waits in its queue
        await asyncio.sleep(3)
        event = an_event("ci.shared-url")
        await hub.publish(event)
        await until(lambda: receiver.received, what="the first endpoint's POST")
        await asyncio.sleep(1)  # its outcome recorded
        hub.endpoints("enable", second["name"])  # the second's delivery is its own, not done
        await until(lambda: len(receiver.received) >= 2, what="the second endpoint's POST")
        await asyncio.sleep(1)  # time for a wrong third
        shown = [await asyncio.to_thread(hub.endpoints, "show", e["name"]) for e in (first, second)]
    finally:
        receiver.close()
    assert ids(receiver) == [event.id, event.id]
    assert [(s["stats"]["attempts"], s["stats"]["delivered"]) for s in shown] == [(1, 1), (1, 1)]
