"""The broker goes away, stops answering or refuses a message: hub-api answers 503 quickly, says
so on /readyz, and recovers by itself. An outage is a TCP proxy between one hub-api and the shared
RabbitMQ being cut or frozen; the broker itself keeps running for everybody else."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import aio_pika
import httpx
import pytest
from api_processes import RunningApi, running_api
from hookhub.events import EXCHANGE
from hookhub.settings import Settings
from hookhub.topology import UNROUTED_QUEUE
from provider_webhooks import webhook

from tests.support.broker import fresh_vhost
from tests.support.settings import hub_env
from tests.support.tcp_proxy import TcpProxy

PUBLISH_TIMEOUT_S = float(hub_env("amqp://")["HOOKHUB_PUBLISH_TIMEOUT_S"])
ANSWER_BOUND_S = PUBLISH_TIMEOUT_S + 3  # a correctness bound (never a hang), not a benchmark
RECOVERY_BOUND_S = 15
RETRY_AFTER_S = str(Settings.model_fields["retry_after_s"].default)
UNAVAILABLE = "the event was not accepted: the message broker is unavailable; retry later"


def proxied_env(proxy: TcpProxy, amqp_url: str) -> dict[str, str]:
    # A short client reconnect interval keeps the test quick; the mechanism is the production one.
    return {"HOOKHUB_AMQP_URL": proxy.url_through(amqp_url, reconnect_interval="0.5")}


async def status_becomes(
    client: httpx.AsyncClient, path: str, status: int, within_s: float
) -> None:
    deadline = time.monotonic() + within_s
    while (response := await client.get(path)).status_code != status:
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} still answers {response.status_code}, not {status}")
        await asyncio.sleep(0.1)


async def assert_refused_quickly(response: httpx.Response, elapsed_s: float, everything) -> None:
    """503 with the detail and Retry-After, within the bound, and nothing on the exchange."""
    assert response.status_code == 503
    assert response.json()["detail"] == UNAVAILABLE
    assert response.headers["retry-after"] == RETRY_AFTER_S
    assert elapsed_s < ANSWER_BOUND_S
    assert await everything.empty()


@pytest.fixture(scope="module")
def proxy(amqp_url: str) -> Iterator[TcpProxy]:
    with TcpProxy.to_url(amqp_url) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def proxied_api(
    proxy: TcpProxy, amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    """hub-api whose only way to the broker is through `proxy`."""
    tmp = tmp_path_factory.mktemp("proxied-api")
    with running_api(amqp_url, tmp, **proxied_env(proxy, amqp_url)) as running:
        yield running


@pytest.fixture
async def client(proxied_api: RunningApi) -> AsyncIterator[httpx.AsyncClient]:
    async with proxied_api.client() as client:
        yield client


@pytest.fixture
async def broker_down(proxy: TcpProxy, client: httpx.AsyncClient) -> AsyncIterator[None]:
    """The broker unreachable for the test; back, and hub-api ready again, afterwards."""
    proxy.cut()
    yield
    proxy.restore()
    await status_becomes(client, "/readyz", 200, RECOVERY_BOUND_S)


@pytest.fixture
async def broker_silent(proxy: TcpProxy, client: httpx.AsyncClient) -> AsyncIterator[None]:
    """The broker's connection open but nothing getting through: no confirm ever comes."""
    proxy.freeze()
    yield
    proxy.restore()
    await status_becomes(client, "/readyz", 200, RECOVERY_BOUND_S)


@pytest.fixture
async def everything(capture):
    return await capture("#")


async def test_broker_down_webhook_gets_503_with_retry_after_quickly_and_nothing_published(
    client, broker_down, everything
):
    started = time.monotonic()
    response = await client.post(**webhook("stripe").request())
    elapsed_s = time.monotonic() - started

    await assert_refused_quickly(response, elapsed_s, everything)


async def test_broker_down_event_gets_503_with_retry_after_quickly_and_nothing_published(
    client, broker_down, everything
):
    started = time.monotonic()
    response = await client.post(
        "/events",
        json={"type": "ci.build", "data": {}},
        headers={"content-type": "application/json"},
    )
    elapsed_s = time.monotonic() - started

    await assert_refused_quickly(response, elapsed_s, everything)


async def test_silent_broker_gets_503_within_the_publish_timeout_and_nothing_published(
    client, broker_silent, everything
):
    started = time.monotonic()
    response = await client.post(**webhook("kiwify").request())
    elapsed_s = time.monotonic() - started

    await assert_refused_quickly(response, elapsed_s, everything)


async def test_message_the_broker_refuses_gets_503_with_retry_after(api, broker):
    # A queue that rejects every publish makes the broker nack the message.
    event_type = f"ci.refused.{uuid.uuid4().hex}"
    channel = await broker.channel()
    full = await channel.declare_queue(
        exclusive=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"}
    )
    await full.bind(await channel.get_exchange("hookhub.events"), event_type)

    response = await api.post("/events", json={"type": event_type, "data": {}})
    await channel.close()

    assert response.status_code == 503
    assert response.json()["detail"] == UNAVAILABLE
    assert response.headers["retry-after"] == RETRY_AFTER_S


async def test_broker_down_readyz_is_503_while_livez_stays_200(client, broker_down):
    await status_becomes(client, "/readyz", 503, within_s=1)

    assert (await client.get("/readyz")).json() == {"status": "broker unavailable"}
    assert (await client.get("/livez")).status_code == 200


async def test_broker_back_the_same_api_process_is_ready_and_publishes_again(
    proxy, proxied_api, client, capture
):
    hook = webhook("github")
    queue = await capture(hook.event_type)
    pid = proxied_api.process.process.pid
    proxy.cut()
    assert (await client.post(**webhook("github").request())).status_code == 503

    proxy.restore()
    await status_becomes(client, "/readyz", 200, RECOVERY_BOUND_S)
    response = await client.post(**hook.request())

    assert response.status_code == 202, response.text
    assert (await queue.get()).message_id == hook.event_id
    assert proxied_api.process.process.pid == pid and proxied_api.process.process.poll() is None


async def test_api_started_without_a_broker_is_live_not_ready_then_ready_once_it_is_back(
    amqp_url, tmp_path, capture
):
    hook = webhook("hmac")
    queue = await capture(hook.event_type)
    with TcpProxy.to_url(amqp_url) as proxy:
        proxy.cut()
        with running_api(amqp_url, tmp_path, ready="/livez", **proxied_env(proxy, amqp_url)) as api:
            async with api.client() as client:
                assert (await client.get("/readyz")).status_code == 503
                assert (await client.post(**webhook("hmac").request())).status_code == 503

                proxy.restore()
                await status_becomes(client, "/readyz", 200, RECOVERY_BOUND_S)
                response = await client.post(**hook.request())

    assert response.status_code == 202, response.text
    assert (await queue.get()).message_id == hook.event_id


async def test_silent_broker_makes_readyz_fail_after_a_stalled_confirm(client, broker_silent):
    # The TCP connection stays open, so only the missing confirm tells us; the fixture's teardown
    # then proves /readyz comes back by itself once the broker answers again.
    for _ in range(2):  # the first may meet a channel still being restored after the last test
        response = await client.post(**webhook("kiwify").request())
        assert response.status_code == 503
    assert (await client.get("/readyz")).status_code == 503


async def test_exchange_deleted_under_a_live_connection_is_declared_again(tmp_path):
    """Someone deletes hookhub.events while hub-api stays connected: the publish that finds it
    missing gets a 503, hub-api declares the topology again, and the caller's retry gets 202."""
    # Without the archive (which takes every event), so that an unbound event shows whether
    # the alternate exchange came back with the rest.
    no_archive = {"HOOKHUB_ARCHIVE_ENABLED": "false"}
    with fresh_vhost() as amqp_url, running_api(amqp_url, tmp_path, **no_archive) as running:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            await channel.exchange_delete(EXCHANGE)
            async with running.client() as client:
                statuses = []
                deadline = time.monotonic() + RECOVERY_BOUND_S
                while time.monotonic() < deadline and 202 not in statuses:
                    statuses.append((await client.post(**webhook("github").request())).status_code)
                    await asyncio.sleep(0.1)
            unrouted = await channel.declare_queue(UNROUTED_QUEUE, passive=True)
    assert statuses[0] == 503
    assert statuses[-1] == 202, statuses
    # github.push has no consumer: it lands in hookhub.unrouted, so the alternate exchange is back.
    assert unrouted.declaration_result.message_count == 1
    assert '"topology.redeclaring"' in running.process.log
