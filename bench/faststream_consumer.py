"""The FastStream baseline of the consumer benchmark: the production consumer's `payment.approved`
step written as a plain FastStream subscriber, on the same SQLite store as Hookhub's runtime.

For each message, the same work as Hookhub's production consumer:
  skip it if its processed-marker exists (SQLiteStore.is_processed) → read the ticket → if there
  is none, publish `production.queued` to hookhub.events and wait for the broker's confirm → save
  the ticket and the marker in one transaction (SQLiteStore.save) → ack.
Hookhub saves first (ticket, marker and the follow-up in its outbox) and publishes after; a
plain subscriber has no outbox, so it publishes first, which is the order that loses nothing.
The follow-up event is built by the same wire contract (hookhub.events.Event, the runtime's
`emitted`), so both cases publish identical messages; what differs is the runtime around it.

Durability and flow equal to Hookhub's, set explicitly rather than left to defaults:
- ack after the work: AckPolicy.REJECT_ON_ERROR (FastStream's default, named here) acks once the
  handler returns and rejects if it raises;
- the same prefetch on the consuming channel (BENCH_PREFETCH, Hookhub's default 32); each
  delivery is handled in a task of its own, as in Hookhub (aio-pika/aiormq dispatch);
- publisher confirms on the publishing channel (FastStream's default channel, confirm mode),
  persistent delivery (`persist=True`; FastStream's default is transient), the same 5 s confirm
  timeout, and anything but an ack raises, so the message is not acked.
FastStream keeps its default logging (a line when a message arrives and one when it is done),
as Hookhub's consumer keeps its one JSON line per event.

Run by bench/consumer.py as `python bench/faststream_consumer.py`, configured by BENCH_AMQP_URL,
BENCH_STORE_PATH, BENCH_PREFETCH and BENCH_READY_FILE (created once the subscriber consumes).
SIGTERM or SIGINT stops it: no more deliveries, the handlers in hand finish, then it exits.
"""

import asyncio
import os
import signal
from pathlib import Path

import aiormq
import uvloop
from faststream import AckPolicy
from faststream.rabbit import Channel, ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue
from faststream.rabbit.annotations import RabbitMessage
from hookhub import topology
from hookhub.events import EXCHANGE, Event
from hookhub_consumers.handler import emitted
from hookhub_consumers.production.records import Ticket, tickets
from hookhub_consumers.production.spec import SPEC as PRODUCTION
from hookhub_consumers.store import Change, Marker
from hookhub_consumers.store.base import load_repositories
from hookhub_consumers.store.sqlite import SQLiteStore

CONSUMER = "production"  # the markers are the production consumer's, as in the Hookhub case
EMITS = "production.queued"
PUBLISH_TIMEOUT_S = 5.0  # Hookhub's publish_timeout_s default

broker = RabbitBroker(
    os.environ["BENCH_AMQP_URL"], default_channel=Channel(publisher_confirms=True)
)
store = SQLiteStore(Path(os.environ["BENCH_STORE_PATH"]), load_repositories("sqlite", [PRODUCTION]))
# Declared by the bench set-up (hookhub.topology); declare=False only looks them up.
events = RabbitExchange(EXCHANGE, type=ExchangeType.TOPIC, durable=True, declare=False)
work_queue = RabbitQueue(topology.work_queue(CONSUMER), durable=True, declare=False)
follow_ups = broker.publisher(exchange=events, routing_key=EMITS)


class NotConfirmed(Exception):
    """The broker did not ack the follow-up event; the message must not be acked."""


@broker.subscriber(
    work_queue,
    channel=Channel(prefetch_count=int(os.environ["BENCH_PREFETCH"])),
    ack_policy=AckPolicy.REJECT_ON_ERROR,
)
async def payment_approved(data: dict, message: RabbitMessage) -> None:
    event = Event.from_message(message.raw_message)
    marker = Marker.of(CONSUMER, event.source, event.id)
    if await store.is_processed(marker):
        return
    order_id = data["order_id"]
    if await tickets(store).get(order_id) is not None:
        return  # already queued by another event: nothing to do, as in production.handle
    ticket = Ticket(order_id, status="queued")
    follow_up = emitted(event, CONSUMER, EMITS, {"order_id": order_id}).to_message()
    confirmation = await follow_ups.publish(
        follow_up.body,
        headers=follow_up.headers,
        message_id=follow_up.message_id,
        correlation_id=follow_up.correlation_id,
        content_type=follow_up.content_type,
        timestamp=follow_up.timestamp,
        message_type=follow_up.type,
        persist=True,
        timeout=PUBLISH_TIMEOUT_S,
    )
    if not isinstance(confirmation, aiormq.spec.Basic.Ack):
        raise NotConfirmed(f"{EMITS} for {order_id}: {confirmation!r}")
    await store.save(Change(marker, ticket))


async def main() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await broker.start()
        await asyncio.to_thread(Path(os.environ["BENCH_READY_FILE"]).touch)
        await stop.wait()
    finally:
        await broker.stop()  # stops consuming, waits for the handlers in hand (graceful_timeout)
        await store.close()


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
