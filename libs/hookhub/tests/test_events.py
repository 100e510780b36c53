"""A deadline on the wire: an event whose delay rides as the message's TTL; and the ids of
follow-ups, derived from their cause with the deployment's key."""

import uuid

import pytest
import structlog
from hookhub.events import DEV_FOLLOW_UP_KEY, Event, follow_up_id, follow_up_key
from hookhub.settings import get_settings

DEADLINE = Event("d-1", "/consumers/payments", "deadline.order_payment", b"{}", delay_s=2.5)


def test_a_deadlines_delay_is_its_messages_expiration_in_milliseconds():
    assert DEADLINE.to_properties().expiration == "2500"
    assert DEADLINE.to_message().properties.expiration == "2500"


def test_an_ordinary_event_never_expires():
    event = Event("e-1", "/events/storefront", "order.created", b"{}")

    assert event.to_properties().expiration is None
    assert event.to_message().properties.expiration is None


def test_a_deadline_kept_in_an_outbox_keeps_its_delay():
    assert Event.from_json(DEADLINE.to_json()) == DEADLINE


def test_an_outbox_entry_saved_before_deadlines_existed_reads_as_an_ordinary_event():
    old = '{"id": "e-1", "source": "/s", "type": "t", "data": "", "content_type": "application/json", "time": "2025-03-01T15:30:12+00:00", "subject": null, "correlation_id": null, "traceparent": null}'  # noqa: E501

    assert Event.from_json(old).delay_s is None


def test_what_a_deadline_causes_is_not_delayed():
    follow_up = DEADLINE.follow_up(type="order.expired", source="/consumers/payments", data=b"{}")

    assert follow_up.delay_s is None


KEY = b"k" * 32
CAUSE = Event(id="order-1000", source="/events/storefront", type="production.finished", data=b"")


def test_a_follow_up_of_the_same_cause_gets_the_same_id_wherever_the_key_is_the_same():
    first = CAUSE.follow_up(type="order.ready", source="/consumers/payments", data=b"{}", key=KEY)
    again = CAUSE.follow_up(type="order.ready", source="/consumers/payments", data=b"{}", key=KEY)

    assert first.id == again.id == follow_up_id(KEY, CAUSE.source, CAUSE.id, "order.ready")


def test_a_follow_up_id_cannot_be_computed_from_public_data():
    # What ids were until issue 20: uuid5 of the cause, with the namespace in the source code.
    public_namespace = uuid.UUID("6f1c7f8e-3f0a-4a57-9a43-4b8d3b1f2c10")
    public = str(uuid.uuid5(public_namespace, f"{CAUSE.source}|{CAUSE.id}|order.ready"))

    keyed = CAUSE.follow_up(type="order.ready", source="/consumers/payments", data=b"", key=KEY)

    assert keyed.id != public
    assert keyed.id != follow_up_id(DEV_FOLLOW_UP_KEY, CAUSE.source, CAUSE.id, "order.ready")
    assert keyed.id != follow_up_id(b"x" * 32, CAUSE.source, CAUSE.id, "order.ready")


def test_a_follow_up_id_is_a_version_8_uuid():
    made = uuid.UUID(follow_up_id(KEY, "/webhooks/stripe", "evt_1", "payment.approved"))

    assert (made.version, made.variant) == (8, uuid.RFC_4122)


def test_the_same_id_from_another_source_causes_other_follow_ups():
    ids = {follow_up_id(KEY, source, "1", "order.ready") for source in ("/events/a", "/events/b")}

    assert len(ids) == 2


def test_source_id_and_type_cannot_be_shifted_into_one_another():
    assert follow_up_id(KEY, "/events/a|b", "c", "t") != follow_up_id(KEY, "/events/a", "b|c", "t")


@pytest.fixture
def fresh_settings():
    get_settings.cache_clear()
    follow_up_key.cache_clear()
    yield
    get_settings.cache_clear()
    follow_up_key.cache_clear()


def test_the_follow_up_key_is_the_deployments_setting(monkeypatch, fresh_settings):
    monkeypatch.setenv("HOOKHUB_FOLLOW_UP_KEY", "a" * 64)

    made = CAUSE.follow_up(type="order.ready", source="/consumers/payments", data=b"")

    assert made.id == follow_up_id(b"a" * 64, CAUSE.source, CAUSE.id, "order.ready")


def test_without_a_follow_up_key_the_public_dev_key_is_used_and_a_warning_says_so(
    monkeypatch, fresh_settings
):
    monkeypatch.delenv("HOOKHUB_FOLLOW_UP_KEY", raising=False)

    with structlog.testing.capture_logs() as logs:
        made = CAUSE.follow_up(type="order.ready", source="/consumers/payments", data=b"")
        CAUSE.follow_up(type="order.expired", source="/consumers/payments", data=b"")

    assert made.id == follow_up_id(DEV_FOLLOW_UP_KEY, CAUSE.source, CAUSE.id, "order.ready")
    warnings = [line for line in logs if line["event"] == "follow_up_key.dev_key"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
    assert "HOOKHUB_FOLLOW_UP_KEY" in warnings[0]["reason"]
