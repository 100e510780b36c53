"""A stateful consumer added the documented way (docs/consumers.md, "Adding a consumer") runs on
the real runtime, broker and store: the toy loyalty consumer of `tests/support/loyalty`, a
package with its spec, steps, records and repositories, handed to the topology and the runtime as
an installed spec would be (its entry point is the one line a real consumer adds)."""

import asyncio
import json
import uuid
from pathlib import Path

import aio_pika
from hookhub import topology
from hookhub.events import EXCHANGE, Event
from hookhub.settings import Settings
from hookhub_consumers.runtime import run_consumers
from hookhub_consumers.store import open_store

from tests.support.broker import CapturedQueue, fresh_vhost
from tests.support.loyalty.records import accounts
from tests.support.loyalty.spec import SPEC as LOYALTY


def payment_approved(order_id: str, customer_id: str, amount: int) -> Event:
    data = {"order_id": order_id, "customer": {"id": customer_id}, "amount": amount}
    return Event(
        id=f"approved-{order_id}-{uuid.uuid4().hex[:6]}",
        source="/consumers/payments",
        type="payment.approved",
        data=json.dumps(data | {"currency": "BRL"}).encode(),
        subject=order_id,
    )


async def test_a_consumer_added_the_documented_way_keeps_its_state_and_emits_its_follow_ups(
    tmp_path: Path,
):
    store_url = f"sqlite:///{tmp_path}/hookhub.db"
    with fresh_vhost() as amqp_url:
        settings = Settings(
            amqp_url=amqp_url, store_url=store_url, publish_timeout_s=2, connect_timeout_s=2
        )
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            async with connection.channel() as channel:  # its queues, from its spec
                await topology.declare(
                    channel, settings.retry_delays_s, settings.delivery_limit, consumers=(LOYALTY,)
                )
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(EXCHANGE)
            earned = await channel.declare_queue(exclusive=True)
            await earned.bind(exchange, "loyalty.points_earned")
            stop = asyncio.Event()
            running = asyncio.create_task(run_consumers(settings, [LOYALTY], stop))
            try:
                first, second = (
                    payment_approved("o-1", "c-1", 4990),
                    payment_approved("o-2", "c-1", 1000),
                )
                await exchange.publish(first.to_message(), first.routing_key)
                said_first = Event.from_message(await CapturedQueue(earned).get(timeout_s=20))
                await exchange.publish(second.to_message(), second.routing_key)
                said_second = Event.from_message(await CapturedQueue(earned).get(timeout_s=20))
            finally:
                stop.set()
                await running

    assert (said_first.type, said_first.causation_id) == ("loyalty.points_earned", first.id)
    assert json.loads(said_first.data) == {
        "order_id": "o-1",
        "customer_id": "c-1",
        "earned": 49,
        "points": 49,
    }
    assert json.loads(said_second.data)["points"] == 59  # read back through its repository
    store = open_store(store_url, [LOYALTY])
    try:
        account = await accounts(store).get("c-1")
    finally:
        await store.close()
    assert (account.points, account.version) == (59, 2)
