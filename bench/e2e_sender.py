"""The end-to-end benchmark's open-loop sender: orders at a fixed rate, whatever the answers.

Each order is what a shop sends the hub: `order.created` (POST /events, as the storefront behind
Kong) and, once that is accepted, the customer's Stripe `payment_intent.succeeded` webhook (POST
/webhooks/stripe, signed as Stripe signs it, with the headers Kong adds; `metadata.order_id`
names the order). Order i starts at start + i / rate in a task of its own, so a slow answer
delays only its own order, never the next: the offered rate holds however the hub copes. (wrk is
closed-loop: it slows down with the server and so hides the queue a fixed rate builds.)

Plain HTTP/1.1 on asyncio streams with keep-alive connections, opened as answers slow down, up
to MAX_CONNECTIONS: a request costs the sender little enough that at 1,000 orders/s (2,000
requests/s) it used about a tenth of a core here; bench/e2e.py reports the CPU it used.
"""

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from hookhub.gateway import CONSUMER_HEADER, GATEWAY_SECRET_HEADER

PAYMENT_TYPE = "payment_intent.succeeded"
STOREFRONT = "storefront"  # the caller Kong authenticated for POST /events
MAX_CONNECTIONS = 1024  # beyond this a request waits for a connection (its latency shows it)
REQUEST_TIMEOUT_S = 10.0  # hub-api answers 503 after its 5 s confirm timeout: an answer, counted
# A failed request, counted by its exception's name: a connection refused or reset (OSError,
# IncompleteReadError), no answer in time (TimeoutError), an answer that is not HTTP (the rest).
REQUEST_FAILURES = (
    OSError,
    asyncio.IncompleteReadError,
    TimeoutError,
    asyncio.LimitOverrunError,
    ValueError,
)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: no answer, see `error`
    error: str | None
    latency_s: float  # from the request's start (before waiting for a connection) to its answer
    at: float  # wall clock (time.time()) when the answer came: the witness uses the same clock


@dataclass(slots=True)
class Order:
    order_id: str
    in_window: bool  # False for the warm-up's orders, which no figure counts
    lag_s: float = 0.0  # how late its task started after its scheduled time
    created: Answer | None = None
    paid: Answer | None = None

    @property
    def accepted_at(self) -> float | None:
        """When the Stripe webhook's 202 came back: where the end-to-end clock starts."""
        return self.paid.at if self.paid is not None and self.paid.status == 202 else None


@dataclass(frozen=True, slots=True)
class Sent:
    orders: list[Order]
    window_s: float  # from the first window order's start to the last one's, plus one interval
    peak_in_flight: int  # requests in flight at once, at most (each on a connection of its own)


def order_created(order_id: str) -> bytes:
    data = {
        "order_id": order_id,
        "customer": {"id": "cus_bench", "email": "bench@example.com", "name": "Bench Buyer"},
        "items": [{"sku": "mug", "quantity": 1}],
        "amount": 4990,
        "currency": "BRL",
    }
    event = {"specversion": "1.0", "type": "order.created", "id": f"created-{order_id}"}
    return json.dumps({**event, "source": "/storefront", "data": data}).encode()


def stripe_payment(order_id: str) -> bytes:
    """Stripe's `payment_intent.succeeded` for the order, shaped as the tests' `stripe_event`."""
    intent = {
        "id": f"pi_{order_id}",
        "object": "payment_intent",
        "amount": 4990,
        "amount_received": 4990,
        "currency": "brl",
        "status": "succeeded",
        "metadata": {"order_id": order_id},
    }
    event = {"id": f"evt_{order_id}", "object": "event", "api_version": "2024-06-20"}
    event |= {"created": int(time.time()), "type": PAYMENT_TYPE, "data": {"object": intent}}
    return json.dumps(event).encode()


def stripe_signature(body: bytes, secret: str, timestamp_s: int) -> str:
    """Stripe-Signature: t=<unix>,v1=<HMAC-SHA256 hex of "<t>.<body>">."""
    digest = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256)
    return f"t={timestamp_s},v1={digest.hexdigest()}"


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reusable = True

    async def exchange(self, request: bytes) -> int:
        """Send one request, read its whole answer; the status code."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length = int(head[9:12]), 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                self.reusable = False
        if length:
            await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


class Sender:
    """Orders into the hub-api at host:port, through the gateway as Kong sends them; one
    sender per offered rate."""

    def __init__(self, host: str, port: int, gateway_secret: str, stripe_secret: str):
        self.host, self.port = host, port
        self.gateway_secret, self.stripe_secret = gateway_secret, stripe_secret
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._busy = self._peak = 0

    def _request(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"POST {path} HTTP/1.1", f"host: {self.host}:{self.port}"]
        lines += [f"content-length: {len(body)}", f"{GATEWAY_SECRET_HEADER}: {self.gateway_secret}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def _created_request(self, order_id: str) -> bytes:
        headers = {"content-type": "application/cloudevents+json", CONSUMER_HEADER: STOREFRONT}
        return self._request("/events", order_created(order_id), headers)

    def _payment_request(self, order_id: str) -> bytes:
        body = stripe_payment(order_id)
        signature = stripe_signature(body, self.stripe_secret, int(time.time()))
        headers = {"content-type": "application/json", "stripe-signature": signature}
        return self._request("/webhooks/stripe", body, headers | {CONSUMER_HEADER: "stripe"})

    async def _send(self, request: bytes) -> Answer:
        started = time.perf_counter()  # a wait for a free connection counts: open loop
        async with self._slots:
            self._busy += 1
            self._peak = max(self._peak, self._busy)
            connection = None
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    connection = self._idle_connection() or await self._connect()
                    status = await connection.exchange(request)
            except REQUEST_FAILURES as exc:
                if connection is not None:
                    connection.close()
                return Answer(None, type(exc).__name__, time.perf_counter() - started, time.time())
            finally:
                self._busy -= 1
            if connection.reusable:
                self._idle.append(connection)
            else:
                connection.close()
            return Answer(status, None, time.perf_counter() - started, time.time())

    def _idle_connection(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()  # the most recently used: least likely timed out
            if not connection.reader.at_eof():  # the server closed it while idle
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        return _Connection(*await asyncio.open_connection(self.host, self.port))

    async def _order(self, order: Order) -> None:
        order.created = await self._send(self._created_request(order.order_id))
        order.paid = await self._send(self._payment_request(order.order_id))

    async def offer(self, rate_per_s: int, warmup_s: float, window_s: float, tag: str) -> Sent:
        """Orders at `rate_per_s` for the warm-up then the window; returns once every order has
        its answers. Order ids are `<tag>-<n>`."""
        loop = asyncio.get_running_loop()
        warmup_count = round(rate_per_s * warmup_s)
        total = warmup_count + round(rate_per_s * window_s)
        orders = [Order(f"{tag}-{i:06d}", in_window=i >= warmup_count) for i in range(total)]
        tasks, window_starts = [], []
        start = loop.time()
        for i, order in enumerate(orders):
            due = start + i / rate_per_s
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            order.lag_s = now - due
            if order.in_window:
                window_starts.append(now)
            tasks.append(asyncio.create_task(self._order(order)))
        await asyncio.gather(*tasks)
        self.close()
        span_s = window_starts[-1] - window_starts[0] + 1 / rate_per_s if window_starts else 0.0
        return Sent(orders, span_s, self._peak)

    def close(self) -> None:
        """Close idle connections (hub-api would drop them after its keep-alive timeout)."""
        while self._idle:
            self._idle.pop().close()
