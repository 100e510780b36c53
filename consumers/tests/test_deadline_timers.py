"""Deadlines fire on time whatever mix of durations is pending (#22): each duration waits in a
queue of its own, so a short deadline set after a long one is not held behind it (RabbitMQ
expires a message only at its queue's head)."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest
from hookhub import topology
from hookhub.broker import Broker
from hookhub.events import Event
from hookhub.settings import Settings
from hookhub_consumers.handler import deadline
from hookhub_consumers.outbox import Outbox

from tests.support.broker import fresh_vhost

WORK = topology.work_queue("payments")
ORDER_PAYMENT = "deadline.order_payment"
LONG_S, SHORT_S = 60.0, 1.0
ON_TIME_S = 5.0  # the short deadline's 1 s, and room for a busy machine


@pytest.fixture
async def hub() -> AsyncIterator[tuple[Outbox, aio_pika.abc.AbstractConnection]]:
    """The payments consumer's outbox on a broker of a vhost of its own (its topology declared
    with the timeout lowered to the short one), and a connection to read the queues."""
    with fresh_vhost() as amqp_url:
        settings = Settings(
            amqp_url=amqp_url, archive_enabled=False, order_payment_timeout_s=SHORT_S
        )
        broker = Broker(settings)
        await broker.start()
        assert await broker.wait_ready(10)
        connection = await aio_pika.connect(amqp_url)
        try:
            yield Outbox("payments", None, broker, 10), connection  # type: ignore[arg-type]
        finally:
            await connection.close()
            await broker.close()


def order_deadline(order_id: str, after_s: float, set_at: datetime | None = None) -> Event:
    created = Event(
        id=f"created-{order_id}",
        source="/tests",
        type="order.created",
        data=json.dumps({"order_id": order_id}).encode(),
    )
    due = deadline(created, "payments", ORDER_PAYMENT, order_id, after_s)
    return due if set_at is None else replace(due, time=set_at)


async def arrivals(connection, queue: str, within_s: float) -> list[tuple[str, float]]:
    """(event id, seconds since the call) of what reached `queue` within the time, taken off."""
    started, got = time.monotonic(), []
    async with connection.channel() as channel:
        declared = await channel.declare_queue(queue, passive=True)
        while time.monotonic() - started < within_s:
            message = await declared.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
                continue
            got.append((message.headers["cloudEvents:id"], time.monotonic() - started))
    return got


async def depth(connection, queue: str) -> int:
    async with connection.channel() as channel:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count


async def test_a_short_deadline_set_after_a_long_one_fires_on_time(hub):
    outbox, connection = hub
    long, short = order_deadline("o-long", LONG_S), order_deadline("o-short", SHORT_S)

    assert await outbox.publish([long]) is True  # set under the old one-minute timeout
    assert await outbox.publish([short]) is True  # then the timeout was lowered

    got = await arrivals(connection, WORK, ON_TIME_S)
    assert [event_id for event_id, _ in got] == [short.id], got
    assert got[0][1] >= SHORT_S * 0.5, got  # not early either
    long_queue = topology.deadline_queue("payments", ORDER_PAYMENT, LONG_S)
    assert await depth(connection, long_queue) == 1  # the long one still pending


async def test_a_deadline_published_late_is_due_when_it_was_set_to_be(hub):
    outbox, connection = hub
    # Set 1.5 s of its 2 s ago (the relay's, after the process died): half a second is left.
    set_at = datetime.now(UTC) - timedelta(seconds=1.5)
    late = order_deadline("o-late", 2.0, set_at=set_at)
    overdue = order_deadline("o-overdue", 1.0, set_at=set_at)  # already due: at once

    assert await outbox.publish([late, overdue]) is True

    got = dict(await arrivals(connection, WORK, 2.0))
    assert set(got) == {late.id, overdue.id}, got
    assert got[late.id] < 1.5 and got[overdue.id] < 1.0, got
