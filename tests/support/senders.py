"""Requests as the hub's senders make them: a storefront's orders, Stripe's webhooks, and an
internal service's events through Kong."""

import json
import time
import uuid

import httpx

from tests.support.settings import GATEWAY_SECRET
from tests.support.signing import signed_request


def new_order_id() -> str:
    return f"ord-{uuid.uuid4().hex[:10]}"


async def post_event(
    client: httpx.AsyncClient, type: str, data: object, id: str | None = None
) -> httpx.Response:
    body = {"specversion": "1.0", "type": type, "source": "/storefront", "data": data}
    if id:
        body["id"] = id
    response = await client.post(
        "/events",
        content=json.dumps(body),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert response.status_code == 202, response.text
    return response


async def create_order(
    client: httpx.AsyncClient, order_id: str, amount: int = 4990
) -> httpx.Response:
    return await post_event(
        client,
        "order.created",
        {
            "order_id": order_id,
            "customer": {"id": "c1", "email": "ana@example.com", "name": "Ana"},
            "items": [{"sku": "mug", "quantity": 1}],
            "amount": amount,
            "currency": "BRL",
        },
    )


def stripe_event(
    order_id: str,
    type: str = "payment_intent.succeeded",
    event_id: str | None = None,
    amount: int = 4990,
    currency: str = "brl",
) -> bytes:
    intent = f"pi_{order_id}"
    if type == "charge.refunded":
        obj = {
            "id": f"ch_{order_id}",
            "object": "charge",
            "payment_intent": intent,
            "amount": amount,
            "amount_refunded": amount,
            "refunded": True,
            "currency": currency,
            "metadata": {"order_id": order_id},
        }
    elif type == "charge.dispute.created":
        # Stripe's own object: no metadata of the storefront's, only the payment it disputes.
        obj = {
            "id": f"dp_{order_id}",
            "object": "dispute",
            "charge": f"ch_{order_id}",
            "payment_intent": intent,
            "amount": amount,
            "currency": currency,
            "metadata": {},
            "reason": "fraudulent",
            "status": "needs_response",
        }
    else:
        obj = {
            "id": intent,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount,
            "currency": currency,
            "status": "succeeded",
            "metadata": {"order_id": order_id},
        }
    event = {
        "id": event_id or f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()),
        "type": type,
        "data": {"object": obj},
    }
    return json.dumps(event).encode()


async def post_stripe(client: httpx.AsyncClient, body: bytes) -> httpx.Response:
    headers, query, body = signed_request("stripe", body)
    response = await client.post("/webhooks/stripe", content=body, headers=headers, params=query)
    assert response.status_code == 202, response.text
    return response


def post_internal_event(
    api: str, event_type: str, event_id: str, caller: str = "jenkins"
) -> httpx.Response:
    """POST /events as an internal service behind Kong would; the data is {"ok": true}."""
    return httpx.post(
        f"{api}/events",
        content=json.dumps({"type": event_type, "id": event_id, "data": {"ok": True}}),
        headers={
            "content-type": "application/cloudevents+json",
            "x-hookhub-gateway-secret": GATEWAY_SECRET,
            "x-consumer-username": caller,
        },
        timeout=10,
    )
