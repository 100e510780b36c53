"""An order reference that could never be an order's (too long, or not visible ASCII) is refused
as an unusable payload, before any follow-up is built with it as its subject."""

import json
from pathlib import Path
from typing import Any

import pytest
from hookhub.providers import value_at
from hookhub_consumers.payments.providers import (
    MAX_ORDER_REFERENCE_BYTES,
    RULES,
    UnusablePayload,
    normalise,
    normalise_mercadopago_payment,
)

PAYLOADS = Path(__file__).parent / "payloads"
# One approval of each provider, the sample that carries its order reference, and where.
APPROVALS = [
    ("stripe", "payment_intent.succeeded", "payment_intent.succeeded"),
    ("hotmart", "PURCHASE_APPROVED", "PURCHASE_APPROVED"),
    ("kiwify", "order_approved", "order_approved"),
    ("asaas", "PAYMENT_CONFIRMED", "PAYMENT_CONFIRMED"),
    ("pagarme", "order.paid", "order.paid"),
    ("mercadopago", "approved", "payment.approved"),
]


def with_reference(provider: str, provider_type: str, sample: str, reference: Any) -> Any:
    """The sample with `reference` at the first of its rule's order-reference paths it holds."""
    payload = json.loads((PAYLOADS / provider / f"{sample}.json").read_text())
    for path in RULES[provider][provider_type].fields.order_id.split("|"):
        *parents, leaf = path.split(".")
        holder = value_at(payload, ".".join(parents)) if parents else payload
        if isinstance(holder, dict) and leaf in holder:
            holder[leaf] = reference
            return payload
    raise AssertionError(f"{provider}'s sample {sample} has no order reference")


def normalised(provider: str, provider_type: str, payload: Any):  # type: ignore[no-untyped-def]
    if provider == "mercadopago":
        return normalise_mercadopago_payment(payload)
    return normalise(provider, provider_type, payload)


@pytest.mark.parametrize(("provider", "provider_type", "sample"), APPROVALS)
def test_an_order_reference_over_255_bytes_is_unusable_and_says_its_size(
    provider: str, provider_type: str, sample: str
):
    payload = with_reference(provider, provider_type, sample, "o" * 4096)
    with pytest.raises(UnusablePayload, match=r"order reference at .* is 4096 bytes, over the 255"):
        normalised(provider, provider_type, payload)


@pytest.mark.parametrize(("provider", "provider_type", "sample"), APPROVALS)
def test_an_order_reference_of_exactly_255_bytes_is_an_order(
    provider: str, provider_type: str, sample: str
):
    reference = "7" * MAX_ORDER_REFERENCE_BYTES
    update = normalised(
        provider, provider_type, with_reference(provider, provider_type, sample, reference)
    )
    assert update is not None and update.order_id == reference


@pytest.mark.parametrize(
    "reference", ["order 1001", "order\r\n1001", "pedido-ção", "order\x001001", "order\t1"]
)
def test_a_hotmart_xcod_that_is_not_visible_ascii_is_unusable(reference: str):
    payload = with_reference("hotmart", "PURCHASE_APPROVED", "PURCHASE_APPROVED", reference)
    with pytest.raises(UnusablePayload, match=r"purchase\.origin\.xcod is not visible ASCII"):
        normalise("hotmart", "PURCHASE_APPROVED", payload)


def test_the_refusal_never_repeats_the_reference():
    payload = with_reference("hotmart", "PURCHASE_APPROVED", "PURCHASE_APPROVED", "x" * 300)
    with pytest.raises(UnusablePayload) as refused:
        normalise("hotmart", "PURCHASE_APPROVED", payload)
    assert "xxx" not in str(refused.value)


def test_a_multibyte_reference_is_measured_in_bytes_not_characters():
    payload = with_reference("kiwify", "order_approved", "order_approved", "é" * 200)
    with pytest.raises(UnusablePayload, match="is 400 bytes"):
        normalise("kiwify", "order_approved", payload)
