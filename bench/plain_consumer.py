"""The limit case of the consumer benchmark: the production consumer's `payment.approved` step
written the straightforward way on plain aio-pika, with group commit and nothing else.

What Hookhub's consumer does for each event, with the same durability, and none of its runtime
(no middlewares, metrics, traces, journeys, outbox rows, log lines, per-message tasks):

  the messages in hand are taken together → one read of their markers and tickets → for each new
  one, `production.queued` and its `deadline.production` published and confirmed → the tickets
  and markers committed as one SQLite transaction (WAL, synchronous=FULL, as the store) → one
  `multiple` ack for the lot.

Published before the commit, as a plain consumer without an outbox must to lose nothing (a crash
in between publishes them again on redelivery, with the same ids, derived from the cause). The
follow-ups are built by the same wire contract (`handler.emitted`, `handler.deadline`), so the
broker gets identical messages. The tables are the store's (its schema, made by `SQLiteStore`
before the first message), so that the runner reads tickets and markers the same way.

Run by bench/consumer.py as `python bench/plain_consumer.py`, configured by BENCH_AMQP_URL,
BENCH_STORE_PATH, BENCH_PREFETCH and BENCH_READY_FILE (created once it consumes). SIGTERM or
SIGINT stops it after the group in hand.
"""

import asyncio
import json
import os
import signal
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import aiormq
import uvloop
from aio_pika.abc import AbstractIncomingMessage
from hookhub import topology
from hookhub.events import EXCHANGE, Event
from hookhub.settings import Settings
from hookhub.sqlite import time_text
from hookhub_consumers.handler import deadline, emitted
from hookhub_consumers.production.spec import SPEC as PRODUCTION
from hookhub_consumers.store.base import Marker, load_repositories
from hookhub_consumers.store.sqlite import SQLiteStore

CONSUMER = "production"
EMITS = "production.queued"
DEADLINE = "deadline.production"
DEFAULTS = Settings.model_construct()


def open_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


def new_orders(db: sqlite3.Connection, events: list[Event]) -> list[tuple[Event, str]]:
    """The events not processed yet whose order has no ticket, with their order ids."""
    found = []
    for event in events:
        marker = Marker.of(CONSUMER, event.source, event.id)
        order_id = json.loads(event.data)["order_id"]
        seen = db.execute(
            "SELECT 1 FROM markers WHERE consumer = ? AND event_key = ?",
            (CONSUMER, marker.event_key),
        ).fetchone()
        ticket = db.execute("SELECT 1 FROM tickets WHERE order_id = ?", (order_id,)).fetchone()
        if seen is None and ticket is None:
            found.append((event, order_id))
    return found


def commit(db: sqlite3.Connection, done: list[tuple[Event, str]]) -> None:
    """Tickets and markers of the whole group, in one transaction."""
    now = time_text(datetime.now(UTC))
    db.execute("BEGIN IMMEDIATE")
    try:
        for event, order_id in done:
            db.execute(
                "INSERT INTO tickets (order_id, status, version, updated_at) VALUES (?, ?, 1, ?)",
                (order_id, "queued", now),
            )
            db.execute(
                "INSERT INTO markers (consumer, event_key, processed_at) VALUES (?, ?, ?)",
                (CONSUMER, Marker.of(CONSUMER, event.source, event.id).event_key, now),
            )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


async def main() -> None:
    path = Path(os.environ["BENCH_STORE_PATH"])
    store = SQLiteStore(path, load_repositories("sqlite", [PRODUCTION]))
    await store.open()  # the store's schema, so the runner reads the same tables
    await store.close()
    db = open_db(path)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    connection = await aio_pika.connect(os.environ["BENCH_AMQP_URL"])
    async with connection:
        publishing = await connection.channel(publisher_confirms=True)
        exchange = await publishing.get_exchange(EXCHANGE, ensure=False)
        default = publishing.default_exchange
        deadline_queue = topology.deadline_queue(
            CONSUMER, DEADLINE, topology.deadline_durations(DEFAULTS)[DEADLINE]
        )
        consuming = await connection.channel()
        await consuming.set_qos(prefetch_count=int(os.environ["BENCH_PREFETCH"]))
        queue = await consuming.get_queue(topology.work_queue(CONSUMER), ensure=False)

        in_hand: list[AbstractIncomingMessage] = []
        arrived = asyncio.Event()

        async def on_message(message: AbstractIncomingMessage) -> None:
            in_hand.append(message)
            arrived.set()

        async def publish(message: aio_pika.Message, to: aio_pika.abc.AbstractExchange, key: str):
            confirmation = await to.publish(message, key, timeout=DEFAULTS.publish_timeout_s)
            if not isinstance(confirmation, aiormq.spec.Basic.Ack):
                raise RuntimeError(f"not confirmed: {confirmation!r}")

        await queue.consume(on_message)
        await asyncio.to_thread(Path(os.environ["BENCH_READY_FILE"]).touch)
        stopping = asyncio.create_task(stop.wait())
        while not stop.is_set():
            waiting = asyncio.create_task(arrived.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            arrived.clear()
            group, in_hand[:] = list(in_hand), []
            if not group:
                continue
            events = [Event.from_message(message) for message in group]
            todo = await asyncio.to_thread(new_orders, db, events)
            publishes = []
            for event, order_id in todo:
                follow_up = emitted(event, CONSUMER, EMITS, {"order_id": order_id})
                timer = deadline(event, CONSUMER, DEADLINE, order_id, DEFAULTS.production_timeout_s)
                publishes.append(publish(follow_up.to_message(), exchange, EMITS))
                publishes.append(publish(timer.to_message(), default, deadline_queue))
            await asyncio.gather(*publishes)
            await asyncio.to_thread(commit, db, todo)
            await group[-1].ack(multiple=True)
    db.close()


if __name__ == "__main__":
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
