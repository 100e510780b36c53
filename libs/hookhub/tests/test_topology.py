"""The topology as data: names and arguments, checked without a broker."""

from hookhub.topology import CONSUMERS, all_queues, dead_letter_queue, retry_queue, work_queue

QUEUES = {spec.name: spec for spec in all_queues((5.0, 30.0), delivery_limit=20)}


def test_every_queue_that_dead_letters_does_so_at_least_once():
    dead_lettering = [s for s in QUEUES.values() if "x-dead-letter-routing-key" in s.arguments]
    assert dead_lettering
    for spec in dead_lettering:
        assert spec.arguments["x-dead-letter-strategy"] == "at-least-once", spec.name
        assert spec.arguments["x-overflow"] == "reject-publish", spec.name


def test_retry_queues_wait_their_delay_then_return_to_work_and_work_parks_in_the_dlq():
    for consumer in CONSUMERS:
        work = QUEUES[work_queue(consumer)].arguments
        assert work["x-dead-letter-routing-key"] == dead_letter_queue(consumer)
        assert work["x-delivery-limit"] == 20
        for delay_s in (5.0, 30.0):
            retry = QUEUES[retry_queue(consumer, delay_s)].arguments
            assert retry["x-message-ttl"] == int(delay_s * 1000)
            assert retry["x-dead-letter-routing-key"] == work_queue(consumer)
