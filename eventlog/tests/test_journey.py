"""An event's journey, put together from the event log on a real SQLite file: accepted, the
steps recorded, the follow-ups it caused, oldest first; and the events no consumer binds."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hookhub_eventlog.journey import journey, unrouted
from hookhub_eventlog.store import LoggedEvent, Step
from hookhub_eventlog.store.sqlite import SQLiteEventLog

ACCEPTED = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def later(seconds: float) -> datetime:
    return ACCEPTED + timedelta(seconds=seconds)


async def test_a_journey_reads_accepted_then_steps_and_follow_ups_in_time_order(tmp_path: Path):
    event_log = SQLiteEventLog(tmp_path / "hookhub.db")
    try:
        await event_log.index(
            [
                LoggedEvent(1, "evt-1", "/webhooks/stripe", "stripe.charge.refunded", ACCEPTED),
                LoggedEvent(2, "pay-1", "/consumers/payments", "payment.refunded", later(3),
                            causation_id="evt-1"),
                LoggedEvent(3, "other", "/webhooks/stripe", "stripe.charge.refunded", later(4)),
            ]
        )  # fmt: skip
        await event_log.record(Step("evt-1", "payments", "retried", "timed out", at=later(1)))
        await event_log.record(Step("evt-1", "payments", "replayed", "by ana", at=later(2)))

        found = await journey(event_log, "evt-1")
    finally:
        await event_log.close()

    assert found is not None
    assert [(where, what, detail) for _, where, what, detail in found.timeline()] == [
        ("hub", "accepted", "stripe.charge.refunded from /webhooks/stripe"),
        ("payments", "retried", "timed out"),
        ("payments", "replayed", "by ana"),
        ("/consumers/payments", "caused", "payment.refunded pay-1"),
    ]


async def test_an_event_the_index_does_not_know_has_no_journey(tmp_path: Path):
    event_log = SQLiteEventLog(tmp_path / "hookhub.db")
    try:
        assert await journey(event_log, "never-seen") is None
    finally:
        await event_log.close()


def test_only_the_events_no_consumer_binds_are_unrouted():
    def event(type: str) -> LoggedEvent:
        return LoggedEvent(0, type, "/events/someone", type, ACCEPTED)

    events = [event("inventory.counted"), event("payment.approved"), event("order.created")]

    assert [e.type for e in unrouted(events)] == ["inventory.counted"]


async def test_a_follow_ups_journey_says_which_consumer_emitted_it(tmp_path: Path):
    event_log = SQLiteEventLog(tmp_path / "hookhub.db")
    try:
        follow_up = LoggedEvent(1, "pay-1", "/consumers/payments", "payment.approved", ACCEPTED,
                                subject="1001", causation_id="evt-1")  # fmt: skip
        await event_log.index([follow_up])

        found = await journey(event_log, "pay-1")
    finally:
        await event_log.close()

    assert found is not None
    [(_, where, what, detail)] = found.timeline()
    assert (where, what, detail) == ("payments", "emitted", "payment.approved emitted by payments")
