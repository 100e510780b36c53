"""The console in a real headless Chromium (Debian's `chromium`, driven by Playwright): an
operator finds what hub-api accepted and follows it, replays a parked event and sees it
processed; a read-only operator cannot; a forged form post is refused. The overview and event
page screenshots in docs/event-log.md come from here (docs/screenshots/)."""

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from operator_hub import OPERATOR, READ_ONLY, Hub, eventually, running_hub
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.support.senders import post_internal_event

CHROMIUM = "/usr/bin/chromium"  # Debian's package, installed by scripts/install-tools
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("operator-console")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run `make tools`", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def console(hub: Hub, browser: Browser) -> Iterator[Callable[[dict[str, str]], Page]]:
    """Factory: a page of the console as one Kong consumer (the headers Kong would add)."""
    contexts: list[BrowserContext] = []

    def open_as(kong_headers: dict[str, str]) -> Page:
        context = browser.new_context(
            base_url=hub.operator,
            extra_http_headers=kong_headers,
            viewport={"width": 1280, "height": 900},
        )
        contexts.append(context)
        return context.new_page()

    yield open_as
    for context in contexts:
        context.close()


def test_an_operator_finds_an_event_accepted_through_hub_api_by_its_id_and_opens_its_journey(
    hub: Hub, console: Callable[[dict[str, str]], Page]
) -> None:
    order_id = f"ord-{uuid.uuid4().hex[:8]}"
    event_id, _ = hub.post_stripe(order_id, f"corr-{order_id}")
    hub.indexed(event_id)
    eventually(
        lambda: any(s["what"] == "processed" for s in hub.journey(event_id)), what="processing"
    )
    page = console(OPERATOR)

    page.goto("/events")
    page.get_by_label("id", exact=True).fill(event_id)
    page.get_by_role("button", name="Search").click()
    page.locator("#events").get_by_role("link", name=event_id).click()

    expect(page.locator("h1")).to_contain_text("stripe.payment_intent.succeeded")
    journey = page.locator("#journey")
    expect(journey).to_contain_text("accepted")
    expect(journey).to_contain_text("payments")
    expect(journey).to_contain_text("processed")
    expect(page.locator("#body")).to_contain_text(f'"order_id": "{order_id}"')
    page.screenshot(path=SCREENSHOTS / "event.png", full_page=True)


def test_an_operator_replays_a_parked_event_and_sees_it_processed_with_who_asked(
    hub: Hub, console: Callable[[dict[str, str]], Page]
) -> None:
    event_id = hub.park("ci.console.replayed")  # refused once; the receiver takes it now
    page = console(OPERATOR)

    page.goto("/parking-lots/notifications?type=ci.console.%23")
    page.get_by_label(f"select {event_id}").check()
    page.get_by_role("button", name="Replay selected").click()
    expect(page.locator("h1")).to_have_text("Replay 1 parked event(s) of notifications?")
    page.get_by_role("button", name="Replay 1").click()

    expect(page.locator("#changed")).to_have_text("Replayed 1 of 1 parked event(s).")
    hub.endpoint.wait_for("ci.console.replayed", count=2)  # the refused POST, then the replay's
    journey = page.locator("#journey")
    deadline = time.monotonic() + 10
    while True:  # the delivery is recorded just after the receiver answered
        page.goto(f"/events/{event_id}")
        if "delivered" in journey.inner_text().replace("delivery failed", ""):
            break
        assert time.monotonic() < deadline, journey.inner_text()
        time.sleep(0.2)
    expect(journey).to_contain_text("replayed by operator (console)")
    assert event_id not in hub.parked_ids("notifications")


def test_a_read_only_operator_sees_no_replay_button_and_a_post_is_refused(
    hub: Hub, console: Callable[[dict[str, str]], Page]
) -> None:
    event_id = hub.park("ci.console.readonly")
    page = console(READ_ONLY)

    page.goto("/parking-lots/notifications")

    expect(page.locator("#parked")).to_contain_text(event_id)
    expect(page.get_by_role("button", name="Replay selected")).to_have_count(0)
    expect(page.get_by_role("checkbox")).to_have_count(0)
    expect(page.locator("header")).to_contain_text("read-only")
    refused = page.request.post(
        "/parking-lots/notifications/replay", form={"id": event_id}, max_redirects=0
    )
    assert refused.status == 403
    assert event_id in hub.parked_ids("notifications")


def test_a_forged_form_post_without_the_csrf_token_is_refused(
    hub: Hub, console: Callable[[dict[str, str]], Page]
) -> None:
    event_id = hub.park("ci.console.forged")
    page = console(OPERATOR)
    page.goto("/parking-lots/notifications")  # the operator has a console session open

    # Another site's page posts a form to the console, as a forged request would.
    page.set_content(
        f'<form method="post" action="{hub.operator}/parking-lots/notifications/replay">'
        f'<input type="hidden" name="id" value="{event_id}"><button>win a prize</button></form>'
    )
    page.get_by_role("button", name="win a prize").click()

    expect(page.locator("#problem")).to_contain_text("CSRF token is missing or stale")
    assert event_id in hub.parked_ids("notifications")


def test_the_overview_shows_the_traffic_and_each_consumers_queues(
    hub: Hub, console: Callable[[dict[str, str]], Page]
) -> None:
    for n in range(3):
        event_id = f"ci-{uuid.uuid4().hex[:8]}"
        assert post_internal_event(hub.api, f"ci.overview.step{n}", event_id).status_code == 202
    hub.indexed(event_id)
    assert httpx.post(f"{hub.api}/webhooks/stripe", content=b"{}", timeout=10).status_code == 401
    page = console(OPERATOR)

    page.goto("/")

    expect(page.locator("#traffic")).to_contain_text("jenkins (internal)")
    expect(page.locator("#traffic")).to_contain_text("ci.overview.step2")
    for consumer in ("payments", "production", "notifications"):
        expect(page.locator("#queues")).to_contain_text(consumer)
    expect(page.locator("#refused")).to_contain_text("signature rejected")
    page.screenshot(path=SCREENSHOTS / "overview.png", full_page=True)
