"""The messages a consumer has in hand are handled together: their writes are committed as a
group, yet each message succeeds or fails alone, one order's events apply in the order they came,
and neither a kill nor a store outage in the middle loses or doubles an effect."""

import asyncio
import json
import signal
import sqlite3
import time
import uuid

import aio_pika
from hookhub import topology
from hookhub.events import EXCHANGE, Event
from hookhub_consumers.production.records import tickets
from hookhub_consumers.store import open_store

from tests.support.broker import fresh_vhost
from tests.support.processes import running_consumer, start_consumer, wait_http_ready
from tests.support.settings import hub_env


def production_event(event_type: str, order_id: str, **data) -> Event:
    return Event(
        id=f"{event_type}-{order_id}-{uuid.uuid4().hex[:6]}",
        source="/consumers/payments",
        type=event_type,
        data=json.dumps({"order_id": order_id, **data}).encode(),
        subject=order_id,
    )


async def publish_all(channel: aio_pika.abc.AbstractChannel, events: list[Event]) -> None:
    exchange = await channel.get_exchange(EXCHANGE)
    for event in events:
        await exchange.publish(event.to_message(), event.routing_key)


async def follow_ups(channel: aio_pika.abc.AbstractChannel) -> aio_pika.abc.AbstractQueue:
    """A queue that receives every event the production consumer emits."""
    queue = await channel.declare_queue(exclusive=True)
    for key in ("production.queued", "production.cancelled", "order.ready"):
        await queue.bind(await channel.get_exchange(EXCHANGE), key)
    return queue


async def drain(queue: aio_pika.abc.AbstractQueue, quiet_s: float = 1.0) -> list:
    """Every message on the queue until none arrived for `quiet_s`."""
    got, last = [], time.monotonic()
    while time.monotonic() - last < quiet_s:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        got.append(message)
        last = time.monotonic()
    return got


async def stored_tickets(store_url: str, order_ids: list[str]) -> dict:
    store = open_store(store_url)
    try:
        found = {order_id: await tickets(store).get(order_id) for order_id in order_ids}
    finally:
        await store.close()
    return {k: (v.status, v.version) for k, v in found.items() if v is not None}


async def until_tickets(store_url: str, order_ids: list[str], timeout_s: float = 30) -> dict:
    deadline = time.monotonic() + timeout_s
    while len(found := await stored_tickets(store_url, order_ids)) < len(order_ids):
        assert time.monotonic() < deadline, f"{len(found)} of {len(order_ids)} tickets"
        await asyncio.sleep(0.2)
    return found


async def test_one_failing_message_is_parked_alone_and_its_neighbours_are_done(tmp_path):
    store_url = f"sqlite:///{tmp_path}/hookhub.db"
    orders = [f"o-{i}" for i in range(20)]
    events = [production_event("payment.approved", order_id) for order_id in orders]
    broken = Event(id="broken-1", source="/tests", type="payment.approved", data=b"{}")
    events.insert(10, broken)  # no order_id: a permanent failure in the middle of the batch
    with fresh_vhost() as amqp_url:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare(channel, (0.2,), 20)
            await publish_all(channel, events)  # all in hand at once when the consumer starts
            with running_consumer(
                "production", hub_env(amqp_url, HOOKHUB_STORE_URL=store_url), tmp_path
            ):
                found = await until_tickets(store_url, orders)
                await asyncio.sleep(0.5)
                dlq = await channel.declare_queue(
                    topology.dead_letter_queue("production"), passive=True
                )
                work = await channel.declare_queue(topology.work_queue("production"), passive=True)
    assert set(found.values()) == {("queued", 1)}
    assert dlq.declaration_result.message_count == 1
    assert work.declaration_result.message_count == 0


async def test_two_events_of_one_order_in_one_batch_apply_in_the_order_they_came(tmp_path):
    """Approval then "finished" for each order, in one batch: handled side by side, "finished"
    would find no ticket yet and go round a retry queue; in order, it finds the queued ticket."""
    store_url = f"sqlite:///{tmp_path}/hookhub.db"
    orders = [f"o-{i}" for i in range(10)]
    events = []
    for order_id in orders:
        events += [
            production_event("payment.approved", order_id),
            production_event("production.finished", order_id),
        ]
    with fresh_vhost() as amqp_url:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare(channel, (0.5,), 20)
            emitted_queue = await follow_ups(channel)
            await publish_all(channel, events)
            env = hub_env(amqp_url, HOOKHUB_STORE_URL=store_url, HOOKHUB_RETRY_DELAYS="0.5")
            with running_consumer("production", env, tmp_path) as consumer:
                emitted = await drain(emitted_queue, quiet_s=2)
                found = await stored_tickets(store_url, orders)
    per_order: dict[str, list[str]] = {}
    for message in emitted:
        per_order.setdefault(json.loads(message.body)["order_id"], []).append(message.type)
    assert per_order == {o: ["production.queued", "order.ready"] for o in orders}
    assert set(found.values()) == {("ready", 2)}
    assert '"event.retried"' not in consumer.log


async def test_a_consumer_killed_mid_batch_loses_nothing_and_doubles_no_effect(tmp_path):
    store_url = f"sqlite:///{tmp_path}/hookhub.db"
    orders = [f"o-{i}" for i in range(400)]
    events = [production_event("payment.approved", order_id) for order_id in orders]
    with fresh_vhost() as amqp_url:
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=store_url)
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare(channel, (0.2,), 20)
            emitted_queue = await follow_ups(channel)
            await publish_all(channel, events)
            consumer, readyz = start_consumer("production", env, tmp_path)
            wait_http_ready(readyz, process=consumer)
            await until_tickets(store_url, orders[:50])  # the first come first: then kill it
            consumer.stop(signal.SIGKILL)  # mid-batch: some saved, not all published or acked
            with running_consumer("production", env, tmp_path):
                found = await until_tickets(store_url, orders)
                emitted = await drain(emitted_queue, quiet_s=2)
    assert set(found.values()) == {("queued", 1)}  # each ticket changed once
    queued = {m.message_id for m in emitted if m.type == "production.queued"}
    assert len(queued) == len(orders)  # every follow-up published (a repeat shares its id)


async def test_a_store_outage_mid_batch_acks_nothing_as_done_and_loses_nothing(tmp_path):
    db_path = tmp_path / "hookhub.db"
    store_url = f"sqlite:///{db_path}"
    orders = [f"o-{i}" for i in range(10)]
    events = [production_event("payment.approved", order_id) for order_id in orders]
    with fresh_vhost() as amqp_url:
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=store_url, HOOKHUB_RETRY_DELAYS="0.5,0.5,0.5")
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare(channel, (0.5,), 20)
            emitted_queue = await follow_ups(channel)
            with running_consumer("production", env, tmp_path):
                locker = sqlite3.connect(db_path, isolation_level=None)
                locker.execute("BEGIN EXCLUSIVE")  # the group's commit waits, then fails
                try:
                    await publish_all(channel, events)
                    during = await drain(emitted_queue, quiet_s=11)  # past SQLite's busy timeout
                finally:
                    locker.execute("ROLLBACK")
                    locker.close()
                found = await until_tickets(store_url, orders)
                after = await drain(emitted_queue, quiet_s=2)
    assert during == []  # nothing was announced as done while nothing could be saved
    assert set(found.values()) == {("queued", 1)}
    assert {m.message_id for m in after} == {
        m.message_id for m in after if m.type == "production.queued"
    }
    assert len({m.message_id for m in after}) == len(orders)
