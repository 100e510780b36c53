"""Against the real broker, with a running consumer: a follow-up or a replayed copy too large to
publish is refused before it is sent and parked (or left parked), the consumer keeps its
connection, and the other events keep flowing."""

import asyncio
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika
import pamqp.header
from hookhub import failures, topology
from hookhub.broker import MAX_PROPERTIES_BYTES
from hookhub.events import EXCHANGE, Event
from hookhub_eventlog import replay
from hookhub_eventlog.archive import logged
from hookhub_eventlog.store import open_event_log

from tests.support.archive import archived
from tests.support.broker import fresh_vhost
from tests.support.processes import running_consumer
from tests.support.settings import hub_env

HOOKHUB = Path(sys.executable).parent / "hookhub"
# What a connection that dropped says in the consumer's log (the broker closing it for a frame
# over frame_max, and the robust connection coming back).
CONNECTION_LOST = ('"broker.reconnected"', '"topology.redeclaring"', "FRAME_ERROR")


def approval(order_id: str) -> Event:
    return Event(
        id=f"pay-{uuid.uuid4().hex[:8]}",
        source="/consumers/payments",
        type="payment.approved",
        data=json.dumps({"order_id": order_id}).encode(),
    )


def at_the_limit(message: aio_pika.Message) -> aio_pika.Message:
    """`message` with a header that brings it 20 bytes under the limit: any header a copy adds
    (a replay's) takes it over."""
    message.headers = {**(message.headers or {}), "x-storefront-cart": ""}
    size_bytes = len(pamqp.header.ContentHeader(0, 0, message.properties).marshal())
    message.headers["x-storefront-cart"] = "c" * (MAX_PROPERTIES_BYTES - 20 - size_bytes)
    return message


async def arrived(queue: aio_pika.abc.AbstractQueue, count: int, timeout_s: float = 15) -> list:
    """The first `count` messages on `queue` (acked), within `timeout_s`."""
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        if (message := await queue.get(no_ack=True, fail=False)) is not None:
            got.append(message)
        else:
            await asyncio.sleep(0.05)
    return got


async def depth(channel: aio_pika.abc.AbstractChannel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


async def test_a_too_large_follow_up_is_parked_and_the_consumer_keeps_its_connection(tmp_path):
    """A payment.approved whose order id (40 KB) would be production.queued's subject: its
    follow-ups are parked, stripped, in production's parking lot, its journey says so, and the
    next order's follow-up is published on the same connection."""
    store_url = f"sqlite:///{tmp_path}/hookhub.db"
    huge, fine = approval("o" * 40_000), approval("o-fine")
    with fresh_vhost() as amqp_url:
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=store_url)
        with running_consumer("production", env, tmp_path) as consumer:
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange(EXCHANGE)
                queued = await channel.declare_queue(exclusive=True)
                await queued.bind(exchange, "production.queued")
                await exchange.publish(huge.to_message(), huge.routing_key)
                await exchange.publish(fine.to_message(), fine.routing_key)
                [sent] = await arrived(queued, 1)
                dlq = await channel.get_queue(topology.dead_letter_queue("production"))
                parked = await arrived(dlq, 2)  # production.queued and its deadline
                leftover = await depth(channel, topology.work_queue("production"))

    log = consumer.log
    assert json.loads(sent.body) == {"order_id": "o-fine"}, log[-3000:]
    assert sorted(m.type for m in parked) == ["deadline.production", "production.queued"]
    for message in parked:
        assert "cloudEvents:subject" not in message.headers
        reason = str(message.headers[failures.REASON_HEADER])
        assert "not published" in reason and "largest: header cloudEvents:subject" in reason
        assert message.body == json.dumps({"order_id": "o" * 40_000}, separators=(",", ":"),
                                          sort_keys=True).encode()  # fmt: skip
    assert leftover == 0
    assert log.count('"outbox.too_large"') == 2
    assert not [said for said in CONNECTION_LOST if said in log], log[-3000:]
    journal = open_event_log(store_url)
    try:
        steps = await journal.steps(huge.id)
    finally:
        await journal.close()
    assert [(s.consumer, s.what) for s in steps] == [("production", "parked")] * 2


async def test_replayed_copies_too_large_are_refused_and_said_and_the_rest_replayed(tmp_path):
    """From the parking lot (`hookhub dlq replay`) and from the archive (`replay`): the copy too
    large is not sent, its message stays parked, the command says which and why, and the
    replayable ones reach the running consumer, whose connection never drops."""
    store_url = f"sqlite:///{tmp_path}/hookhub.db"
    big_parked, small_parked = approval("o-big-parked"), approval("o-small-parked")
    big_archived = approval("o-big-archived")
    with fresh_vhost() as amqp_url:
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=store_url)
        with running_consumer("production", env, tmp_path) as consumer:
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange(EXCHANGE)
                queued = await channel.declare_queue(exclusive=True)
                await queued.bind(exchange, "production.queued")
                lot = topology.dead_letter_queue("production")
                for parked in (at_the_limit(big_parked.to_message()), small_parked.to_message()):
                    await channel.default_exchange.publish(parked, lot)

                replaying = await asyncio.to_thread(
                    subprocess.run,
                    [HOOKHUB, "dlq", "replay", "production", "--all"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                replayed_from_lot = await arrived(queued, 1)
                still_parked = await depth(channel, lot)

                await exchange.publish(at_the_limit(big_archived.to_message()), "payment.approved")
                processed = await arrived(queued, 1)  # the original fits, and is processed
                kept = await archived(connection, big_archived.id)
                assert kept is not None
                result = await replay.replay(connection, [logged(kept)], to="production")
                await asyncio.sleep(1)  # a copy sent anyway would be processed by now
                replayed_from_archive = await depth(channel, topology.work_queue("production"))

    assert replaying.returncode == 1, replaying.stdout + replaying.stderr
    said = " ".join((replaying.stdout + replaying.stderr).split())
    assert f"not replayed, still parked: {big_parked.id}: the message's properties" in said
    assert [json.loads(m.body)["order_id"] for m in replayed_from_lot] == ["o-small-parked"]
    assert still_parked == 1
    assert [json.loads(m.body)["order_id"] for m in processed] == ["o-big-archived"]
    assert (result.published, list(result.refused)) == (0, [(big_archived.id, "production")])
    assert "largest: header x-storefront-cart" in result.refused[big_archived.id, "production"]
    assert replayed_from_archive == 0
    assert not [said for said in CONNECTION_LOST if said in consumer.log], consumer.log[-3000:]
