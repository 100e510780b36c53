"""/readyz proves the round trip to the broker, as a load balancer needs it to: it turns 503 when
the broker refuses every publish, when an idle broker goes silent (within a documented bound), and
it stays true while hub-api fails over to another broker address."""

import asyncio
import time
import uuid

import aio_pika
import httpx
from api_processes import running_api
from hookhub.broker import PROBE_TIMEOUT_S, REFUSALS_BEFORE_REOPEN
from hookhub.events import EXCHANGE

from tests.support.broker import fresh_vhost
from tests.support.tcp_proxy import TcpProxy

PROBE_INTERVAL_S = 1.0
SILENCE_NOTICED_WITHIN_S = PROBE_INTERVAL_S + PROBE_TIMEOUT_S + 0.5
FAILOVER_AFTER_S = 1.0
RECOVERY_BOUND_S = 15


async def status_becomes(
    client: httpx.AsyncClient, path: str, status: int, within_s: float
) -> None:
    deadline = time.monotonic() + within_s
    while (response := await client.get(path)).status_code != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} still answers {response.status_code}, not {status}")
        await asyncio.sleep(0.05)


async def post_event(client: httpx.AsyncClient, event_type: str, event_id: str) -> int:
    response = await client.post("/events", json={"type": event_type, "id": event_id, "data": {}})
    return response.status_code


async def test_a_broker_refusing_every_publish_makes_readyz_503_until_a_publish_is_confirmed(
    tmp_path,
):
    event_type = f"ci.refused.{uuid.uuid4().hex[:8]}"
    with fresh_vhost() as amqp_url, running_api(amqp_url, tmp_path) as api:
        connection = await aio_pika.connect(amqp_url)
        async with connection, api.client() as client:
            channel = await connection.channel()
            full = await channel.declare_queue(
                "refuses-everything", arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
            )
            await full.bind(EXCHANGE, event_type)

            refused = []
            for _ in range(REFUSALS_BEFORE_REOPEN):
                refused.append(await post_event(client, event_type, str(uuid.uuid4())))
                refused.append((await client.get("/readyz")).status_code)

            await full.delete(if_unused=False, if_empty=False)
            accepted = await post_event(client, event_type, str(uuid.uuid4()))
            ready = (await client.get("/readyz")).status_code

    assert refused == [503, 503] * REFUSALS_BEFORE_REOPEN
    assert (accepted, ready) == (202, 200)
    assert '"broker.channel_reopened"' in api.process.log
    assert f"{REFUSALS_BEFORE_REOPEN} publishes refused in a row" in api.process.log


async def test_an_idle_api_whose_broker_goes_silent_is_503_within_the_bound_then_200(
    amqp_url, tmp_path
):
    with TcpProxy.to_url(amqp_url) as proxy:
        env = {
            "HOOKHUB_AMQP_URL": proxy.url_through(amqp_url, reconnect_interval="0.5"),
            "HOOKHUB_READINESS_PROBE_INTERVAL_S": str(PROBE_INTERVAL_S),
        }
        with running_api(amqp_url, tmp_path, **env) as api:
            async with api.client() as client:
                proxy.freeze()  # no traffic at all: only /readyz itself can notice
                started = time.monotonic()
                await status_becomes(client, "/readyz", 503, SILENCE_NOTICED_WITHIN_S)
                noticed_s = time.monotonic() - started

                proxy.restore()
                await status_becomes(client, "/readyz", 200, RECOVERY_BOUND_S)
    print(f"/readyz noticed the silent broker in {noticed_s:.2f}s")


async def test_an_api_with_two_broker_addresses_fails_over_and_accepts_the_retry(
    amqp_url, tmp_path, capture
):
    queue = await capture("ci.failover")
    with TcpProxy.to_url(amqp_url) as first, TcpProxy.to_url(amqp_url) as second:
        urls = ",".join(p.url_through(amqp_url, reconnect_interval="0.5") for p in (first, second))
        env = {"HOOKHUB_AMQP_URL": urls, "HOOKHUB_FAILOVER_AFTER_S": str(FAILOVER_AFTER_S)}
        with running_api(amqp_url, tmp_path, **env) as api:
            async with api.client() as client:
                assert await post_event(client, "ci.failover", "before-failover") == 202
                first.cut()  # that node is gone for good
                started = time.monotonic()
                await status_becomes(client, "/readyz", 503, within_s=2)

                statuses = []
                while 202 not in statuses[-1:]:  # the caller retries its 503s, same id
                    assert time.monotonic() - started < RECOVERY_BOUND_S, statuses
                    statuses.append(await post_event(client, "ci.failover", "after-failover"))
                    await asyncio.sleep(0.1)
                failover_s = time.monotonic() - started
                assert (await client.get("/readyz")).status_code == 200

    print(f"hub-api accepted events again {failover_s:.2f}s after losing its broker node")
    assert [(await queue.get()).message_id for _ in range(2)] == [
        "before-failover",
        "after-failover",
    ]
    assert '"broker.failover"' in api.process.log
    assert ":guest@" not in api.process.log  # the password is never logged
