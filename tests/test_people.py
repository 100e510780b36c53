"""One person across every provider (#24): the identifiers each provider's payload keeps (the
provider table's `identities_at`), normalised; and, through hub-api, the broker's archive and
`hookhub index`, one person's purchases, payments, bot messages and access on one timeline,
a merge explained by its event, an unmerge, and a forget that reads and replays refuse."""

import json
from pathlib import Path

import pytest
from hookhub.events import Event
from hookhub.identities import document, email, phone
from hookhub_eventlog.archive import identifiers_of
from hookhub_eventlog.timeline import identifier_of

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
