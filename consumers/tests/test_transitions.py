"""The saga's state machines, tested without a broker."""

import pytest
from hookhub_consumers.payments import next_status
from hookhub_consumers.production import TRANSITIONS


@pytest.mark.parametrize(
    ("current", "outcome", "expected"),
    [
        ("pending", "approved", "approved"),
        ("pending", "declined", "declined"),
        ("declined", "approved", "approved"),  # the customer paid with another card
        ("approved", "refunded", "refunded"),
        ("approved", "approved", None),  # the same approval told twice
        ("approved", "declined", None),  # a stale decline after the approval
        ("declined", "refunded", "refunded"),  # a refund that overtook a second card's approval
        ("refunded", "approved", None),  # a refund is final
    ],
)
def test_payment_status_moves_only_forward(current, outcome, expected):
    assert next_status(current, outcome) == expected


def test_production_queues_only_new_tickets():
    applies_to, status, emits = TRANSITIONS["payment.approved"]
    assert applies_to == {None} and status == "queued" and emits == "production.queued"


def test_refund_cancels_a_ticket_in_any_state_but_cancelled():
    applies_to, status, emits = TRANSITIONS["payment.refunded"]
    assert "cancelled" not in applies_to and {None, "queued", "ready"} <= applies_to
    assert (status, emits) == ("cancelled", "production.cancelled")
