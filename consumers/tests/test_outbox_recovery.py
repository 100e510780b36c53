"""A consumer that crashed after committing but before publishing: the redelivery sends what
the commit saved, once, and forgets it."""

import asyncio
import json

import aio_pika
from hookhub import topology
from hookhub.events import Event
from hookhub_consumers.runtime import emitted
from hookhub_consumers.store import Marker, Ticket, open_store

from conftest import HubProcess, free_port, fresh_vhost, hub_env, wait_http_ready


async def test_a_redelivered_event_publishes_the_outbox_its_first_delivery_committed(tmp_path):
    store_url = f"sqlite:///{tmp_path}/hookhub.db"
    approved = Event(
        id="pay-1",
        source="/consumers/payments",
        type="payment.approved",
        data=json.dumps({"order_id": "o-1"}).encode(),
    )
    queued = emitted(approved, "production", "production.queued", {"order_id": "o-1"})
    # The state the crash left: ticket, marker and outbox committed; nothing published.
    store = open_store(store_url)
    marker = Marker.of("production", approved.source, approved.id)
    await store.save_ticket(Ticket("o-1"), marker, outbox=[queued.to_json()])
    await store.close()

    with fresh_vhost() as amqp_url:
        port = free_port()
        consumer = HubProcess(
            ["consume", "production", "--probe-port", str(port)],
            hub_env(amqp_url, HOOKHUB_STORE_URL=store_url),
            tmp_path / "production.log",
        )
        try:
            wait_http_ready(f"http://127.0.0.1:{port}/readyz", process=consumer)
            connection = await aio_pika.connect(amqp_url)
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange("hookhub.events")
                await exchange.publish(approved.to_message(), approved.routing_key)
                # Nothing binds production.queued, so what is published lands in unrouted.
                unrouted = await channel.get_queue(topology.UNROUTED_QUEUE)
                published = []
                for _ in range(100):
                    if (message := await unrouted.get(no_ack=True, fail=False)) is not None:
                        published.append(message)
                    elif published:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
                while (message := await unrouted.get(no_ack=True, fail=False)) is not None:
                    published.append(message)
        finally:
            consumer.stop()

    assert [(m.type, m.message_id) for m in published] == [("production.queued", queued.id)]
    store = open_store(store_url)
    assert await store.pending(marker) == []
    assert (await store.get_ticket("o-1")).version == 1  # handled once, not again
    await store.close()
