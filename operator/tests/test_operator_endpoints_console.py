"""The console's endpoints pages in a real headless Chromium, on the whole hub: an operator adds
an endpoint (its secret shown once), filters the list, resends a delivery the receiver then gets
again, and disables the endpoint, each change in its audit trail with the operator's name; a
read-only operator sees no form. The screenshot in docs/notifications.md comes from here."""

import time
import uuid
from collections.abc import Iterator

import pytest
from console_browser import SCREENSHOTS, chromium, console_page
from operator_hub import OPERATOR, READ_ONLY, Hub, running_hub
from playwright.sync_api import Browser, Page, expect

from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.senders import post_internal_event


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("operator-endpoints-console")) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def receiver() -> Iterator[NotifyEndpoint]:
    endpoint = NotifyEndpoint()
    yield endpoint
    endpoint.close()


def add_from_the_form(page: Page, name: str, url: str, types: str, rate: str = "") -> None:
    page.goto("/endpoints")
    form = page.locator("#add")
    form.get_by_label("name").fill(name)
    form.get_by_label("URL").fill(url)
    form.get_by_label("types").fill(types)
    form.get_by_label("rate (a second)").fill(rate)
    form.get_by_label("max in flight").fill("3")
    form.get_by_role("button", name="Add").click()
    expect(page.locator("h1")).to_contain_text(f"Endpoint: {name}")


def test_an_operator_adds_an_endpoint_filters_resends_a_delivery_and_disables_it(
    hub: Hub, browser: Browser, receiver: NotifyEndpoint
) -> None:
    name, other = f"billing-{uuid.uuid4().hex[:6]}", f"crm-{uuid.uuid4().hex[:6]}"
    with console_page(browser, hub.operator, OPERATOR) as page:
        add_from_the_form(page, name, receiver.url, "ci.epconsole.#", rate="20")
        secret = page.locator("#new-secret code").inner_text()
        assert secret.startswith("whsec_")
        # Adding resends nothing, and the page does not say it did.
        expect(page.locator("#resent")).to_have_count(0)
        add_from_the_form(page, other, "https://crm.example.com/hooks", "payment.#, order.ready")

        event_id = f"ci-{uuid.uuid4().hex[:8]}"
        assert post_internal_event(hub.api, "ci.epconsole.done", event_id).status_code == 202
        first = receiver.wait_for("ci.epconsole.done", timeout_s=30)[0]
        hub.indexed(event_id)

        # The list, filtered by an event type: the endpoint that receives it, not the other.
        page.goto("/endpoints")
        page.locator("#filter").get_by_label("type or pattern").fill("ci.epconsole.done")
        page.locator("#filter").get_by_role("button", name="Filter").click()
        table = page.locator("#endpoints")
        expect(table).to_contain_text(name)
        expect(table).not_to_contain_text(other)

        # Its page: the delivery, resent; the receiver gets it again with the same webhook-id.
        table.get_by_role("link", name=name).click()
        deliveries = page.locator("#deliveries")
        deadline = time.monotonic() + 15
        while event_id not in deliveries.inner_text():  # recorded just after the answer
            assert time.monotonic() < deadline, deliveries.inner_text()
            time.sleep(0.3)
            page.reload()
        expect(deliveries).to_contain_text("delivered")
        page.get_by_role("button", name=f"resend {event_id}").click()
        expect(page.locator("#resent")).to_have_text(f"Resent 1 event(s) to {name}.")
        again = receiver.wait_for("ci.epconsole.done", count=2)[1]
        assert again.headers["webhook-id"] == first.headers["webhook-id"]

        page.locator("#disable").get_by_label("reason").fill("receiver moving")
        page.get_by_role("button", name="Disable").click()
        expect(page.locator("#state")).to_have_text("disabled")
        expect(page.locator("#changed")).to_have_text("Endpoint disabled.")
        audit = page.locator("#audit")
        expect(audit.locator("tr").nth(1)).to_contain_text("operator:operator")
        expect(audit.locator("tr").nth(1)).to_contain_text("disable")
        expect(audit).to_contain_text("add")
        expect(page.locator("body")).not_to_contain_text(secret)

        page.goto("/endpoints?state=disabled")
        expect(page.locator("#endpoints")).to_contain_text(name)
        expect(page.locator("#endpoints")).not_to_contain_text(other)
        page.goto("/endpoints")
        expect(page.locator("#endpoints")).to_contain_text(other)
        page.screenshot(path=SCREENSHOTS / "endpoints.png", full_page=True)


def test_a_read_only_operator_sees_the_endpoints_but_no_form_and_a_post_is_refused(
    hub: Hub, browser: Browser
) -> None:
    name = f"ro-{uuid.uuid4().hex[:6]}"
    with console_page(browser, hub.operator, OPERATOR) as page:
        add_from_the_form(page, name, "https://ro.example.com/hooks", "order.ready")
    with console_page(browser, hub.operator, READ_ONLY) as page:
        page.goto(f"/endpoints/{name}")
        expect(page.locator("#state")).to_have_text("active")
        expect(page.locator("form#disable")).to_have_count(0)
        expect(page.locator("form#rotate")).to_have_count(0)
        page.goto("/endpoints")
        expect(page.locator("form#add")).to_have_count(0)
        refused = page.request.post(f"/endpoints/{name}/disable", form={}, max_redirects=0)
        assert refused.status == 403
        page.goto(f"/endpoints/{name}")
        expect(page.locator("#state")).to_have_text("active")


def test_a_bad_url_from_the_form_is_refused_with_the_reason(hub: Hub, browser: Browser) -> None:
    with console_page(browser, hub.operator, OPERATOR) as page:
        page.goto("/endpoints")
        form = page.locator("#add")
        form.get_by_label("name").fill("bad-url")
        form.get_by_label("URL").fill("ftp://files.example.com")
        form.get_by_label("types").fill("order.ready")
        form.get_by_role("button", name="Add").click()
        expect(page.locator("#problem")).to_contain_text("must be http:// or https://")
