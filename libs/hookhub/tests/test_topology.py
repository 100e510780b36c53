"""The topology as data: names and arguments, checked without a broker."""

import pytest
from hookhub import specs
from hookhub.topology import (
    all_queues,
    binding_matches,
    dead_letter_queue,
    deadline_queue,
    literal_head,
    retry_queue,
    work_queue,
)

QUEUES = {spec.name: spec for spec in all_queues((5.0, 30.0), delivery_limit=20)}


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


def test_deadline_queues_hold_each_message_for_its_own_ttl_then_hand_it_to_their_consumer():
    for consumer in specs.installed():
        for deadline_type in consumer.deadlines:
            spec = QUEUES[deadline_queue(consumer.name, deadline_type)]
            assert spec.name == f"hookhub.{consumer.name}.{deadline_type}"
            assert spec.arguments["x-dead-letter-routing-key"] == work_queue(consumer.name)
            assert "x-message-ttl" not in spec.arguments  # each deadline carries its delay
            assert spec.bindings == ()  # never on the exchange


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
