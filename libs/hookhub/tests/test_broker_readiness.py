"""Readiness proves the round trip to the real broker: a channel the broker keeps refusing is
replaced, and an idle process notices a broker gone silent within a bounded time, at the cost of
at most one probe per interval however often it is asked."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aio_pika
import pytest
from hookhub.broker import (
    PROBE_TIMEOUT_S,
    READINESS_PROBE,
    REFUSALS_BEFORE_REOPEN,
    Broker,
    BrokerUnavailable,
)
from hookhub.events import EXCHANGE, Event
from hookhub.settings import Settings
from structlog.testing import capture_logs

from tests.support.broker import fresh_vhost
from tests.support.tcp_proxy import TcpProxy

PROBE_INTERVAL_S = 1.0
# Silent for one interval, then a probe that times out; plus the polling step and some slack.
SILENCE_NOTICED_WITHIN_S = PROBE_INTERVAL_S + PROBE_TIMEOUT_S + 0.5
RECOVERY_BOUND_S = 10


@pytest.fixture
def amqp_url():
    with fresh_vhost() as url:
        yield url


@pytest.fixture
async def start_broker() -> AsyncIterator[Callable[..., Awaitable[Broker]]]:
    """Factory: `await start_broker(url, **settings)`, connected; closed after the test."""
    brokers: list[Broker] = []

    async def start(url: str, **settings: object) -> Broker:
        broker = Broker(Settings(amqp_url=url, **settings))
        brokers.append(broker)
        await broker.start()
        assert await broker.wait_ready(10)
        return broker

    yield start
    for broker in brokers:
        await broker.close()


@asynccontextmanager
async def broker_refusing(amqp_url: str, routing_key: str) -> AsyncIterator[None]:
    """A queue that rejects every publish, bound to `routing_key`: the broker nacks those
    messages, as a quorum queue without a usable leader does. Gone after the block."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        full = await channel.declare_queue(
            f"refuses-{uuid.uuid4().hex[:8]}",
            arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
        )
        await full.bind(EXCHANGE, routing_key)
        yield
        await full.delete(if_unused=False, if_empty=False)


def event(event_type: str) -> Event:
    return Event(id=str(uuid.uuid4()), source="tests", type=event_type, data=b"{}")


async def readiness_becomes(broker: Broker, ready: bool, within_s: float) -> float:
    """Poll `check()` as /readyz would; the seconds it took to say `ready`."""
    started = time.monotonic()
    while await broker.check() != ready:
        if time.monotonic() - started > within_s:
            raise AssertionError(f"check() still says {not ready} after {within_s}s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def logged(logs: list[dict], name: str, within_s: float = 5) -> dict:
    deadline = time.monotonic() + within_s
    while not (lines := [line for line in logs if line["event"] == name]):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {name} log line in {[line['event'] for line in logs]}")
        await asyncio.sleep(0.05)
    return lines[0]


async def test_a_channel_the_broker_keeps_refusing_is_reopened_and_not_ready_until_a_confirm(
    amqp_url, start_broker
):
    broker = await start_broker(amqp_url)
    assert await broker.check()

    with capture_logs() as logs:
        readiness = []
        async with broker_refusing(amqp_url, "ci.refused"):
            for _ in range(REFUSALS_BEFORE_REOPEN):
                with pytest.raises(BrokerUnavailable, match="refused"):
                    await broker.publish(event("ci.refused"))
                readiness.append(await broker.check())
            reopened = await logged(logs, "broker.channel_reopened")

        await broker.publish(event("ci.refused"))  # no refusing queue any more: confirmed

    assert readiness == [False] * REFUSALS_BEFORE_REOPEN
    assert f"{REFUSALS_BEFORE_REOPEN} publishes refused in a row" in reopened["reason"]
    assert broker.ready and await broker.check()


async def test_an_idle_broker_that_goes_silent_is_not_ready_within_the_bound_then_ready_again(
    amqp_url, start_broker
):
    with TcpProxy.to_url(amqp_url) as proxy:
        broker = await start_broker(
            proxy.url_through(amqp_url, reconnect_interval="0.5"),
            readiness_probe_interval_s=PROBE_INTERVAL_S,
        )
        assert await broker.check()

        proxy.freeze()  # nothing published: only readiness itself can notice
        noticed_s = await readiness_becomes(broker, False, SILENCE_NOTICED_WITHIN_S)
        proxy.restore()
        recovered_s = await readiness_becomes(broker, True, RECOVERY_BOUND_S)
        await broker.publish(event("ci.after-silence"))

    print(f"silent broker noticed in {noticed_s:.2f}s, ready again {recovered_s:.2f}s after")


async def test_readiness_checks_share_one_probe_per_interval_and_cost_nothing_under_traffic(
    amqp_url, start_broker
):
    broker = await start_broker(amqp_url, readiness_probe_interval_s=PROBE_INTERVAL_S)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        # A queue under the probe's name catches the probes, so they can be counted.
        probes = await channel.declare_queue(READINESS_PROBE, exclusive=True)

        async def probes_sent() -> int:
            return (
                await channel.declare_queue(READINESS_PROBE, passive=True)
            ).declaration_result.message_count

        await asyncio.sleep(PROBE_INTERVAL_S)  # idle: the round trip needs proving again
        assert all(await asyncio.gather(*(broker.check() for _ in range(50))))
        for _ in range(10):  # polled often within the interval
            assert await broker.check()
            await asyncio.sleep(PROBE_INTERVAL_S / 20)
        idle_probes = await probes_sent()

        await probes.purge()
        deadline = time.monotonic() + 2 * PROBE_INTERVAL_S
        while time.monotonic() < deadline:  # traffic: every publish is a proof of its own
            await broker.publish(event("ci.traffic"))
            assert await broker.check()
            await asyncio.sleep(PROBE_INTERVAL_S / 10)
        busy_probes = await probes_sent()

    assert idle_probes == 1
    assert busy_probes == 0
