"""What a scenario did to the events the hub accepted: each one's effect looked up where a user
would look (the store, the notification receiver), and what is left in the queues.

An accepted event is *lost* when its effect never came and it is not parked. A *parked* event
sits in a `hookhub.<consumer>.dlq`, where an operator sees and replays it; parked *with effects*
means it was parked although its state change or its outbox was saved, or its notification
delivered, already: replaying it would repeat the effect, and purging it would lose follow-ups.
"""

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import aio_pika
from hookhub import dlq, specs, topology
from hookhub.events import CE_PREFIX
from hookhub_consumers.notifications.records import deliveries
from hookhub_consumers.payments.records import orders
from hookhub_consumers.production.records import tickets
from hookhub_consumers.store import Marker, Store

from chaos.load import Sent, ci_event_id
from tests.support.notify_endpoint import Received

# Every order id the load makes; found in any event's body about that order (the Stripe
# webhook's metadata, order.created's data, every follow-up's data).
ORDER_ID = re.compile(rb"chaos-[0-9a-f]{12}")
SETTLE_POLL_S = 0.5
# With nothing queued and no effect arriving for this long, what is missing is not coming.
QUIET_S = 4.0


@dataclass
class Verdict:
    sent: int
    accepted: int
    answers_503: int
    other_5xx: int  # 500 and the like: the hub failing otherwise than it promises (503)
    no_answer: int  # refused, reset or timed out: hub-api was down or hung
    gave_up: int  # never accepted within the sender's bound
    lost: int
    queued: int  # messages still in work and retry queues when the scenario ended
    duplicates: int
    parked: int
    parked_with_effects: int
    recovery_s: float | None  # heal → the first event sent after it has its full effect
    ready_s: float | None  # heal → every process says ready
    ingest_gap_s: float  # the longest time without a 202 while the load ran
    answers: dict[str, int] = field(default_factory=dict)  # every attempt's answer, by status
    missing: dict[str, int] = field(default_factory=dict)  # lost, by the consumer that failed
    parked_by: dict[str, int] = field(default_factory=dict)  # "<consumer>: <reason>" → count
    lost_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Receipts:
    """What the notification receiver got."""

    approved_orders: set[str]  # orders whose payment.approved arrived
    webhook_ids: set[str]

    @classmethod
    def of(cls, received: Iterable[Received]) -> "Receipts":
        received = list(received)  # the receiver's thread appends meanwhile
        return cls(
            {
                r.json["data"]["order_id"]
                for r in received
                if r.json.get("type") == "payment.approved" and isinstance(r.json.get("data"), dict)
            },
            {r.headers["webhook-id"] for r in received},
        )


async def missing_effect(sent: Sent, store: Store, receipts: Receipts) -> str | None:
    """The consumer whose part of this accepted event's effect is missing, or None."""
    if sent.kind == "ci":
        return None if ci_event_id(sent.order_id) in receipts.webhook_ids else "notifications"
    order = await orders(store).get(sent.order_id)
    if sent.kind == "order":  # only order.created brings the customer
        return None if order is not None and order.customer else "payments"
    if order is not None and order.status == "held":
        return None  # waiting for an order.created never applied, whose own check says why
    if order is None or order.status != "approved":
        return "payments"
    if await tickets(store).get(sent.order_id) is None:
        return "production"
    return None if sent.order_id in receipts.approved_orders else "notifications"


def kind_of(event_type: str) -> str:
    """Which sent event a parked message stands for: the payment's whole chain (the Stripe
    webhook and its follow-ups) is one."""
    if event_type == "order.created":
        return "order"
    return "ci" if event_type.startswith("ci.") else "payment"


async def queue_depths(
    connection: aio_pika.abc.AbstractConnection, retry_delays_s: tuple[float, ...]
) -> dict[str, int]:
    """Messages ready in each consumer's work, retry and dead-letter queue."""
    names = [
        name
        for consumer in specs.names()
        for name in (
            topology.work_queue(consumer),
            *(topology.retry_queue(consumer, delay) for delay in retry_delays_s),
            topology.dead_letter_queue(consumer),
        )
    ]
    depths = {}
    async with connection.channel() as channel:
        for name in names:
            queue = await channel.declare_queue(name, passive=True)
            depths[name] = queue.declaration_result.message_count
    return depths


def in_flight(depths: dict[str, int]) -> int:
    return sum(n for name, n in depths.items() if not name.endswith(".dlq"))


async def settle(
    sent: list[Sent],
    store: Store,
    received: list[Received],
    connection: aio_pika.abc.AbstractConnection,
    retry_delays_s: tuple[float, ...],
    timeout_s: float,
) -> None:
    """Wait until every accepted event has its effect, or nothing more is moving."""
    deadline = time.monotonic() + timeout_s
    last_missing, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        receipts = Receipts.of(received)
        missing = sum(
            [await missing_effect(s, store, receipts) is not None for s in sent if s.accepted_at]
        )
        if missing == 0:
            return
        depths = await queue_depths(connection, retry_delays_s)
        if missing != last_missing or in_flight(depths):
            last_missing, quiet_since = missing, time.monotonic()
        elif time.monotonic() - quiet_since > QUIET_S:
            return
        await asyncio.sleep(SETTLE_POLL_S)


@dataclass
class Parking:
    """What the parking lots hold."""

    about: set[tuple[str, str]] = field(default_factory=set)  # (kind, order id)
    by_reason: Counter[str] = field(default_factory=Counter)
    with_effects: int = 0

    @property
    def count(self) -> int:
        return sum(self.by_reason.values())


async def parking(
    connection: aio_pika.abc.AbstractConnection, store: Store, receipts: Receipts
) -> Parking:
    found = Parking()
    for consumer in specs.names():
        for message in await dlq.list_parked(connection, consumer, limit=100_000):
            found.by_reason[f"{consumer}: {message.reason[:80]}"] += 1
            found.about.update(
                (kind_of(message.type), m.decode()) for m in ORDER_ID.findall(message.body)
            )
            found.with_effects += await _had_effects(store, receipts, consumer, message)
    return found


async def _had_effects(
    store: Store, receipts: Receipts, consumer: str, message: dlq.Parked
) -> bool:
    source = message.headers.get(f"{CE_PREFIX}source", b"")
    source = source.decode() if isinstance(source, bytes) else str(source)
    marker = Marker.of(consumer, source, message.id)
    if await store.is_processed(marker) or await store.pending(marker):
        return True
    if consumer != "notifications":
        return False
    # A notification's effect is the POST: the receiver has it, whether or not the store
    # managed to record the delivery.
    return message.id in receipts.webhook_ids or any(
        delivery.delivered for delivery in await deliveries(store).attempts(message.id)
    )


async def duplicate_effects(sent: list[Sent], store: Store, received: list[Received]) -> int:
    """Effects that happened more than once: a webhook-id the receiver got again, and an order
    saved more times than the events that changed it (order.created, the payment)."""
    repeats = sum(n - 1 for n in Counter(r.headers["webhook-id"] for r in received).values())
    for order_id in {s.order_id for s in sent}:
        order = await orders(store).get(order_id)
        if order is not None:
            applied = (order.customer is not None) + (order.status in ("approved", "held"))
            repeats += max(0, order.version - applied)
    return repeats


def recovery_s(sent: list[Sent], received: list[Received], healed_at: float) -> float | None:
    """From the heal to the first full effect of a payment first sent after it."""
    sent_after = {s.order_id for s in sent if s.kind == "payment" and s.first_sent_at >= healed_at}
    times = [
        r.at
        for r in received
        if r.json.get("type") == "payment.approved"
        and isinstance(r.json.get("data"), dict)
        and r.json["data"].get("order_id") in sent_after
    ]
    return round(min(times) - healed_at, 2) if times else None


def longest_gap_s(sent: list[Sent], load_ended_at: float) -> float:
    """The longest stretch without a 202 while the load ran."""
    times = sorted(s.accepted_at for s in sent if s.accepted_at and s.accepted_at < load_ended_at)
    start = min(s.first_sent_at for s in sent)
    marks = [start, *times, load_ended_at]
    return round(max(b - a for a, b in zip(marks, marks[1:], strict=False)), 2)


async def judge(
    sent: list[Sent],
    store: Store,
    received: list[Received],
    connection: aio_pika.abc.AbstractConnection,
    retry_delays_s: tuple[float, ...],
    *,
    healed_at: float,
    ready_s: float | None,
    load_ended_at: float,
) -> Verdict:
    statuses: Counter[str] = Counter()
    for s in sent:
        statuses.update(s.statuses)
    accepted = [s for s in sent if s.accepted_at]
    received = list(received)
    receipts = Receipts.of(received)
    parked = await parking(connection, store, receipts)
    missing: Counter[str] = Counter()
    lost_examples = []
    for s in accepted:
        consumer = await missing_effect(s, store, receipts)
        if consumer is not None and (s.kind, s.order_id) not in parked.about:
            missing[consumer] += 1
            lost_examples.append(f"{s.kind}:{s.order_id}")
    depths = await queue_depths(connection, retry_delays_s)
    return Verdict(
        sent=len(sent),
        accepted=len(accepted),
        answers_503=statuses["503"],
        other_5xx=sum(n for status, n in statuses.items() if status[0] == "5" and status != "503"),
        no_answer=statuses["error"],
        gave_up=len(sent) - len(accepted),
        lost=sum(missing.values()),
        queued=in_flight(depths),
        duplicates=await duplicate_effects(sent, store, received),
        parked=parked.count,
        parked_with_effects=parked.with_effects,
        recovery_s=recovery_s(sent, received, healed_at),
        ready_s=ready_s,
        ingest_gap_s=longest_gap_s(sent, load_ended_at),
        answers=dict(statuses),
        missing=dict(missing),
        parked_by=dict(parked.by_reason),
        lost_examples=lost_examples[:20],
    )
