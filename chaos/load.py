"""The load: orders created by a storefront, paid through Stripe, and CI reports, sent as real
senders send them.

Every order is four events, each with an id of its own: `order.created` to `POST /events` (the
storefront), a signed `payment_intent.succeeded` to `POST /webhooks/stripe`, a `ci.*` event to
`POST /events` (Jenkins) that only the notifications consumer handles, and `production.finished`
(the workshop), sent once the receiver has heard the order's `payment.approved`. A sender that
gets a 5xx or no answer at all sends the same event again, with the same id (Stripe signs each
attempt anew), until it gets a 202 or gives up after GIVE_UP_S: a 202 is the hub's promise, and
every other answer leaves the event with the sender.
"""

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.support.senders import stripe_event
from tests.support.settings import GATEWAY_SECRET
from tests.support.signing import signed_request

# Real providers wait Retry-After (hub-api says 5 s) and back off for days; compressed so that a
# scenario lasts seconds, yet still spaced so a sender does not hammer a hub that is down.
RETRY_INTERVAL_S = 0.5
GIVE_UP_S = 25.0
REQUEST_TIMEOUT_S = 5.0


@dataclass
class Sent:
    """One event, as its sender keeps trying to deliver it."""

    kind: str  # "order" (order.created), "payment" (the Stripe webhook), "ci", "finished"
    order_id: str
    first_sent_at: float
    statuses: Counter[str] = field(default_factory=Counter)  # "202", "503", "error", ...
    accepted_at: float | None = None


def new_order_id() -> str:
    return f"chaos-{uuid.uuid4().hex[:12]}"


class Load:
    """Open-loop load: a new order every 1/rate s, whatever the hub answers, as a shop's
    customers do not wait for the hub."""

    def __init__(self, api_url: str, orders_per_s: float) -> None:
        self.api_url = api_url
        self.interval_s = 1 / orders_per_s
        self.sent: list[Sent] = []
        self._senders: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._workshop: asyncio.Task[None] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Start orders until `stop` is set, then wait until every sender got its 202 or gave up
        (and, with a workshop, until it is done and its senders too)."""
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(
            base_url=self.api_url, timeout=REQUEST_TIMEOUT_S, limits=limits
        ) as client:
            self._client = client
            next_at = time.monotonic()
            while not stop.is_set():
                order_id = new_order_id()
                for kind in AT_ONCE:
                    self._send(client, Sent(kind, order_id, time.monotonic()))
                next_at += self.interval_s
                try:
                    await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
                except TimeoutError:
                    pass
            await self.drain()
            if self._workshop is not None:
                await self._workshop
            await self.drain()

    async def drain(self) -> None:
        while self._senders:
            await asyncio.wait(set(self._senders))

    def workshop(self, approved: Callable[[], set[str]], done: asyncio.Event) -> None:
        """The workshop: finishes each order of ours once the receiver has its
        payment.approved (`approved()` says which), until `done` is set."""
        self._workshop = asyncio.create_task(self._finish(approved, done))

    async def _finish(self, approved: Callable[[], set[str]], done: asyncio.Event) -> None:
        finished: set[str] = set()
        while True:
            ours = {s.order_id for s in self.sent if s.kind == "payment"}
            for order_id in sorted((approved() & ours) - finished):
                finished.add(order_id)
                if self._client is not None:
                    self._send(self._client, Sent("finished", order_id, time.monotonic()))
            if done.is_set():
                return
            await asyncio.sleep(WORKSHOP_POLL_S)

    def _send(self, client: httpx.AsyncClient, sent: Sent) -> None:
        self.sent.append(sent)
        task = asyncio.create_task(self._deliver(client, sent))
        self._senders.add(task)
        task.add_done_callback(self._senders.discard)

    async def _deliver(self, client: httpx.AsyncClient, sent: Sent) -> None:
        body = BODIES[sent.kind](sent.order_id)
        while True:
            try:
                response = await client.post(**request(sent.kind, body))
                outcome = str(response.status_code)
            except httpx.HTTPError:  # refused, reset, timed out: the hub never answered
                outcome = "error"
            sent.statuses[outcome] += 1
            if outcome == "202":
                sent.accepted_at = time.monotonic()
                return
            if outcome not in RETRIED:
                return  # the sender's own fault: sending it again changes nothing
            if time.monotonic() - sent.first_sent_at > GIVE_UP_S:
                return
            await asyncio.sleep(RETRY_INTERVAL_S)


def gateway_headers(caller: str) -> dict[str, str]:
    """What Kong adds in front of hub-api."""
    return {"x-hookhub-gateway-secret": GATEWAY_SECRET, "x-consumer-username": caller}


def request(kind: str, body: bytes) -> dict:
    """The POST a sender of this kind makes (httpx `post` arguments); Stripe signs each anew."""
    if kind == "payment":
        headers, query, raw = signed_request("stripe", body)
        return {
            "url": "/webhooks/stripe",
            "content": raw,
            "params": query,
            "headers": {**headers, **gateway_headers("stripe")},
        }
    caller = {"order": "storefront", "ci": "jenkins", "finished": "workshop"}[kind]
    headers = {"content-type": "application/cloudevents+json", **gateway_headers(caller)}
    return {"url": "/events", "content": body, "headers": headers}


def cloudevent(event_id: str, event_type: str, data: dict) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": event_id, "type": event_type, "data": data}
    ).encode()


def order_created(order_id: str) -> bytes:
    customer = {"id": "c1", "email": "ana@example.com", "name": "Ana"}
    return cloudevent(
        event_id("order", order_id),
        "order.created",
        {
            "order_id": order_id,
            "customer": customer,
            "items": [{"sku": "mug", "quantity": 1}],
            "amount": 4990,
            "currency": "BRL",
        },
    )


def payment(order_id: str) -> bytes:
    """Stripe's payment_intent.succeeded for the order; its event id is fixed per order, so
    every attempt is the same event."""
    return stripe_event(order_id, event_id=event_id("payment", order_id))


def ci_event_id(order_id: str) -> str:
    return f"ci-{order_id}"


def ci_report(order_id: str) -> bytes:
    # The order id in the data too, so that a parked copy can be told apart like the others.
    return cloudevent(ci_event_id(order_id), "ci.chaos.build", {"order_id": order_id})


def production_finished(order_id: str) -> bytes:
    return cloudevent(event_id("finished", order_id), "production.finished", {"order_id": order_id})


def event_id(kind: str, order_id: str) -> str:
    """The id each sender gives its event of this kind about the order."""
    return {
        "order": f"order-{order_id}",
        "payment": f"evt_{order_id}",
        "ci": ci_event_id(order_id),
        "finished": f"finished-{order_id}",
    }[kind]


BODIES = {
    "order": order_created,
    "payment": payment,
    "ci": ci_report,
    "finished": production_finished,
}
KINDS = tuple(BODIES)
AT_ONCE = ("order", "payment", "ci")  # production.finished waits for the approval
WORKSHOP_POLL_S = 0.2
# What a provider retries: a 5xx (503 is the hub's "not confirmed", any other is a bug) and no
# answer at all; 408 and 429 as well, as Stripe does.
RETRIED = {"error", "408", "429", *(str(code) for code in range(500, 600))}
