"""A person's API and page on the whole hub (real processes, the real broker): a buyer's
order, Hotmart purchase and GitHub access on one timeline; identifiers masked to read-only
operators over HTTP; forgetting (operators only) after which the event's API refuses it. The
person page's screenshot in docs/event-log.md comes from here (docs/screenshots/)."""

import asyncio
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from hookhub import dlq, topology
from operator_hub import OPERATOR, READ_ONLY, Hub, eventually, running_hub
from playwright.sync_api import Browser, expect, sync_playwright
from test_operator_console import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

from tests.support.settings import GATEWAY_SECRET
from tests.support.signing import signed_request


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("operator-people")) as running:
        yield running


def post(hub: Hub, path: str, body: bytes, headers: dict[str, str], params: Any = None) -> str:
    response = httpx.post(
        f"{hub.api}{path}",
        content=body,
        params=params,
        headers={**headers, "x-hookhub-gateway-secret": GATEWAY_SECRET},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def buyer(hub: Hub) -> tuple[str, str, dict[str, str]]:
    """An order, its Hotmart purchase (the same e-mail, a phone) and a GitHub access event
    (the same e-mail): her e-mail, her order and the events by where they came from."""
    uid = uuid.uuid4().hex[:8]
    mail, order_id = f"joana-{uid}@example.com", f"ord-{uid}"
    data = {"order_id": order_id, "customer": {"email": mail}, "items": [], "amount": 4990,
            "currency": "BRL"}  # fmt: skip
    cloud = {"specversion": "1.0", "type": "order.created", "source": "/storefront",
             "id": f"order-{order_id}", "data": data}  # fmt: skip
    events = {
        "storefront": post(
            hub,
            "/events",
            json.dumps(cloud).encode(),
            {"content-type": "application/cloudevents+json", "x-consumer-username": "storefront"},
        )  # fmt: skip
    }
    hotmart = {"id": f"hm-{uid}", "event": "PURCHASE_APPROVED", "data": {
        "buyer": {"email": mail, "checkout_phone": f"(11) 9{int(uid, 16) % 10**8:08d}"},
        "purchase": {"origin": {"xcod": order_id}}}}  # fmt: skip
    github = {"action": "added", "pusher": {"email": mail}, "sender": {"id": int(uid, 16)}}
    for provider, payload in (("hotmart", hotmart), ("github", github)):
        extra = {"event_type": "member"} if provider == "github" else {}
        headers, query, body = signed_request(provider, json.dumps(payload), **extra)
        events[provider] = post(hub, f"/webhooks/{provider}", body,
                                {**headers, "x-consumer-username": provider}, query)  # fmt: skip
    return mail, order_id, events


def person_of(hub: Hub, key: str, headers: dict[str, str], events: int = 3) -> dict[str, Any]:
    def shown() -> dict[str, Any] | None:
        response = hub.get(f"/api/people/{key}", headers=headers)
        found = response.json() if response.status_code == 200 else None
        return found if found and len(found["events"]) >= events else None

    return eventually(shown, what=f"{key}'s {events} events")


def test_a_read_only_operator_sees_a_persons_timeline_with_identifiers_masked(hub: Hub) -> None:
    mail, order_id, events = buyer(hub)

    readonly = person_of(hub, mail, READ_ONLY)
    full = person_of(hub, mail, OPERATOR)

    assert {e["id"] for e in readonly["events"]} == set(events.values())
    assert readonly["orders"] == [order_id]
    assert readonly["masked"] is True and full["masked"] is False
    assert f"email:{mail}" in full["identifiers"]
    [phone] = [one for one in full["identifiers"] if one.startswith("phone:+55119")]
    assert "email:j***@example.com" in readonly["identifiers"]
    assert f"phone:+55*******{phone[-4:]}" in readonly["identifiers"]
    assert not any(mail in json.dumps(one) for one in (readonly["identifiers"], readonly["links"]))
    assert any(events["hotmart"] in link["why"] for link in readonly["links"])


def test_only_operators_forget_and_then_the_events_api_refuses_the_event(hub: Hub) -> None:
    mail, _, events = buyer(hub)
    person_id = person_of(hub, mail, OPERATOR)["id"]
    url = f"{hub.operator}/api/people/{person_id}/forget"

    amqp_url = hub.env["HOOKHUB_AMQP_URL"]
    asyncio.run(park_a_copy(amqp_url, events["hotmart"]))

    refused = httpx.post(url, json={"confirm": person_id}, headers=READ_ONLY, timeout=20)
    forgot = httpx.post(url, json={"confirm": person_id}, headers=OPERATOR, timeout=20)

    assert refused.status_code == 403
    assert forgot.status_code == 200, forgot.text
    assert forgot.json()["events"] == 3
    # Its parked copy went with it: nothing left to replay.
    assert events["hotmart"] not in asyncio.run(parked_ids(amqp_url))
    gone = hub.get(f"/api/events/{events['hotmart']}", headers=READ_ONLY)
    assert gone.status_code == 410
    assert "at the person's request" in gone.json()["detail"]
    assert hub.get(f"/api/people/{mail}", headers=OPERATOR).status_code == 404
    page = hub.get(f"/events/{events['github']}", headers=OPERATOR)
    assert page.status_code == 410 and "forgotten on" in page.text


PARKED_IN = "payments"


async def park_a_copy(amqp_url: str, event_id: str) -> None:
    """A parked copy of the event in the payments parking lot, as a failure leaves one."""
    connection = await aio_pika.connect(amqp_url)
    async with connection, connection.channel(publisher_confirms=True) as channel:
        copy = aio_pika.Message(b"{}", message_id=event_id, delivery_mode=2)
        await channel.default_exchange.publish(copy, topology.dead_letter_queue(PARKED_IN))


async def parked_ids(amqp_url: str) -> set[str]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        return {parked.id for parked in await dlq.list_parked(connection, PARKED_IN)}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run `make tools`", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_an_operator_opens_a_persons_page_and_follows_it_to_her_order(
    hub: Hub, browser: Browser
) -> None:
    mail, order_id, _ = buyer(hub)
    person_id = person_of(hub, mail, OPERATOR)["id"]
    context = browser.new_context(
        base_url=hub.operator, extra_http_headers=READ_ONLY, viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    try:
        page.goto(f"/people/{person_id}")

        expect(page.locator("h1")).to_contain_text(person_id)
        expect(page.locator("#identifiers")).to_contain_text("email:j***@example.com")
        expect(page.locator("#person-events")).to_contain_text("hotmart.PURCHASE_APPROVED")
        expect(page.locator("#person-events")).to_contain_text("github.member")
        expect(page.locator("#links")).to_contain_text("linked by event")
        page.screenshot(path=SCREENSHOTS / "person.png", full_page=True)

        page.locator("#orders").get_by_role("link", name=order_id).click()
        expect(page.locator("h1")).to_contain_text(order_id)
        page.locator("#people").get_by_role("link", name=person_id).click()
        expect(page.locator("h1")).to_contain_text(person_id)
        page.locator("#person-events").get_by_role("link", name="github.member").click()
        expect(page.locator("#person")).to_have_text(person_id)
    finally:
        context.close()


def test_an_operator_forgets_a_person_from_the_console_with_the_forms_token(hub: Hub) -> None:
    mail, _, events = buyer(hub)
    person_id = person_of(hub, mail, OPERATOR)["id"]
    with httpx.Client(base_url=hub.operator, headers=OPERATOR, timeout=20) as browser:
        page = browser.get(f"/people/{person_id}")
        token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        url = f"/people/{person_id}/forget"
        wrong = browser.post(url, data={"csrf_token": token, "confirm": "p_other"})
        forgot = browser.post(url, data={"csrf_token": token, "confirm": person_id})

    assert page.status_code == 200 and 'id="forget"' in page.text
    assert wrong.status_code == 422
    assert forgot.status_code == 200 and "3 event(s) forgotten" in forgot.text
    assert hub.get(f"/events/{events['hotmart']}").status_code == 410
    assert 'id="forget"' not in hub.get(f"/people/{mail}", headers=READ_ONLY).text
