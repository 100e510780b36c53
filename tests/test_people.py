"""One person across every provider (#24): the identifiers each provider's payload keeps (the
provider table's `identities_at`), normalised; and, through hub-api, the broker's archive and
`hookhub index`, one person's purchases, payments, bot messages and access on one timeline,
a merge explained by its event, an unmerge, and a forget that reads and replays refuse."""

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hookhub.events import Event
from hookhub.identities import document, email, phone
from hookhub_eventlog.archive import identifiers_of
from hookhub_eventlog.timeline import identifier_of

from tests.support.broker import fresh_vhost
from tests.support.net import free_port
from tests.support.processes import HubProcess, wait_http_ready
from tests.support.settings import GATEWAY_SECRET, hub_env
from tests.support.signing import SECRETS_ENV, signed_request

PAYLOADS = Path(__file__).parents[1] / "consumers" / "tests" / "payloads"


# Normalising: pure


def test_an_email_is_trimmed_and_lower_cased():
    assert email("  Ana.Souza@Example.COM ") == "ana.souza@example.com"
    assert email("not an address") is None


@pytest.mark.parametrize(
    ("written", "e164"),
    [
        ("(11) 98765-4321", "+5511987654321"),
        ("011 98765-4321", "+5511987654321"),
        ("5511987654321", "+5511987654321"),
        ("+55 11 98765-4321", "+5511987654321"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("0044 20 7946 0958", "+442079460958"),
        ("(21) 3333-4444", "+552133334444"),
    ],
)
def test_a_phone_becomes_e164_brazilian_unless_it_says_otherwise(written: str, e164: str):
    assert phone(written) == e164


def test_what_cannot_be_a_phone_is_none():
    assert phone("12345") is None
    assert phone("abc") is None


def test_documents_keep_their_digits_as_cpf_or_cnpj():
    assert document("090.060.687-09") == "cpf:09006068709"
    assert document("11.222.333/0001-81") == "cnpj:11222333000181"
    assert document("123") is None


@pytest.mark.parametrize(
    ("typed", "kept"),
    [
        ("Ana@Example.com", "email:ana@example.com"),
        ("(11) 98765-4321", "phone:+5511987654321"),
        ("cpf:090.060.687-09", "cpf:09006068709"),
        ("stripe:cus_123", "stripe:cus_123"),
        ("p_0123456789abcdef", "p_0123456789abcdef"),
    ],
)
def test_what_an_operator_types_is_looked_up_as_the_index_keeps_it(typed: str, kept: str):
    assert identifier_of(typed) == kept


# Each provider's payload, as the index reads it


def webhook(provider: str, payload: object, type: str = "x") -> Event:
    return Event(
        id="e-1",
        source=f"/webhooks/{provider}",
        type=f"{provider}.{type}",
        data=json.dumps(payload).encode(),
    )


def sample(provider: str, name: str) -> object:
    return json.loads((PAYLOADS / provider / f"{name}.json").read_text())


def test_the_payment_providers_samples_name_their_buyer():
    assert identifiers_of(webhook("stripe", sample("stripe", "checkout.session.completed"))) == (
        "email:ana@example.com",
        "stripe:cus_QbC1d2E3f4G5h6",
    )
    assert "email:ana@example.com" in identifiers_of(
        webhook("hotmart", sample("hotmart", "PURCHASE_APPROVED"))
    )
    pagarme = identifiers_of(webhook("pagarme", sample("pagarme", "order.paid")))
    assert {"email:ana@example.com", "cpf:09006068709"} <= set(pagarme)
    assert identifiers_of(webhook("asaas", sample("asaas", "PAYMENT_CONFIRMED"))) == (
        "asaas:cus_G7Dvo4iphUNk",
    )
    assert any(i.startswith("email:") for i in identifiers_of(
        webhook("kiwify", sample("kiwify", "order_approved"))
    ))  # fmt: skip


def test_a_mercadopago_notification_names_no_one_and_its_fetched_payment_does():
    notification = webhook("mercadopago", sample("mercadopago", "webhook.payment.updated"))
    assert identifiers_of(notification) == ()
    assert any(
        i.startswith("email:")
        for i in identifiers_of(webhook("mercadopago", sample("mercadopago", "payment.approved")))
    )


TELEGRAM = {
    "update_id": 9001,
    "message": {
        "message_id": 1,
        "from": {"id": 424242, "first_name": "Ana"},
        "chat": {"id": 424242, "type": "private"},
        "contact": {"phone_number": "5511987654321", "user_id": 424242},
    },
}
WHATSAPP = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "WABA",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "contacts": [{"wa_id": "5511987654321", "profile": {"name": "Ana"}}],
                        "messages": [{"from": "5511987654321", "id": "wamid.1", "type": "text"}],
                    },
                }
            ],
        }
    ],
}
GITHUB = {"ref": "refs/heads/main", "pusher": {"name": "ana", "email": "Ana@Example.com"},
          "sender": {"login": "anasouza", "id": 583231}}  # fmt: skip


def test_the_bots_name_their_user_and_whatsapp_its_phone():
    assert identifiers_of(webhook("telegram", TELEGRAM, "message")) == (
        "phone:+5511987654321",
        "telegram:424242",
    )
    assert identifiers_of(webhook("whatsapp", WHATSAPP)) == ("phone:+5511987654321",)
    assert identifiers_of(webhook("github", GITHUB, "push")) == (
        "email:ana@example.com",
        "github:583231",
        "github:login:anasouza",
    )
    assert identifiers_of(webhook("discord", {"type": 2, "member": {"user": {"id": "80351"}}})) == (
        "discord:80351",
    )
    slash = Event(id="e-1", source="/webhooks/slack", type="slack./help",
                  data=b"command=%2Fhelp&user_id=U024BE7LH",
                  content_type="application/x-www-form-urlencoded")  # fmt: skip
    assert identifiers_of(slash) == ("slack:U024BE7LH",)


def test_the_storefronts_order_names_its_customer():
    data = {"order_id": "1001", "customer": {"id": "c1", "email": "ana@example.com",
            "phone": "(11) 98765-4321"}, "items": [], "amount": 1, "currency": "BRL"}  # fmt: skip
    event = Event(id="o-1", source="/events/storefront", type="order.created",
                  data=json.dumps(data).encode())  # fmt: skip

    assert identifiers_of(event) == (
        "email:ana@example.com",
        "phone:+5511987654321",
        "storefront:c1",
    )


def test_a_follow_up_names_no_one():
    event = Event(id="f-1", source="/consumers/payments", type="payment.approved",
                  data=b'{"email": "ana@example.com"}', subject="1001")  # fmt: skip
    assert identifiers_of(event) == ()


# Through the hub: hub-api, the broker's archive, `hookhub index`, `hookhub people`


@dataclass
class Hub:
    api: str
    env: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hookhub.cli", *args],
            env={**self.env, "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=60,
        )

    def webhook(self, provider: str, payload: object, **signing: str) -> str:
        headers, query, body = signed_request(provider, json.dumps(payload), **signing)
        response = httpx.post(
            f"{self.api}/webhooks/{provider}",
            content=body,
            params=query,
            headers={
                **headers,
                "x-hookhub-gateway-secret": GATEWAY_SECRET,
                "x-consumer-username": provider,
            },  # fmt: skip
            timeout=10,
        )
        assert response.status_code < 300, response.text
        return response.headers.get("x-hookhub-event-id") or response.json()["id"]

    def order(self, order_id: str, customer: dict[str, str]) -> str:
        data = {"order_id": order_id, "customer": customer, "items": [], "amount": 4990,
                "currency": "BRL"}  # fmt: skip
        response = httpx.post(
            f"{self.api}/events",
            json={"type": "order.created", "data": data},
            headers={
                "content-type": "application/cloudevents+json",
                "x-hookhub-gateway-secret": GATEWAY_SECRET,
                "x-consumer-username": "storefront",
            },  # fmt: skip
            timeout=10,
        )
        assert response.status_code == 202, response.text
        return response.json()["id"]

    def person(self, key: str, events: int, timeout_s: float = 20) -> dict:
        """`hookhub people show KEY --json`, once the index has its `events` events."""
        deadline = time.monotonic() + timeout_s
        while True:
            shown = self.cli("people", "show", key, "--json")
            if shown.returncode == 0 and len(json.loads(shown.stdout)["events"]) >= events:
                return json.loads(shown.stdout)
            assert time.monotonic() < deadline, shown.stdout + shown.stderr
            time.sleep(0.3)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    tmp = tmp_path_factory.mktemp("people")
    with fresh_vhost() as amqp_url:
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=f"sqlite:///{tmp}/hookhub.db", **SECRETS_ENV)
        port = free_port()
        processes = [HubProcess(["api", "--port", str(port)], env, tmp / "api.log")]
        try:
            wait_http_ready(f"http://127.0.0.1:{port}/readyz", process=processes[0])
            processes.append(HubProcess(["index"], env, tmp / "index.log"))
            yield Hub(f"http://127.0.0.1:{port}", env)
        finally:
            for process in processes:
                process.stop()


@dataclass
class Ana:
    email: str
    phone_digits: str  # national: area code and number
    order_id: str
    events: dict[str, str]  # provider → event id


def ana_everywhere(hub: Hub) -> Ana:
    """One buyer's order, purchase, payment, bot messages and repository access, in six
    sources that share her e-mail or phone, never all of them."""
    uid = uuid.uuid4().hex[:8]
    mail, digits = f"ana-{uid}@example.com", f"119{int(uid, 16) % 10**8:08d}"
    order_id = f"ord-{uid}"
    events = {"storefront": hub.order(order_id, {"id": f"c-{uid}", "email": mail.upper()})}
    hotmart = {"id": f"hm-{uid}", "event": "PURCHASE_APPROVED", "data": {
        "buyer": {"email": mail, "checkout_phone": f"({digits[:2]}) {digits[2:]}"},
        "purchase": {"origin": {"xcod": order_id}}}}  # fmt: skip
    events["hotmart"] = hub.webhook("hotmart", hotmart)
    stripe = {"id": f"evt_{uid}", "type": "checkout.session.completed", "created": int(time.time()),
              "data": {"object": {"customer": f"cus_{uid}", "customer_details": {"email": mail},
                                  "metadata": {"order_id": order_id}}}}  # fmt: skip
    events["stripe"] = hub.webhook("stripe", stripe)
    telegram = {"update_id": int(uid, 16) % 10**9, "message": {"message_id": 1,
                "from": {"id": int(uid, 16)}, "chat": {"id": int(uid, 16)},
                "contact": {"phone_number": f"+55{digits}"}}}  # fmt: skip
    events["telegram"] = hub.webhook("telegram", telegram)
    whatsapp = json.loads(json.dumps(WHATSAPP).replace("5511987654321", f"55{digits}"))
    events["whatsapp"] = hub.webhook("whatsapp", whatsapp)
    github = {"action": "added", "member": {"login": f"ana{uid}"}, "pusher": {"email": mail},
              "sender": {"id": int(uid, 16) % 10**7}}  # fmt: skip
    events["github"] = hub.webhook("github", github, event_type="member")
    return Ana(mail, digits, order_id, events)


def test_one_persons_events_across_six_sources_land_on_one_timeline_with_her_order(hub):
    ana = ana_everywhere(hub)

    person = hub.person(f"({ana.phone_digits[:2]}) {ana.phone_digits[2:]}", events=6)

    assert {e["id"] for e in person["events"]} == set(ana.events.values())
    assert f"email:{ana.email}" in person["identifiers"]
    assert f"phone:+55{ana.phone_digits}" in person["identifiers"]
    assert person["orders"] == [ana.order_id]
    assert hub.person(ana.email, events=6)["id"] == person["id"]


def test_a_merge_is_explained_by_the_event_that_made_it(hub):
    ana = ana_everywhere(hub)

    person = hub.person(ana.email, events=6)
    shown = hub.cli("people", "show", ana.email)

    phone_link = next(
        link for link in person["links"]
        if {link["a"], link["b"]} == {f"email:{ana.email}", f"phone:+55{ana.phone_digits}"}
    )  # fmt: skip
    assert (phone_link["event_id"], phone_link["source"]) == (
        ana.events["hotmart"], "/webhooks/hotmart"
    )  # fmt: skip
    assert f"linked by event {ana.events['hotmart']} from hotmart at" in shown.stdout


def test_unlinking_the_phone_splits_her_bots_from_her_purchases(hub):
    ana = ana_everywhere(hub)
    hub.person(ana.email, events=6)

    unlinked = hub.cli("people", "unlink", f"+55{ana.phone_digits}")

    assert unlinked.returncode == 0, unlinked.stderr
    purchases = hub.person(ana.email, events=3)
    assert {e["id"] for e in purchases["events"]} == {
        ana.events[p] for p in ("storefront", "hotmart", "stripe", "github")
    }
    bots = hub.person(f"+55{ana.phone_digits}", events=2)
    assert bots["id"] != purchases["id"]
    assert {e["id"] for e in bots["events"]} >= {ana.events["telegram"], ana.events["whatsapp"]}
    assert f"phone:+55{ana.phone_digits}" not in purchases["identifiers"]


def test_a_forgotten_persons_events_are_refused_by_show_journey_and_replay(hub):
    ana = ana_everywhere(hub)
    person = hub.person(ana.email, events=6)

    forgot = hub.cli("people", "forget", person["id"], "--yes")

    assert forgot.returncode == 0, forgot.stderr
    assert "forgot" in forgot.stdout and "6 event(s)" in forgot.stdout
    assert hub.cli("people", "show", ana.email).returncode == 1
    assert hub.cli("events", "list", "--order", ana.order_id, "--json").stdout.count('"id"') == 0
    for command in (
        ("events", "show", ana.events["hotmart"]),
        ("events", "journey", ana.events["telegram"]),
        ("events", "replay", "--id", ana.events["stripe"], "--to", "payments", "--yes"),
    ):
        refused = hub.cli(*command)
        assert refused.returncode == 1, command
        said = " ".join((refused.stdout + refused.stderr).split())
        assert "was forgotten on" in said and "at the person's request" in said, said
        assert "the archive drops it by" in said
