"""A consumer that crashed after committing but before publishing: the outbox relay sends what
the commit saved, once, and forgets it."""

import asyncio
import json

import aio_pika
from hookhub import topology
from hookhub.events import Event
from hookhub_consumers.handler import emitted
from hookhub_consumers.production.records import Ticket, tickets
from hookhub_consumers.store import Change, Marker, open_store

from tests.support.broker import fresh_vhost
from tests.support.processes import HubProcess, running_consumer
from tests.support.settings import hub_env


def approval(n: int) -> Event:
    """payment.approved for order o-<n>, as the payments consumer emits it."""
    return Event(
        id=f"pay-{n}",
        source="/consumers/payments",
        type="payment.approved",
        data=json.dumps({"order_id": f"o-{n}"}).encode(),
    )


async def published(unrouted: aio_pika.abc.AbstractQueue) -> list[tuple[str, str]]:
    """(type, id) of the events arriving in `unrouted`, where whatever the consumer publishes
    lands (nothing binds production.queued): up to 5 s for the first, then 0.5 s for any more."""
    arrived = []
    for _ in range(100):
        if (message := await unrouted.get(no_ack=True, fail=False)) is not None:
            arrived.append((message.type, message.message_id))
        elif arrived:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    while (message := await unrouted.get(no_ack=True, fail=False)) is not None:
        arrived.append((message.type, message.message_id))
    return arrived


async def test_the_outbox_a_crash_left_is_published_once_by_the_restarted_consumer(tmp_path):
    """The redelivery of the crashed delivery publishes nothing itself (a copy of an event
    leaves its outbox to whoever saved it, or to the relay): the relay sends it, once."""
    store_url = f"sqlite:///{tmp_path}/hookhub.db"
    approved = approval(1)
    queued = emitted(approved, "production", "production.queued", {"order_id": "o-1"})
    # The state the crash left: ticket, marker and outbox committed; nothing published.
    store = open_store(store_url)
    marker = Marker.of("production", approved.source, approved.id)
    await store.save(Change(marker, Ticket("o-1"), (queued.to_json(),)))
    await store.close()

    with fresh_vhost() as amqp_url:
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=store_url)
        declare = HubProcess(["topology", "declare"], env, tmp_path / "declare.log")
        assert declare.process.wait(timeout=60) == 0, declare.log
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("hookhub.events")
            follow_ups = await channel.declare_queue(exclusive=True)
            await follow_ups.bind(exchange, "production.queued")  # before the relay's first round
            with running_consumer("production", env, tmp_path):
                await exchange.publish(approved.to_message(), approved.routing_key)
                sent = await published(follow_ups)

    assert sent == [(queued.type, queued.id)]
    store = open_store(store_url)
    assert await store.pending(marker) == []
    assert (await tickets(store).get("o-1")).version == 1  # handled once, not again
    await store.close()


async def test_a_follow_up_the_broker_refuses_is_relayed_later_and_its_cause_never_retried(
    tmp_path,
):
    """The ticket is saved but production.queued cannot go out (its only destination, unrouted,
    is gone, so the broker returns it). The event is done: acked, never retried nor parked, so no
    purge can lose its follow-up, which stays saved until the outbox relay publishes it, once."""
    store_url = f"sqlite:///{tmp_path}/hookhub.db"
    approved = approval(2)
    queued = emitted(approved, "production", "production.queued", {"order_id": "o-2"})
    with fresh_vhost() as amqp_url:
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=store_url,
            HOOKHUB_RETRY_DELAYS="0.2,0.4",
            HOOKHUB_OUTBOX_RELAY_INTERVAL_S="0.5",
            # Without the archive, which would take production.queued: so that deleting
            # hookhub.unrouted leaves it nowhere to go, and the broker refuses it.
            HOOKHUB_ARCHIVE_ENABLED="false",
        )
        with running_consumer("production", env, tmp_path) as consumer:
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                await channel.queue_delete(topology.UNROUTED_QUEUE)
                exchange = await channel.get_exchange("hookhub.events")
                await exchange.publish(approved.to_message(), approved.routing_key)
                await asyncio.sleep(2)  # well past every retry delay and relay round
                left = {
                    name: (await channel.declare_queue(name, passive=True)).declaration_result
                    for name in (
                        topology.work_queue("production"),
                        topology.dead_letter_queue("production"),
                    )
                }

                declare = HubProcess(["topology", "declare"], env, tmp_path / "declare.log")
                assert declare.process.wait(timeout=60) == 0, declare.log
                unrouted = await channel.get_queue(topology.UNROUTED_QUEUE)
                sent = await published(unrouted)

    assert [r.message_count for r in left.values()] == [0, 0], consumer.log[-3000:]
    assert sent == [(queued.type, queued.id)], consumer.log[-3000:]
    assert '"outbox.deferred"' in consumer.log
    assert '"event.retried"' not in consumer.log
    store = open_store(store_url)
    assert (await tickets(store).get("o-2")).version == 1  # handled once
    assert await store.pending(Marker.of("production", approved.source, approved.id)) == []
    await store.close()
