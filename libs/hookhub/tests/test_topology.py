"""The topology as data: names and arguments, checked without a broker."""

import pytest
from hookhub import specs
from hookhub.topology import (
    all_queues,
    binding_matches,
    dead_letter_queue,
    deadline_queue,
    deadline_type_of,
    literal_head,
    retry_queue,
    work_queue,
)

DEADLINES_S = {"deadline.order_payment": 90.0, "deadline.payment_order": 1.5}
QUEUES = {
    spec.name: spec for spec in all_queues((5.0, 30.0), delivery_limit=20, deadlines_s=DEADLINES_S)
}


def test_every_queue_that_dead_letters_does_so_at_least_once():
    dead_lettering = [s for s in QUEUES.values() if "x-dead-letter-routing-key" in s.arguments]
    assert dead_lettering
    for spec in dead_lettering:
        assert spec.arguments["x-dead-letter-strategy"] == "at-least-once", spec.name
        assert spec.arguments["x-overflow"] == "reject-publish", spec.name


def test_retry_queues_wait_their_delay_then_return_to_work_and_work_parks_in_the_dlq():
    for consumer in specs.names():
        work = QUEUES[work_queue(consumer)].arguments
        assert work["x-dead-letter-routing-key"] == dead_letter_queue(consumer)
        assert work["x-delivery-limit"] == 20
        for delay_s in (5.0, 30.0):
            retry = QUEUES[retry_queue(consumer, delay_s)].arguments
            assert retry["x-message-ttl"] == int(delay_s * 1000)
            assert retry["x-dead-letter-routing-key"] == work_queue(consumer)


def test_each_deadline_duration_has_a_queue_whose_ttl_it_is_handing_back_to_its_consumer():
    payments = specs.by_name("payments")
    for deadline_type, duration_s in DEADLINES_S.items():
        spec = QUEUES[deadline_queue("payments", deadline_type, duration_s)]
        assert spec.name == f"hookhub.payments.{deadline_type}.{duration_s:g}s"
        assert spec.arguments["x-message-ttl"] == duration_s * 1000
        assert spec.arguments["x-dead-letter-routing-key"] == work_queue("payments")
        assert spec.bindings == ()  # never on the exchange
        assert deadline_type_of(spec.name, payments) == deadline_type
    # Only durations configured: production's deadline has none here.
    assert not any(deadline_type_of(name, specs.by_name("production")) for name in QUEUES)


def test_a_deadline_queue_is_told_from_the_other_queues_of_its_consumer():
    payments = specs.by_name("payments")
    assert deadline_type_of("hookhub.payments.deadline.order_payment", payments)  # previous
    assert deadline_type_of("hookhub.payments.deadline.order_payment.86400s", payments)
    for other in ("hookhub.payments", "hookhub.payments.retry.5s", "hookhub.payments.dlq"):
        assert deadline_type_of(other, payments) is None
    assert deadline_type_of("hookhub.payments.deadline.order_payment.x", payments) is None
    assert deadline_queue("p", "deadline.x", 1e6) == "hookhub.p.deadline.x.1000000s"


def test_deadlines_are_catalogued_as_their_consumers_own_and_bound_by_no_one():
    catalogue = specs.catalogue()
    for consumer in specs.installed():
        assert consumer.handled_types == (*consumer.bindings, *consumer.deadlines)
        for deadline_type in consumer.deadlines:
            assert catalogue[deadline_type][0] == consumer.name
            assert not any(
                binding_matches(key, deadline_type)
                for other in specs.installed()
                for key in other.bindings
            )


@pytest.mark.parametrize(
    ("binding", "routing_key", "matches"),
    [
        ("order.created", "order.created", True),
        ("order.created", "order.created.v2", False),
        ("payment.*", "payment.approved", True),
        ("payment.*", "payment", False),
        ("payment.*", "payment.approved.late", False),
        ("ci.#", "ci", True),
        ("ci.#", "ci.build.finished", True),
        ("stripe.#", "stripeish.x", False),
        ("#", "anything.at.all", True),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.*.z", "a.z", False),
    ],
)
def test_binding_keys_match_routing_keys_as_the_broker_matches_them(binding, routing_key, matches):
    assert binding_matches(binding, routing_key) is matches


@pytest.mark.parametrize(
    ("binding", "head"),
    [("stripe.#", "stripe"), ("payment.*", "payment"), ("a.*.z", "a"), ("#", ""), ("ci.b", "ci.b")],
)
def test_a_binding_keys_literal_head_is_what_every_key_it_matches_starts_with(binding, head):
    assert literal_head(binding) == head
