"""The real RabbitMQ under test: private vhosts on it, and a queue that captures what the hub
published."""

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import aio_pika

BROKER_ADMIN_URL = os.environ.get("HOOKHUB_TEST_AMQP_ADMIN", "amqp://guest:guest@127.0.0.1:5672/")


def rabbitmqctl(*args: str) -> None:
    """`rabbitmqctl -q <args>` against the shared broker; raises if it fails."""
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def fresh_vhost() -> Iterator[str]:
    """A new vhost on the real broker, removed afterwards; yields its AMQP URL."""
    vhost = f"hookhub-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield BROKER_ADMIN_URL.rstrip("/") + "/" + vhost
    finally:
        rabbitmqctl("delete_vhost", vhost)


class CapturedQueue:
    """An exclusive queue bound to hookhub.events: what the exchange routed while it existed."""

    def __init__(self, queue: aio_pika.abc.AbstractQueue) -> None:
        self.queue = queue

    async def get(self, timeout_s: float = 5) -> aio_pika.abc.AbstractIncomingMessage:
        deadline = time.monotonic() + timeout_s
        while True:
            message = await self.queue.get(no_ack=True, fail=False)
            if message is not None:
                return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no message on {self.queue.name} within {timeout_s}s")
            await asyncio.sleep(0.02)

    async def empty(self) -> bool:
        return await self.queue.get(no_ack=True, fail=False) is None
