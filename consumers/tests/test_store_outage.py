"""The store refuses writes (another process holds SQLite's write lock on its file and on the
delivery attempts' file): the consumer says so on /readyz, POSTs no notification it cannot
record, and delivers each one once when the store is back. (With the attempts' file writable, a
notification goes out during the store's outage: `test_endpoint_delivery`.)"""

import asyncio
import base64
import sqlite3
import time
import uuid
from collections.abc import Iterator

import aio_pika
import httpx
import pytest
from hookhub.events import EXCHANGE, Event
from hookhub_eventlog.store.consumer_tables import deliveries_file

from tests.support.broker import fresh_vhost
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.processes import start_consumer, wait_http_ready
from tests.support.settings import hub_env

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"store-outage-secret").decode()


def readyz_status(url: str) -> int:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def status_within(url: str, status: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if readyz_status(url) == status:
            return True
        time.sleep(0.2)
    return False


async def publish(amqp_url: str, event: Event) -> None:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(EXCHANGE)
        await exchange.publish(event.to_message(), event.routing_key)


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """What a user saw before, during and after a store outage of the notifications consumer."""
    tmp = tmp_path_factory.mktemp("store-outage")
    db_path = tmp / "hookhub.db"
    endpoint = NotifyEndpoint()
    event = Event(
        id=f"ci-{uuid.uuid4().hex[:8]}", source="/events/jenkins", type="ci.build", data=b"{}"
    )
    seen: dict = {}
    with fresh_vhost() as amqp_url:
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=f"sqlite:///{db_path}",
            HOOKHUB_NOTIFY_URL=endpoint.url,
            HOOKHUB_NOTIFY_SECRET=NOTIFY_SECRET,
            HOOKHUB_RETRY_DELAYS="0.5,0.5,0.5,0.5,0.5,0.5",
        )
        consumer, readyz = start_consumer("notifications", env, tmp)
        try:
            wait_http_ready(readyz, process=consumer)
            seen["ready_before"] = readyz_status(readyz)
            # Both files refuse writes: the store's and the delivery attempts' own beside it
            # (a notification is POSTed only once its attempt is recorded, and that file alone
            # going on would let it through).
            lockers = [
                sqlite3.connect(path, isolation_level=None)
                for path in (db_path, deliveries_file(db_path))
            ]
            for locker in lockers:
                locker.execute("BEGIN EXCLUSIVE")  # every write now waits, then fails
            try:
                seen["not_ready_during"] = status_within(readyz, 503, timeout_s=15)
                asyncio.run(publish(amqp_url, event))
                time.sleep(12)  # one write waits out SQLite's 10 s busy timeout, then retries
                seen["posts_during"] = len(endpoint.received)
            finally:
                for locker in lockers:
                    locker.execute("ROLLBACK")
                    locker.close()
            seen["ready_after"] = status_within(readyz, 200, timeout_s=15)
            endpoint.wait_for("ci.build", timeout_s=30)
            time.sleep(1)
            seen["posts_after"] = [r.headers["webhook-id"] for r in endpoint.received]
            seen["event_id"] = event.id
            seen["log"] = consumer.log
        finally:
            consumer.stop()
            endpoint.close()
    yield seen


def test_a_consumer_whose_store_refuses_writes_is_not_ready_until_it_takes_them_again(outage):
    assert outage["ready_before"] == 200
    assert outage["not_ready_during"], outage["log"][-2000:]
    assert outage["ready_after"], outage["log"][-2000:]
    assert '"store.unavailable"' in outage["log"]


def test_a_notification_is_not_posted_while_its_attempt_cannot_be_recorded_then_posted_once(
    outage,
):
    assert outage["posts_during"] == 0, outage["log"][-3000:]
    assert outage["posts_after"] == [outage["event_id"]], outage["log"][-3000:]
