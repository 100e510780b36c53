"""Providers' documented webhook payloads, normalised into payment updates; and the Mercado Pago
client against a local fake of its API. The samples live in payloads/<provider>/ for other tests."""

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hookhub_consumers.payments.mercadopago import (
    MercadoPagoClient,
    PaymentNotFound,
    ProviderRejected,
    ProviderUnavailable,
)
from hookhub_consumers.payments.providers import (
    RULES,
    PaymentUpdate,
    UnusablePayload,
    needs_fetch,
    normalise,
    normalise_mercadopago_payment,
)

from tests.support.fake_mercadopago import FakeMercadoPago

PAYLOADS = Path(__file__).parent / "payloads"


def load(provider: str, name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / provider / f"{name}.json").read_text())


# Stripe ----------------------------------------------------------------------------------------


def test_stripe_succeeded_payment_intent_approves_the_order_with_the_amount_received():
    assert normalise(
        "stripe", "payment_intent.succeeded", load("stripe", "payment_intent.succeeded")
    ) == (
        PaymentUpdate(
            "order-1001", "approved", "stripe", "pi_3PkR2bKx9Yt1aB0c1a2b3c4d", 14990, "BRL"
        )
    )


def test_stripe_failed_payment_intent_declines_the_order():
    update = normalise(
        "stripe", "payment_intent.payment_failed", load("stripe", "payment_intent.payment_failed")
    )
    assert update == PaymentUpdate(
        "order-1001", "declined", "stripe", "pi_3PkR9zKx9Yt1aB0c0q1w2e3r", 14990, "BRL"
    )


def test_stripe_full_charge_refund_refunds_the_payment_intent_it_belongs_to():
    assert normalise("stripe", "charge.refunded", load("stripe", "charge.refunded")) == (
        PaymentUpdate(
            "order-1001", "refunded", "stripe", "pi_3PkR2bKx9Yt1aB0c1a2b3c4d", 14990, "BRL"
        )
    )


def test_stripe_partial_refund_says_how_much_has_been_refunded_so_far():
    payload = load("stripe", "charge.refunded")
    payload["data"]["object"].update(amount_refunded=4990, refunded=False)
    assert normalise("stripe", "charge.refunded", payload) == (
        PaymentUpdate(
            "order-1001", "refunded", "stripe", "pi_3PkR2bKx9Yt1aB0c1a2b3c4d", 4990, "BRL"
        )
    )


def test_stripe_dispute_charges_back_the_payment_intent_and_names_no_order():
    # A dispute is Stripe's own object, without the storefront's metadata: payments finds the
    # order by the payment.
    assert normalise(
        "stripe", "charge.dispute.created", load("stripe", "charge.dispute.created")
    ) == (
        PaymentUpdate(None, "charged_back", "stripe", "pi_3PkR2bKx9Yt1aB0c1a2b3c4d", 14990, "BRL")
    )


def test_stripe_paid_checkout_session_approves_the_order():
    assert normalise(
        "stripe", "checkout.session.completed", load("stripe", "checkout.session.completed")
    ) == (
        PaymentUpdate(
            "order-1001", "approved", "stripe", "pi_3PkS0aKx9Yt1aB0c0z9x8c7v", 14990, "BRL"
        )
    )


@pytest.mark.parametrize(
    ("provider", "event_type"),
    [
        ("stripe", "charge.dispute.created"),
        ("stripe", "charge.dispute.funds_withdrawn"),
        ("hotmart", "PURCHASE_CHARGEBACK"),
        ("kiwify", "chargeback"),
        ("kiwify", "chargedback"),
        ("asaas", "PAYMENT_CHARGEBACK_REQUESTED"),
        ("pagarme", "charge.chargedback"),
        ("mercadopago", "charged_back"),
    ],
)
def test_every_providers_chargeback_is_a_chargeback_not_a_refund(provider, event_type):
    assert RULES[provider][event_type].outcome == "charged_back"


def test_stripe_dispute_of_a_charge_without_a_payment_intent_names_the_charge():
    payload = load("stripe", "charge.dispute.created")
    del payload["data"]["object"]["payment_intent"]
    update = normalise("stripe", "charge.dispute.created", payload)
    assert update is not None and update.payment_id == "ch_3PkR2bKx9Yt1aB0c1e5f6g7h"


def test_stripe_unpaid_checkout_session_waits_for_its_async_payment():
    payload = load("stripe", "checkout.session.completed")
    payload["data"]["object"]["payment_status"] = "unpaid"
    assert normalise("stripe", "checkout.session.completed", payload) is None


def test_stripe_created_payment_intent_is_not_an_outcome():
    assert (
        normalise("stripe", "payment_intent.created", load("stripe", "payment_intent.created"))
        is None
    )


def test_stripe_payment_without_order_id_metadata_is_unusable_and_says_where_it_belongs():
    payload = load("stripe", "payment_intent.succeeded")
    payload["data"]["object"]["metadata"] = {}
    with pytest.raises(
        UnusablePayload, match=r"no order reference at data\.object\.metadata\.order_id"
    ):
        normalise("stripe", "payment_intent.succeeded", payload)


# Mercado Pago ----------------------------------------------------------------------------------


def test_mercadopago_payment_notification_names_the_payment_to_fetch():
    assert (
        needs_fetch("mercadopago", load("mercadopago", "webhook.payment.updated")) == "1319395474"
    )


def test_mercadopago_notification_about_something_else_needs_no_fetch_and_is_no_outcome():
    payload = load("mercadopago", "webhook.subscription_preapproval")
    assert needs_fetch("mercadopago", payload) is None
    assert normalise("mercadopago", "updated", payload) is None


def test_other_providers_events_never_need_a_fetch():
    assert needs_fetch("stripe", load("stripe", "payment_intent.succeeded")) is None


def test_mercadopago_payment_notification_without_a_usable_payment_id_is_unusable():
    payload = load("mercadopago", "webhook.payment.updated")
    payload["data"]["id"] = "../../users/me"
    with pytest.raises(UnusablePayload, match=r"data\.id '\.\./\.\./users/me' is not a payment id"):
        needs_fetch("mercadopago", payload)


def test_mercadopago_payment_notification_cannot_be_normalised_without_the_fetched_payment():
    with pytest.raises(ValueError, match="normalise_mercadopago_payment"):
        normalise("mercadopago", "payment.updated", load("mercadopago", "webhook.payment.updated"))


def test_mercadopago_approved_payment_approves_its_external_reference_in_minor_units():
    assert normalise_mercadopago_payment(load("mercadopago", "payment.approved")) == (
        PaymentUpdate("order-1001", "approved", "mercadopago", "1319395474", 14990, "BRL")
    )


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("rejected", "declined"),
        ("cancelled", "declined"),
        ("refunded", "refunded"),
        ("charged_back", "charged_back"),
    ],
)
def test_mercadopago_payment_status_maps_to_its_outcome(status: str, outcome: str):
    resource = load("mercadopago", "payment.approved") | {"status": status}
    update = normalise_mercadopago_payment(resource)
    assert update is not None and update.outcome == outcome


def test_mercadopago_pending_payment_is_not_an_outcome_yet():
    assert normalise_mercadopago_payment(load("mercadopago", "payment.pending")) is None


def test_mercadopago_payment_without_external_reference_is_unusable_and_says_so():
    resource = load("mercadopago", "payment.approved") | {"external_reference": None}
    with pytest.raises(UnusablePayload, match="no order reference at external_reference"):
        normalise_mercadopago_payment(resource)


# Amounts ---------------------------------------------------------------------------------------


def test_decimal_amounts_become_exact_minor_units_where_float_arithmetic_would_lose_a_cent():
    assert int(19.99 * 100) == 1998  # what the float route would store
    resource = load("mercadopago", "payment.approved") | {"transaction_amount": 19.99}
    assert normalise_mercadopago_payment(resource).amount == 1999


def test_amount_in_a_zero_decimal_currency_is_not_scaled():
    resource = load("mercadopago", "payment.approved") | {
        "transaction_amount": 15000,
        "currency_id": "CLP",
    }
    update = normalise_mercadopago_payment(resource)
    assert (update.amount, update.currency) == (15000, "CLP")


def test_amount_with_more_decimals_than_its_currency_allows_is_unusable():
    resource = load("mercadopago", "payment.approved") | {"transaction_amount": 10.005}
    with pytest.raises(
        UnusablePayload, match=r"transaction_amount = 10\.005 has more decimals than BRL allow"
    ):
        normalise_mercadopago_payment(resource)


# Hotmart ---------------------------------------------------------------------------------------


def test_hotmart_approved_purchase_approves_the_order_named_by_xcod():
    assert normalise("hotmart", "PURCHASE_APPROVED", load("hotmart", "PURCHASE_APPROVED")) == (
        PaymentUpdate("order-1001", "approved", "hotmart", "HP16015479281022", 14990, "BRL")
    )


@pytest.mark.parametrize(
    ("event", "outcome"),
    [
        ("PURCHASE_COMPLETE", "approved"),
        ("PURCHASE_CANCELED", "declined"),
        ("PURCHASE_REFUNDED", "refunded"),
        ("PURCHASE_CHARGEBACK", "charged_back"),
    ],
)
def test_hotmart_purchase_event_maps_to_its_outcome(event: str, outcome: str):
    update = normalise("hotmart", event, load("hotmart", event))
    assert update is not None and (update.outcome, update.payment_id) == (
        outcome,
        "HP16015479281022",
    )


@pytest.mark.parametrize("event", ["PURCHASE_BILLET_PRINTED", "PURCHASE_PROTEST"])
def test_hotmart_events_before_an_outcome_are_not_outcomes(event: str):
    assert normalise("hotmart", event, load("hotmart", event)) is None


def test_hotmart_purchase_without_xcod_is_unusable_and_says_where_it_belongs():
    payload = load("hotmart", "PURCHASE_APPROVED")
    del payload["data"]["purchase"]["origin"]["xcod"]
    with pytest.raises(
        UnusablePayload, match=r"no order reference at data\.purchase\.origin\.xcod"
    ):
        normalise("hotmart", "PURCHASE_APPROVED", payload)


# Kiwify ----------------------------------------------------------------------------------------


def test_kiwify_approved_order_approves_the_order_named_by_s1_with_cents_as_sent():
    assert normalise("kiwify", "order_approved", load("kiwify", "order_approved")) == (
        PaymentUpdate(
            "order-1001", "approved", "kiwify", "b6ba3959-30b5-44fc-a3e5-2c61e3d68ee5", 14990, "BRL"
        )
    )


@pytest.mark.parametrize(
    ("event", "outcome"),
    [
        ("order_rejected", "declined"),
        ("order_refunded", "refunded"),
        ("chargeback", "charged_back"),
    ],
)
def test_kiwify_event_maps_to_its_outcome(event: str, outcome: str):
    update = normalise("kiwify", event, load("kiwify", event))
    assert update is not None and update.outcome == outcome


def test_kiwify_order_status_stands_in_when_the_event_type_is_missing():
    payload = load("kiwify", "order_refunded")
    del payload["webhook_event_type"]
    update = normalise("kiwify", payload["order_status"], payload)
    assert update is not None and update.outcome == "refunded"


def test_kiwify_pix_created_is_not_an_outcome():
    assert normalise("kiwify", "pix_created", load("kiwify", "pix_created")) is None


def test_kiwify_order_without_s1_is_unusable_and_says_where_it_belongs():
    payload = load("kiwify", "order_approved")
    payload["TrackingParameters"]["s1"] = None
    with pytest.raises(UnusablePayload, match=r"no order reference at TrackingParameters\.s1"):
        normalise("kiwify", "order_approved", payload)


# Asaas -----------------------------------------------------------------------------------------


def test_asaas_received_payment_approves_its_external_reference_in_reais_cents():
    assert normalise("asaas", "PAYMENT_RECEIVED", load("asaas", "PAYMENT_RECEIVED")) == (
        PaymentUpdate("order-1001", "approved", "asaas", "pay_080225913252", 14990, "BRL")
    )


@pytest.mark.parametrize(
    ("event", "outcome"),
    [
        ("PAYMENT_CONFIRMED", "approved"),
        ("PAYMENT_REPROVED_BY_RISK_ANALYSIS", "declined"),
        ("PAYMENT_REFUNDED", "refunded"),
    ],
)
def test_asaas_event_maps_to_its_outcome(event: str, outcome: str):
    update = normalise("asaas", event, load("asaas", event))
    assert update is not None and (update.outcome, update.payment_id) == (
        outcome,
        "pay_080225913252",
    )


@pytest.mark.parametrize("event", ["PAYMENT_CREATED", "PAYMENT_OVERDUE"])
def test_asaas_events_before_an_outcome_are_not_outcomes(event: str):
    # An overdue boleto may still be paid: it declines nothing.
    assert normalise("asaas", event, load("asaas", event)) is None


def test_asaas_payment_without_external_reference_is_unusable_and_says_where_it_belongs():
    payload = load("asaas", "PAYMENT_RECEIVED")
    payload["payment"]["externalReference"] = None
    with pytest.raises(UnusablePayload, match=r"no order reference at payment\.externalReference"):
        normalise("asaas", "PAYMENT_RECEIVED", payload)


# Pagar.me --------------------------------------------------------------------------------------


def test_pagarme_paid_order_approves_its_code_with_the_charge_as_payment():
    assert normalise("pagarme", "order.paid", load("pagarme", "order.paid")) == (
        PaymentUpdate("order-1001", "approved", "pagarme", "ch_d22356Jf4WuGr8no", 14990, "BRL")
    )


def test_pagarme_failed_order_declines_it():
    update = normalise("pagarme", "order.payment_failed", load("pagarme", "order.payment_failed"))
    assert update == PaymentUpdate(
        "order-1001", "declined", "pagarme", "ch_d22356Jf4WuGr8no", 14990, "BRL"
    )


def test_pagarme_refunded_charge_refunds_the_order_it_belongs_to():
    assert normalise("pagarme", "charge.refunded", load("pagarme", "charge.refunded")) == (
        PaymentUpdate("order-1001", "refunded", "pagarme", "ch_d22356Jf4WuGr8no", 14990, "BRL")
    )


def test_pagarme_pending_charge_is_not_an_outcome():
    assert normalise("pagarme", "charge.pending", load("pagarme", "charge.pending")) is None


def test_pagarme_order_without_a_code_is_unusable_and_says_where_it_belongs():
    payload = load("pagarme", "order.paid")
    del payload["data"]["code"]
    with pytest.raises(
        UnusablePayload, match=r"no order reference at data\.order\.code or data\.code"
    ):
        normalise("pagarme", "order.paid", payload)


# Any provider ----------------------------------------------------------------------------------


def test_events_of_providers_without_payments_are_not_outcomes():
    assert normalise("github", "push", {"ref": "refs/heads/main"}) is None


def test_payment_event_whose_body_is_not_a_json_object_is_unusable():
    with pytest.raises(UnusablePayload, match="not a JSON object"):
        normalise("stripe", "payment_intent.succeeded", ["not", "an", "object"])


# Mercado Pago client, over HTTP against the fake -----------------------------------------------


@pytest.fixture
def fake_mercadopago() -> Iterator[FakeMercadoPago]:
    with FakeMercadoPago() as fake:
        yield fake


def client_for(fake: FakeMercadoPago, **kwargs: Any) -> MercadoPagoClient:
    return MercadoPagoClient(fake.url, kwargs.pop("access_token", fake.access_token), **kwargs)


async def test_client_fetches_the_payment_with_the_bearer_token(fake_mercadopago: FakeMercadoPago):
    payment_id = fake_mercadopago.add_payment(load("mercadopago", "payment.approved"))
    payment = await client_for(fake_mercadopago).get_payment(payment_id)
    assert payment == load("mercadopago", "payment.approved")
    assert fake_mercadopago.requests == [
        ("/v1/payments/1319395474", f"Bearer {fake_mercadopago.access_token}")
    ]


async def test_notification_fetch_and_normalise_agree_end_to_end(fake_mercadopago: FakeMercadoPago):
    fake_mercadopago.add_payment(load("mercadopago", "payment.refunded"))
    payment_id = needs_fetch("mercadopago", load("mercadopago", "webhook.payment.updated"))
    resource = await client_for(fake_mercadopago).get_payment(payment_id)
    assert normalise_mercadopago_payment(resource) == (
        PaymentUpdate("order-1001", "refunded", "mercadopago", "1319395474", 14990, "BRL")
    )


async def test_unknown_payment_is_a_permanent_failure(fake_mercadopago: FakeMercadoPago):
    with pytest.raises(
        PaymentNotFound, match=r"no payment 999 \(404\): Payment not found"
    ) as raised:
        await client_for(fake_mercadopago).get_payment("999")
    assert isinstance(raised.value, UnusablePayload)  # what the consumer dead-letters


async def test_server_error_is_retryable(fake_mercadopago: FakeMercadoPago):
    fake_mercadopago.add_payment(load("mercadopago", "payment.approved"))
    fake_mercadopago.fail_with = 500
    with pytest.raises(ProviderUnavailable, match="answered 500 for payment 1319395474"):
        await client_for(fake_mercadopago).get_payment("1319395474")


async def test_rate_limiting_is_retryable(fake_mercadopago: FakeMercadoPago):
    fake_mercadopago.fail_with = 429
    with pytest.raises(ProviderUnavailable, match="answered 429"):
        await client_for(fake_mercadopago).get_payment("1319395474")


async def test_wrong_token_is_rejected_permanently_without_revealing_the_token(
    fake_mercadopago: FakeMercadoPago,
):
    fake_mercadopago.add_payment(load("mercadopago", "payment.approved"))
    wrong = "APP_USR-0000000000000000-000000-wrongwrongwrongwrongwrongwrong-1"
    client = client_for(fake_mercadopago, access_token=wrong)
    with pytest.raises(ProviderRejected, match="refused the access token") as raised:
        await client.get_payment("1319395474")
    assert "check HOOKHUB_MERCADOPAGO_ACCESS_TOKEN" in str(raised.value)
    assert wrong not in str(raised.value) and wrong not in repr(client)


async def test_slow_answer_is_a_retryable_timeout(fake_mercadopago: FakeMercadoPago):
    fake_mercadopago.add_payment(load("mercadopago", "payment.approved"))
    fake_mercadopago.delay_s = 0.5
    with pytest.raises(ProviderUnavailable, match=r"did not answer within 0\.1s"):
        await client_for(fake_mercadopago, timeout_s=0.1).get_payment("1319395474")


async def test_unreachable_api_is_retryable():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = MercadoPagoClient(f"http://127.0.0.1:{port}", "TEST-token", timeout_s=2)
    with pytest.raises(ProviderUnavailable, match=f"not reachable at http://127.0.0.1:{port}"):
        await client.get_payment("1319395474")
