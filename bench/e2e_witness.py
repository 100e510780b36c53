"""The witness: where the end-to-end benchmark sees each order's payment take effect.

A process of its own beside the hub, recording the moment each of these reaches it, one line per
arrival in the file BENCH_WITNESS_FILE (`<kind>\\t<order id>\\t<unix time>`):

- `approved`: the payments consumer's `payment.approved` for the order, on a queue of the
  witness's own bound to hookhub.events. The consumer publishes it only after the commit that
  makes the order approved in its store (the outbox), so this is the payment's effect, made known
  to the rest of the hub; it reads no store, so it holds for SQLite and MongoDB alike.
- `notified:<type>`: a notification the notifications consumer POSTed here: the witness is also
  the receiver a team configures in HOOKHUB_NOTIFY_URL (the tests' is
  tests/support/notify_endpoint.py).

Separate from the runner so that recording never shares an event loop with the sender, and its
CPU shows on its own line. An ASGI app served by uvicorn (bench/e2e.py starts it): uvicorn
serves only once the lifespan start-up has bound the queue, so GET answering 200 means ready.
"""

import json
import os
import time
from typing import Any

import aiormq
from hookhub.events import EXCHANGE

OBSERVED_TYPE = "payment.approved"
APPROVED = "approved"  # the kind of line for an OBSERVED_TYPE event seen on the exchange


def notified(event_type: str) -> str:
    """The kind of line for a notification of `event_type` received."""
    return f"notified:{event_type}"


NOTIFIED = notified(OBSERVED_TYPE)  # the order's payment.approved, received as a notification


class Witness:
    def __init__(self, amqp_url: str, path: str) -> None:
        self.amqp_url = amqp_url
        # O_APPEND: one write per line, each whole, read by the runner while this one writes.
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._connection: aiormq.abc.AbstractConnection | None = None

    def record(self, kind: str, order_id: str, at: float) -> None:
        os.write(self._fd, f"{kind}\t{order_id}\t{at:.6f}\n".encode())

    async def start(self) -> None:
        # aiormq without aio-pika's wrapper, and no acks (the broker forgets each message as it
        # sends it): the least CPU for a process that runs beside the hub under test.
        self._connection = await aiormq.connect(self.amqp_url)
        channel = await self._connection.channel()
        declared = await channel.queue_declare(exclusive=True, auto_delete=True)
        await channel.queue_bind(declared.queue, EXCHANGE, routing_key=OBSERVED_TYPE)
        await channel.basic_consume(declared.queue, self._approved, no_ack=True)

    async def _approved(self, message: aiormq.abc.DeliveredMessage) -> None:
        at = time.time()
        self.record(APPROVED, json.loads(message.body)["order_id"], at)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        os.close(self._fd)


class App:
    """The ASGI app: POST is a notification, recorded; anything else answers 200 (readiness)."""

    def __init__(self) -> None:
        self.witness: Witness | None = None  # made at start-up, from what bench/e2e.py passes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["method"] == "POST" and self.witness is not None:
            body, more = b"", True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            at = time.time()
            notification = json.loads(body)  # the Standard Webhooks payload, signature unchecked
            data = notification.get("data")
            order_id = data.get("order_id", "-") if isinstance(data, dict) else "-"
            self.witness.record(notified(notification["type"]), order_id, at)
        headers = [(b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                amqp_url, path = os.environ["BENCH_AMQP_URL"], os.environ["BENCH_WITNESS_FILE"]
                self.witness = Witness(amqp_url, path)
                await self.witness.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.witness is not None:
                    await self.witness.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


app = App()
