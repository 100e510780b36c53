"""The saga's state machines and its reconciliation, tested without a broker."""

from pathlib import Path

import pytest
from hookhub import specs
from hookhub_consumers.payments import steps as payments
from hookhub_consumers.payments.reconciliation import Verdict, reconcile, refund_is_partial
from hookhub_consumers.payments.steps import DEADLINES, next_status
from hookhub_consumers.production import steps as production
from hookhub_consumers.production.steps import TRANSITIONS

SAGA_DOC = (Path(__file__).parents[2] / "docs" / "saga.md").read_text()


@pytest.mark.parametrize(
    ("current", "happening", "expected"),
    [
        (None, "order", ("pending", None)),
        ("pending", "paid", ("approved", "payment.approved")),
        ("pending", "mismatch", ("mismatched", "payment.mismatched")),
        ("pending", "declined", ("declined", "payment.declined")),
        ("declined", "paid", ("approved", "payment.approved")),  # another card
        ("approved", "refunded", ("refunded", "payment.refunded")),
        ("approved", "partly_refunded", ("approved", "payment.partially_refunded")),
        ("approved", "charged_back", ("charged_back", "payment.charged_back")),
        ("declined", "refunded", ("refunded", "payment.refunded")),  # overtook an approval
        (None, "paid_early", ("held", None)),  # nothing said until the order comes
        ("held", "paid", ("approved", "payment.approved")),
        ("held", "mismatch", ("mismatched", "payment.mismatched")),
        ("held", "order_due", ("order_missing", "payment.order_missing")),
        ("order_missing", "paid", ("approved", "payment.approved")),  # the order came late
        ("pending", "payment_due", ("expired", "order.expired")),
        ("declined", "payment_due", ("expired", "order.expired")),
        ("expired", "paid", ("mismatched", "payment.mismatched")),  # money after the deadline
    ],
)
def test_the_order_moves_as_the_table_says(current, happening, expected):
    assert next_status(current, happening) == expected


@pytest.mark.parametrize(
    ("current", "happening"),
    [
        ("approved", "paid"),  # the same approval told twice
        ("approved", "declined"),  # a stale decline after the approval
        ("refunded", "paid"),  # a refund is final
        ("charged_back", "refunded"),
        ("held", "paid_early"),  # the held payment told again
        ("held", "declined"),
        ("mismatched", "paid"),  # a person sorts a mismatch out
        ("approved", "payment_due"),  # deadlines after the order moved on
        ("refunded", "payment_due"),
        ("approved", "order_due"),
        ("pending", "order_due"),
        ("pending", "order"),  # order.created sent again
    ],
)
def test_what_the_table_does_not_name_changes_nothing(current, happening):
    assert next_status(current, happening) is None


def test_only_an_order_with_its_money_reaches_production():
    announcing_approval = {
        (current, happening)
        for (current, happening), (_, announced) in payments.TRANSITIONS.items()
        if announced == "payment.approved"
    }
    assert {happening for _, happening in announcing_approval} == {"paid"}


def test_entering_pending_or_held_sets_the_deadline_that_ends_it():
    assert DEADLINES == {"pending": "deadline.order_payment", "held": "deadline.payment_order"}
    assert specs.by_name("payments").deadline_settings == {
        "deadline.order_payment": "order_payment_timeout_s",
        "deadline.payment_order": "payment_order_timeout_s",
    }
    assert set(payments.DEADLINE_HAPPENINGS) == set(specs.by_name("payments").deadlines)
    for status, deadline_type in DEADLINES.items():
        ended = next_status(status, payments.DEADLINE_HAPPENINGS[deadline_type])
        assert ended in [("expired", "order.expired"), ("order_missing", "payment.order_missing")]


def test_production_queues_only_new_tickets():
    applies_to, status, emits = TRANSITIONS["payment.approved"]
    assert applies_to == {None} and status == "queued" and emits == "production.queued"


@pytest.mark.parametrize("compensation", ["payment.refunded", "payment.charged_back"])
def test_a_refund_or_chargeback_cancels_a_ticket_in_any_state_but_cancelled(compensation):
    applies_to, status, emits = TRANSITIONS[compensation]
    assert "cancelled" not in applies_to and {None, "queued", "overdue", "ready"} <= applies_to
    assert (status, emits) == ("cancelled", "production.cancelled")


def test_only_a_queued_ticket_becomes_overdue_and_it_can_still_finish():
    assert TRANSITIONS["deadline.production"] == ({"queued"}, "overdue", "production.overdue")
    assert "overdue" in TRANSITIONS["production.finished"][0]
    assert production.DEADLINES == {"queued": "deadline.production"}
    assert specs.by_name("production").deadline_settings == {
        "deadline.production": "production_timeout_s"
    }


def test_a_partial_refund_moves_no_ticket():
    assert "payment.partially_refunded" not in TRANSITIONS


# Reconciliation


def test_the_exact_amount_in_the_orders_currency_settles_it():
    assert reconcile(4990, "BRL", 4990, "BRL") == Verdict(True, overpaid=0)


def test_overpayment_settles_and_says_by_how_much():
    assert reconcile(4990, "BRL", 5000, "BRL") == Verdict(True, overpaid=10)


def test_a_short_amount_does_not_settle_and_says_both_amounts():
    assert reconcile(4990, "BRL", 4989, "BRL") == Verdict(
        False, reason="paid 4989, the order is 4990 (BRL minor units)"
    )


def test_another_currency_does_not_settle_whatever_the_amount():
    assert reconcile(4990, "BRL", 1_000_000, "usd") == Verdict(
        False, reason="paid in USD, the order is in BRL"
    )


@pytest.mark.parametrize(("amount", "currency"), [(None, "BRL"), (4990, None)])
def test_money_the_provider_did_not_describe_settles_nothing(amount, currency):
    assert reconcile(4990, "BRL", amount, currency).settles is False


@pytest.mark.parametrize(
    ("paid", "refunded", "partial"),
    [
        (4990, 1000, True),
        (4990, 4990, False),
        (5000, 10, True),
        (4990, None, False),
        (None, 10, False),
    ],
)
def test_a_refund_is_partial_only_when_part_of_a_known_payment_stays(paid, refunded, partial):
    assert refund_is_partial(paid, refunded) is partial


# The saga doc's diagram (docs/saga.md)


def saga_diagram() -> str:
    """Both tables as one Mermaid state diagram, each arrow labelled `what happened / what it
    announces` (for production, `the event / what it emits`); arrows between the same two states
    that announce the same are drawn once, their causes joined by commas."""
    payment_moves = [
        ((current, new, announced), happening)
        for (current, happening), (new, announced) in payments.TRANSITIONS.items()
    ]
    ticket_moves = [
        ((current, new, emits), event_type)
        for event_type, (applies_to, new, emits) in TRANSITIONS.items()
        for current in sorted(applies_to, key=lambda status: status or "")
    ]
    lines = ["```mermaid", "stateDiagram-v2"]
    for name, title, moves in [
        ("payments", "payments: the order and its money", payment_moves),
        ("production", "production: the order's ticket", ticket_moves),
    ]:
        arrows: dict[tuple, list[str]] = {}
        for arrow, cause in moves:
            arrows.setdefault(arrow, []).append(cause)
        lines.append(f'    state "{title}" as {name} {{')
        for (current, new, announced), causes in arrows.items():
            label = ", ".join(causes) + (f" / {announced}" if announced else "")
            lines.append(f"        {current or '[*]'} --> {new}: {label}")
        lines.append("    }")
    lines.append("```")
    return "\n".join(lines) + "\n"


def test_the_saga_doc_diagram_draws_every_move_of_both_tables():
    diagram = saga_diagram()
    assert diagram in SAGA_DOC, f"docs/saga.md's saga diagram should read:\n{diagram}"


def test_every_announced_event_is_in_the_catalogue():
    announced = {a for _, a in payments.TRANSITIONS.values() if a}
    announced |= {emits for _, _, emits in TRANSITIONS.values()}
    assert announced <= set(specs.catalogue())
