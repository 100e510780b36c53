"""A follow-up too large to publish is final: parked, stripped, in the consumer's dead-letter
queue, recorded in its cause's journey, and counted as sent, so its outbox is forgotten and the
relay goes on to the outboxes after it."""

import asyncio
import json

import aio_pika
from hookhub import failures, topology
from hookhub.broker import BrokerUnavailable, check_size
from hookhub.events import Event
from hookhub_consumers.handler import emitted
from hookhub_consumers.outbox import Outbox
from hookhub_consumers.production.records import Ticket
from hookhub_consumers.store import Change, Marker, open_store
from hookhub_eventlog.store import Step

HUGE_ORDER_ID = "o" * 40_000


class SizeCheckingBroker:
    """Takes what a broker would take: a message too large is refused as `Broker` refuses it."""

    def __init__(self) -> None:
        self.published: list[Event] = []
        self.queued: list[tuple[str, aio_pika.Message]] = []
        self.down = False
        self.connected = asyncio.Event()  # the relay waits for it before a round
        self.connected.set()

    async def publish(self, event: Event) -> None:
        check_size(event.to_properties())
        self.published.append(event)

    async def publish_to_queue(self, message: aio_pika.Message, queue: str) -> None:
        check_size(message.properties)
        if self.down:
            raise BrokerUnavailable("RabbitMQ is not connected")
        self.queued.append((queue, message))


def approval(order_id: str, n: int = 1) -> Event:
    data = json.dumps({"order_id": order_id}).encode()
    return Event(id=f"pay-{n}", source="/consumers/payments", type="payment.approved", data=data)


def queued_for(order_id: str, n: int = 1) -> Event:
    return emitted(approval(order_id, n), "production", "production.queued", {"order_id": order_id})


class Journeys:
    def __init__(self) -> None:
        self.steps: list[Step] = []

    async def __call__(self, step: Step) -> None:
        self.steps.append(step)


async def test_a_too_large_follow_up_is_parked_stripped_and_counts_as_sent():
    broker, journeys = SizeCheckingBroker(), Journeys()
    outbox = Outbox("production", None, broker, 10, journey=journeys)  # type: ignore[arg-type]
    too_large, fine = queued_for(HUGE_ORDER_ID), queued_for("o-2", 2)

    assert await outbox.publish([too_large, fine]) is True

    assert [event.id for event in broker.published] == [fine.id]
    [(queue, parked)] = broker.queued
    assert queue == topology.dead_letter_queue("production")
    assert parked.body == too_large.data and parked.message_id == too_large.id
    assert parked.headers["cloudEvents:id"] == too_large.id
    assert parked.headers["cloudEvents:type"] == "production.queued"
    assert "cloudEvents:subject" not in parked.headers
    reason = str(parked.headers[failures.REASON_HEADER])
    assert reason.startswith(f"follow-up production.queued {too_large.id} not published")
    assert "largest: header cloudEvents:subject" in reason and len(reason) < 400
    assert parked.headers[failures.ROUTING_KEY_HEADER] == "production.queued"
    [step] = journeys.steps
    assert (step.event_id, step.consumer, step.what, step.detail) == (
        "pay-1",
        "production",
        "parked",
        reason,
    )


async def test_a_too_large_follow_up_the_broker_cannot_park_now_stays_for_the_relay():
    broker = SizeCheckingBroker()
    broker.down = True
    outbox = Outbox("production", None, broker, 10)  # type: ignore[arg-type]
    assert await outbox.publish([queued_for(HUGE_ORDER_ID)]) is False


async def test_the_relay_parks_a_too_large_outbox_forgets_it_and_relays_the_next(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/hookhub.db")
    try:
        stuck, next_one = queued_for(HUGE_ORDER_ID, 1), queued_for("o-2", 2)
        for n, order_id, follow_up in ((1, HUGE_ORDER_ID, stuck), (2, "o-2", next_one)):
            marker = Marker.of("production", "/consumers/payments", f"pay-{n}")
            await store.save(Change(marker, Ticket(order_id), (follow_up.to_json(),)))
        broker, journeys = SizeCheckingBroker(), Journeys()
        outbox = Outbox("production", store, broker, 0.05, journey=journeys)  # type: ignore[arg-type]
        stop = asyncio.Event()
        relay = asyncio.create_task(outbox.relay(stop))
        for _ in range(100):
            if broker.published and broker.queued:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await relay
        assert [event.id for event in broker.published] == [next_one.id]
        assert [queue for queue, _ in broker.queued] == [topology.dead_letter_queue("production")]
        assert [step.what for step in journeys.steps] == ["parked"]
        for _ in range(40):  # `sent` joins the next group commit
            if not await store.unsent("production", stuck.time.replace(year=3000)):
                break
            await asyncio.sleep(0.05)
        assert await store.unsent("production", stuck.time.replace(year=3000)) == []
    finally:
        await store.close()
