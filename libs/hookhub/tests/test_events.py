"""A deadline on the wire: an event whose delay rides as the message's TTL."""

from hookhub.events import Event

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
