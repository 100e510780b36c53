"""Fixtures shared by every test directory: a private RabbitMQ vhost and a running hub-api.

Each test session gets its own vhost on the real broker, so runs never see each other's queues.
The helpers these fixtures are made of, and that tests use directly, live in `tests/support/`.
"""

from collections.abc import AsyncIterator, Iterator

import aio_pika
import httpx
import pytest

from tests.support.broker import CapturedQueue, fresh_vhost
from tests.support.processes import start_api, wait_http_ready
from tests.support.settings import GATEWAY_SECRET


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A fresh vhost for this session."""
    with fresh_vhost() as url:
        yield url


@pytest.fixture(scope="session")
def hub_api(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """hub-api running as `hookhub api` against the session vhost; yields its base URL."""
    process, base_url = start_api(amqp_url, tmp_path_factory.mktemp("hub-api"))
    wait_http_ready(f"{base_url}/readyz", process=process)
    yield base_url
    process.stop()


@pytest.fixture
async def api(hub_api: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client to hub-api that comes through the gateway as Kong would."""
    headers = {"x-hookhub-gateway-secret": GATEWAY_SECRET, "x-consumer-username": "tests"}
    async with httpx.AsyncClient(base_url=hub_api, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(amqp_url)
    yield connection
    await connection.close()


@pytest.fixture
async def capture(broker: aio_pika.abc.AbstractRobustConnection):
    """Factory: `await capture("stripe.#")` binds a fresh queue to the keys given."""
    channel = await broker.channel()

    async def bind(*keys: str) -> CapturedQueue:
        exchange = await channel.get_exchange("hookhub.events")
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in keys or ("#",):
            await queue.bind(exchange, key)
        return CapturedQueue(queue)

    yield bind
    await channel.close()
