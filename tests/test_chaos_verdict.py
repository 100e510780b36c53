"""`make chaos`'s verdict, judged from outside the hub: given what the senders were answered,
what the notification receiver got and what is parked, the counts (pure: no broker, no hub)."""

from collections import Counter

import pytest

from chaos.load import Sent, event_id
from chaos.verdict import APPROVED, CI, READY, Notified, ParkedMessage, judge

ORDER = "chaos-0123456789ab"
OTHER = "chaos-ba9876543210"


def accepted(kind: str, order: str = ORDER, *statuses: str) -> Sent:
    sent = Sent(kind, order, first_sent_at=0.0, statuses=Counter([*statuses, "202"]))
    sent.accepted_at = 1.0
    return sent


def whole_order(order: str = ORDER) -> list[Sent]:
    return [accepted(kind, order) for kind in ("order", "payment", "ci", "finished")]


def notified(kind: str, order: str = ORDER, webhook_id: str | None = None, status: int = 200):
    return Notified(webhook_id or f"{kind}-{order}", kind, order, status, at=2.0)


def all_effects(order: str = ORDER) -> list[Notified]:
    return [notified(APPROVED, order), notified(READY, order), notified(CI, order)]


def test_every_effect_once_passes():
    verdict = judge(whole_order(), all_effects(), [])
    assert (verdict.expected, verdict.lost, verdict.duplicates) == (3, 0, 0)
    assert verdict.failures() == []


def test_a_missing_order_ready_is_lost():
    verdict = judge(whole_order(), [notified(APPROVED), notified(CI)], [])
    assert verdict.lost == 1
    assert verdict.missing == {READY: 1}
    assert verdict.failures() == ["lost 1"]


def test_a_parked_notification_does_not_excuse_a_missing_ticket():
    # The old verdict excused anything about an order with anything parked about it.
    parked = [ParkedMessage("notifications", "pa-1", APPROVED, ORDER, "endpoint said 410")]
    verdict = judge(whole_order(), [notified(CI)], parked)
    assert verdict.lost == 1  # order.ready: production's part, not excused by notifications
    assert verdict.missing == {READY: 1}
    assert verdict.excused == 1  # payment.approved: its own notification is parked


def test_a_parked_payment_excuses_its_own_chain_only():
    parked = [ParkedMessage("payments", event_id("payment", ORDER), "stripe.x", ORDER)]
    sent = whole_order() + whole_order(OTHER)
    verdict = judge(sent, [notified(CI), *all_effects(OTHER)[:2]], parked)
    assert verdict.excused == 2  # this order's payment.approved and order.ready
    assert verdict.missing == {CI: 1}  # the other order's CI report is not excused by it
    assert verdict.lost_examples == [f"{CI}:{OTHER}"]


def test_a_parked_event_of_another_order_excuses_nothing():
    parked = [ParkedMessage("production", "x", APPROVED, OTHER)]
    verdict = judge(whole_order(), [notified(APPROVED), notified(CI)], parked)
    assert verdict.lost == 1


def test_the_same_effect_under_two_webhook_ids_is_a_duplicate_and_fails():
    received = [*all_effects(), notified(READY, webhook_id="another-id")]
    verdict = judge(whole_order(), received, [])
    assert (verdict.duplicates, verdict.repeats) == (1, 0)
    assert verdict.failures() == ["duplicate effects 1"]


def test_one_webhook_id_answered_twice_is_a_repeat_and_does_not_fail():
    received = [*all_effects(), notified(CI)]
    verdict = judge(whole_order(), received, [])
    assert (verdict.duplicates, verdict.repeats) == (0, 1)
    assert verdict.failures() == []


def test_a_post_not_answered_2xx_is_no_effect():
    received = [notified(APPROVED), notified(READY), notified(CI, status=500)]
    verdict = judge(whole_order(), received, [])
    assert verdict.lost == 1
    assert verdict.repeats == 0


@pytest.mark.parametrize(
    ("parked", "with_effects"),
    [
        (ParkedMessage("notifications", f"{CI}-{ORDER}", CI, ORDER), 1),  # delivered already
        (ParkedMessage("payments", event_id("order", ORDER), "order.created", ORDER), 1),
        (ParkedMessage("production", "f", APPROVED, ORDER), 1),  # order.ready came anyway
        (ParkedMessage("production", "f", APPROVED, OTHER), 0),
    ],
)
def test_parked_with_its_effects_at_the_receiver_fails(parked, with_effects):
    verdict = judge(whole_order(), all_effects(), [parked])
    assert verdict.parked_with_effects == with_effects
    assert bool(verdict.failures()) == bool(with_effects)


def test_a_500_fails_even_when_the_resend_was_accepted():
    sent = whole_order()
    sent[0] = accepted("order", ORDER, "500")
    verdict = judge(sent, all_effects(), [])
    assert verdict.other_5xx == 1
    assert verdict.failures() == ["other 5xx 1"]


def test_503_and_no_answer_are_the_contract():
    sent = whole_order()
    sent[1] = accepted("payment", ORDER, "503", "error")
    verdict = judge(sent, all_effects(), [])
    assert (verdict.answers_503, verdict.no_answer, verdict.failures()) == (1, 1, [])


def test_an_event_never_accepted_calls_for_nothing():
    sent = whole_order()
    sent[1] = Sent("payment", ORDER, 0.0, Counter({"503": 50}))  # gave up: no approval due
    verdict = judge(sent, [notified(CI)], [])
    assert (verdict.gave_up, verdict.expected, verdict.lost) == (1, 1, 0)


def test_not_findable_and_a_scenario_check_fail():
    verdict = judge(whole_order(), all_effects(), [])
    verdict.not_findable, verdict.checks = 2, ["ingest gap 9 s > 6 s"]
    assert verdict.failures() == ["not findable 2", "ingest gap 9 s > 6 s"]
