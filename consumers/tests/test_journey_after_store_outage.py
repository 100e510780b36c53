"""The store refuses writes (another process holds SQLite's write lock) while events are retried
and parked: their journey steps are kept, and every one is in the journey once the store is
back."""

import asyncio
import sqlite3

import aio_pika
from hookhub import topology
from hookhub.events import Event
from hookhub_consumers.journeys import Journeys
from hookhub_eventlog.store import Step, open_event_log
from structlog.testing import capture_logs

from tests.support.broker import fresh_vhost
from tests.support.processes import running_consumer
from tests.support.settings import hub_env


def logged(log: str, what: str, event_id: str) -> int:
    """How many times the consumer's log says `what` (e.g. event.retried) about `event_id`."""
    return sum(1 for line in log.splitlines() if f'"event": "{what}"' in line and event_id in line)


async def test_steps_of_a_store_outage_are_all_in_the_journey_once_it_is_back(tmp_path):
    db_path = tmp_path / "hookhub.db"
    store_url = f"sqlite:///{db_path}"
    # A type production does not handle, straight on its work queue: held, retried again and
    # again, none of it writing to the store but the journey.
    held = Event(id="held-1", source="/tests", type="production.unknown", data=b"{}")
    unreadable = aio_pika.Message(  # headers that cannot be read: parked at once
        b"{}",
        message_id="unreadable-1",
        headers={"cloudEvents:id": "unreadable-1", "cloudEvents:time": "not-a-time"},
    )
    with fresh_vhost() as amqp_url:
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=store_url, HOOKHUB_RETRY_DELAYS="0.3,0.3")
        with running_consumer("production", env, tmp_path) as consumer:
            locker = sqlite3.connect(db_path, isolation_level=None)
            locker.execute("BEGIN EXCLUSIVE")  # every write of the consumer now waits, then fails
            try:
                connection = await aio_pika.connect(amqp_url)
                async with connection:
                    channel = await connection.channel(publisher_confirms=True)
                    queue = topology.work_queue("production")
                    await channel.default_exchange.publish(held.to_message(), queue)
                    await channel.default_exchange.publish(unreadable, queue)
                    await asyncio.sleep(14)  # past SQLite's 10 s busy timeout: a step refused
            finally:
                locker.execute("ROLLBACK")
                locker.close()
            await asyncio.sleep(3)  # the kept steps are written; the held event goes on
        log = consumer.log  # stopped: every step it logged was recorded or said to be lost

    journal = open_event_log(store_url)
    try:
        held_steps = [step.what for step in await journal.steps(held.id)]
        unreadable_steps = [step.what for step in await journal.steps("unreadable-1")]
    finally:
        await journal.close()
    assert '"journey.kept"' in log, log[-3000:]
    assert '"journey.steps_dropped"' not in log, log[-3000:]
    assert held_steps == ["retried"] * logged(log, "event.retried", held.id), log[-3000:]
    assert len(held_steps) > 5  # some of them from the outage
    assert unreadable_steps == ["parked"]


class RefusingJournal:
    """An event log whose store refuses writes until `back` is set."""

    def __init__(self) -> None:
        self.back = False
        self.recorded: list[Step] = []

    async def record(self, step: Step) -> None:
        if not self.back:
            raise sqlite3.OperationalError("database or disk is full")
        self.recorded.append(step)


async def test_kept_steps_are_written_in_order_and_those_past_the_bound_are_counted():
    journal = RefusingJournal()
    journeys = Journeys(journal, max_kept=3)  # type: ignore[arg-type]
    steps = [Step(f"evt-{n}", "production", "retried") for n in range(5)]
    with capture_logs() as logs:
        for step in steps:
            await journeys.record(step)
        journal.back = True
        for _ in range(100):
            if len(journal.recorded) == 3:
                break
            await asyncio.sleep(0.05)
        await journeys.close()

    assert journal.recorded == steps[:3]
    dropped = [entry for entry in logs if entry["event"] == "journey.steps_dropped"]
    # Said at the first drop, then no more in that period; the rest when the process stops.
    assert [entry["dropped"] for entry in dropped] == [1, 1], logs
