"""An order's view across providers, on the whole hub (real processes, the real broker): the
storefront's order.created, the provider's signed payment and every follow-up land on the order's
page in time order, `hookhub events list --order` finds them all, and a read-only operator sees
it. The order page's screenshot in docs/event-log.md comes from here (docs/screenshots/)."""

import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hookhub.providers import PROVIDERS
from operator_hub import READ_ONLY, Hub, eventually, running_hub
from playwright.sync_api import Browser, Page, expect, sync_playwright
from test_operator_console import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

from tests.support.senders import stripe_event
from tests.support.settings import GATEWAY_SECRET
from tests.support.signing import signed_request

PAYLOADS = Path(__file__).parents[2] / "consumers" / "tests" / "payloads"
AMOUNT = 4990  # BRL cents: what each order costs and each provider charges


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("operator-orders")) as running:
        yield running


def set_at(payload: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for key in parents:
        payload = payload.setdefault(key, {})
    payload[last] = value


def where_order_id(provider: str) -> str:
    return PROVIDERS[provider].order_id_at.split("|")[0]


def hotmart_approval(order_id: str) -> bytes:
    payload = json.loads((PAYLOADS / "hotmart" / "PURCHASE_APPROVED.json").read_text())
    payload["id"] = str(uuid.uuid4())
    set_at(payload, where_order_id("hotmart"), order_id)
    set_at(payload, "data.purchase.transaction", f"HP{uuid.uuid4().hex[:12]}")
    set_at(payload, "data.purchase.price", {"value": AMOUNT / 100, "currency_value": "BRL"})
    return json.dumps(payload).encode()


def kiwify_approval(order_id: str) -> bytes:
    payload = json.loads((PAYLOADS / "kiwify" / "order_approved.json").read_text())
    set_at(payload, where_order_id("kiwify"), order_id)
    payload["order_id"] = str(uuid.uuid4())  # Kiwify's own order: the payment id
    set_at(payload, "Commissions.charge_amount", AMOUNT)
    set_at(payload, "Commissions.currency", "BRL")
    return json.dumps(payload).encode()


def stripe_approval(order_id: str) -> bytes:
    return stripe_event(order_id, amount=AMOUNT)


APPROVALS: dict[str, Callable[[str], bytes]] = {
    "stripe": stripe_approval,
    "hotmart": hotmart_approval,
    "kiwify": kiwify_approval,
}


def post_order_created(hub: Hub, order_id: str) -> None:
    body = {
        "specversion": "1.0",
        "type": "order.created",
        "source": "/storefront",
        "id": f"order-{order_id}",
        "data": {
            "order_id": order_id,
            "customer": {"id": "c1", "email": "ana@example.com", "name": "Ana"},
            "items": [{"sku": "mug", "quantity": 1}],
            "amount": AMOUNT,
            "currency": "BRL",
        },
    }
    response = httpx.post(
        f"{hub.api}/events",
        content=json.dumps(body),
        headers={
            "content-type": "application/cloudevents+json",
            "x-hookhub-gateway-secret": GATEWAY_SECRET,
            "x-consumer-username": "storefront",
        },
        timeout=10,
    )
    assert response.status_code == 202, response.text


def post_webhook(hub: Hub, provider: str, body: bytes) -> str:
    headers, query, body = signed_request(provider, body)
    response = httpx.post(
        f"{hub.api}/webhooks/{provider}",
        content=body,
        params=query,
        headers={
            **headers,
            "x-hookhub-gateway-secret": GATEWAY_SECRET,
            "x-consumer-username": provider,
        },
        timeout=10,
    )
    assert response.status_code in (200, 202), response.text
    return response.headers.get("x-hookhub-event-id") or response.json()["id"]


def order_of(hub: Hub, order_id: str, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The order as `/api/orders/<id>` shows it to a read-only operator, once `until` holds."""

    def shown() -> dict[str, Any] | None:
        response = hub.get(f"/api/orders/{order_id}", headers=READ_ONLY)
        return response.json() if response.status_code == 200 and until(response.json()) else None

    return eventually(shown, timeout_s=30, what=f"order {order_id}'s view")


def types_of(order: dict[str, Any]) -> list[str]:
    return [e["type"] for e in order["events"]]


def paid_and_produced(order: dict[str, Any]) -> bool:
    return {"payment.approved", "production.queued"} <= set(types_of(order))


@pytest.mark.parametrize("provider", sorted(APPROVALS))
def test_an_orders_page_lists_its_creation_its_payment_and_every_follow_up_in_time_order(
    hub: Hub, provider: str
) -> None:
    order_id = f"ord-{provider}-{uuid.uuid4().hex[:8]}"
    post_order_created(hub, order_id)
    payment_id = post_webhook(hub, provider, APPROVALS[provider](order_id))

    order = order_of(hub, order_id, paid_and_produced)

    types = types_of(order)
    assert types[0] == "order.created"
    assert types[1].startswith(f"{provider}.")
    assert order["events"][1]["id"] == payment_id
    assert types.index("payment.approved") < types.index("production.queued")
    times = [e["time"] for e in order["events"]]
    assert times == sorted(times)
    assert order["status"] == "approved"
    money = order["money"]
    assert (money["expected"], money["paid"], money["refunded"]) == (AMOUNT, AMOUNT, 0)
    assert (money["provider"], money["mismatches"]) == (provider, [])
    assert order["waiting"] is None
    journey = hub.get(order["events"][1]["journey"], headers=READ_ONLY)
    assert journey.status_code == 200
    assert any(line["what"] == "processed" for line in journey.json()["timeline"])


def test_an_order_not_paid_yet_waits_for_its_payment_until_its_deadline(hub: Hub) -> None:
    order_id = f"ord-waiting-{uuid.uuid4().hex[:8]}"
    post_order_created(hub, order_id)

    # The consumer's state and the index are written apart: wait for both.
    order = order_of(hub, order_id, lambda o: o["status"] == "pending" and o["events"])

    waiting = order["waiting"]
    assert waiting["deadline"] == "deadline.order_payment"
    assert waiting["set_by"]["type"] == "order.created"
    assert waiting["fires_at"] > waiting["set_by"]["time"]
    assert order["money"]["paid"] is None


def test_a_refund_follows_the_payment_on_the_orders_page(hub: Hub) -> None:
    order_id = f"ord-refund-{uuid.uuid4().hex[:8]}"
    post_order_created(hub, order_id)
    post_webhook(hub, "stripe", stripe_approval(order_id))
    order_of(hub, order_id, paid_and_produced)
    post_webhook(hub, "stripe", stripe_event(order_id, "charge.refunded", amount=AMOUNT))

    order = order_of(hub, order_id, lambda o: "production.cancelled" in types_of(o))

    types = types_of(order)
    assert types.index("stripe.charge.refunded") < types.index("payment.refunded")
    assert types.index("payment.refunded") < types.index("production.cancelled")
    assert (order["status"], order["money"]["refunded"]) == ("refunded", AMOUNT)


def test_events_list_by_order_finds_the_order_its_payment_and_its_follow_ups(hub: Hub) -> None:
    order_id = f"ord-cli-{uuid.uuid4().hex[:8]}"
    post_order_created(hub, order_id)
    payment_id = post_webhook(hub, "hotmart", hotmart_approval(order_id))
    order_of(hub, order_id, paid_and_produced)

    found = subprocess.run(
        [".venv/bin/hookhub", "events", "list", "--order", order_id, "--json"],
        env={**os.environ, **hub.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    listed = json.loads(found.stdout)
    assert {e["order_id"] for e in listed} == {order_id}
    types = {e["type"] for e in listed}
    assert {"order.created", "hotmart.PURCHASE_APPROVED", "payment.approved"} <= types
    assert payment_id in {e["id"] for e in listed}


def test_an_order_nobody_knows_is_404_with_what_was_looked_for(hub: Hub) -> None:
    response = hub.get("/api/orders/ord-nobody-knows", headers=READ_ONLY)

    assert response.status_code == 404
    assert "ord-nobody-knows" in response.json()["detail"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run `make tools`", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_a_read_only_operator_opens_an_orders_page_from_a_search_and_follows_a_journey(
    hub: Hub, browser: Browser
) -> None:
    order_id = f"ord-page-{uuid.uuid4().hex[:8]}"
    post_order_created(hub, order_id)
    post_webhook(hub, "kiwify", kiwify_approval(order_id))
    order_of(hub, order_id, paid_and_produced)
    context = browser.new_context(
        base_url=hub.operator,
        extra_http_headers=READ_ONLY,
        viewport={"width": 1280, "height": 900},
    )
    page: Page = context.new_page()
    try:
        page.goto(f"/events?order={order_id}")
        page.locator("#events").get_by_role("link", name=order_id).first.click()

        expect(page.locator("h1")).to_contain_text(order_id)
        expect(page.locator("#status")).to_have_text("approved")
        expect(page.locator("#expected")).to_contain_text("49.90 BRL")
        expect(page.locator("#paid")).to_contain_text("49.90 BRL")
        rows = page.locator("#order-events tr")
        expect(rows.nth(1)).to_contain_text("order.created")
        expect(rows.nth(2)).to_contain_text("kiwify.")
        expect(page.locator("#order-events")).to_contain_text("production.queued")
        page.screenshot(path=SCREENSHOTS / "order.png", full_page=True)

        page.locator("#order-events").get_by_role("link", name="payment.approved").click()
        expect(page.locator("#journey")).to_contain_text("processed")
    finally:
        context.close()
