"""The migration plan as a pure function of what the broker has and what the code declares."""

from hookhub import specs, topology
from hookhub.migrations import Existing, Observed, plan

DELAYS_S = (5.0,)
CONSUMERS = specs.names()
WANTED = topology.all_queues(DELAYS_S, 20)


def broker_with(*extra: Existing, bindings: dict[str, frozenset[str]] | None = None) -> Observed:
    """A broker holding the code's topology, empty and bound as declared, plus `extra`."""
    queues = {spec.name: Existing(spec.name, spec.arguments, 0) for spec in WANTED}
    queues.update({e.name: e for e in extra})
    bound = {spec.name: frozenset(spec.bindings) for spec in WANTED if spec.bindings}
    return Observed(queues, {**bound, **(bindings or {})}, complete=True, source="test")


def test_the_code_s_own_topology_needs_nothing():
    assert plan(WANTED, broker_with(), CONSUMERS).empty


def test_a_queue_missing_is_created_and_nothing_else_happens():
    observed = broker_with()
    del observed.queues[topology.dead_letter_queue("payments")]
    result = plan(WANTED, observed, CONSUMERS)
    assert result.create == (topology.dead_letter_queue("payments"),)
    assert (result.change, result.retire) == ((), ())


def test_a_queue_with_other_arguments_is_changed_keeping_its_messages_and_bindings():
    old = {"x-queue-type": "quorum", "x-max-length": 1000, "x-overflow": "drop-head"}
    result = plan(WANTED, broker_with(Existing(topology.UNROUTED_QUEUE, old, 32)), CONSUMERS)
    [change] = result.change
    assert (change.queue, change.old, change.messages) == (topology.UNROUTED_QUEUE, old, 32)
    assert change.new["x-max-length"] == topology.UNROUTED_MAX_MESSAGES
    assert change.refusal is None
    assert "          x-max-length: 1000 → 100000" in result.lines()


def test_a_bounded_queue_is_not_recreated_when_its_new_bound_would_drop_messages():
    messages = topology.UNROUTED_MAX_MESSAGES + 5
    old = Existing(topology.UNROUTED_QUEUE, {"x-queue-type": "quorum"}, messages)
    [change] = plan(WANTED, broker_with(old), CONSUMERS).change
    assert change.refusal is not None and "5 more than its new x-max-length" in change.refusal


def test_a_non_durable_queue_counts_as_changed():
    spec = WANTED[0]
    result = plan(
        WANTED, broker_with(Existing(spec.name, spec.arguments, 0, durable=False)), CONSUMERS
    )
    assert [c.queue for c in result.change] == [spec.name]


def test_a_retry_queue_for_a_delay_no_longer_configured_empties_into_its_consumer_s_work_queue():
    old = topology.retry_queue("payments", 7.0)
    result = plan(WANTED, broker_with(Existing(old, {"x-queue-type": "quorum"}, 3)), CONSUMERS)
    [retired] = result.retire
    assert (retired.queue, retired.messages, retired.destination) == (old, 3, "hookhub.payments")
    assert retired.refusal is None


def test_a_queue_of_a_consumer_no_longer_installed_is_kept_and_named_while_it_holds_messages():
    full = Existing(topology.work_queue("gone"), {"x-queue-type": "quorum"}, 4)
    empty = Existing(topology.dead_letter_queue("gone"), {"x-queue-type": "quorum"}, 0)
    result = plan(WANTED, broker_with(full, empty), CONSUMERS)
    by_name = {r.queue: r for r in result.retire}
    assert "hookhub.gone holds 4 message(s)" in by_name["hookhub.gone"].refusal
    assert by_name["hookhub.gone.dlq"].refusal is None  # empty: removed
    assert result.refusals == [by_name["hookhub.gone"].refusal]
    assert not result.settled  # the empty one is still to be removed


def test_a_broker_keeping_only_a_refused_retired_queue_has_this_version_s_topology():
    full = Existing(topology.work_queue("gone"), {"x-queue-type": "quorum"}, 4)
    result = plan(WANTED, broker_with(full), CONSUMERS)
    assert result.settled and not result.empty


def test_a_temporary_queue_left_by_an_interrupted_migration_is_emptied_back():
    left = Existing(topology.migrating_queue(topology.UNROUTED_QUEUE), {}, 9)
    result = plan(WANTED, broker_with(left), CONSUMERS)
    assert [(x.queue, x.messages) for x in result.resume] == [(topology.UNROUTED_QUEUE, 9)]
    assert result.retire == ()


def test_queues_outside_the_prefix_are_not_hookhub_s_to_retire():
    result = plan(
        WANTED, broker_with(Existing("amq.gen-abc", {}, 5), Existing("billing", {}, 1)), CONSUMERS
    )
    assert result.empty


def test_a_binding_the_code_dropped_is_removed_and_one_it_added_is_made():
    payments = topology.work_queue("payments")
    keys = frozenset({"order.cancelled", *specs.by_name("payments").bindings[1:]})
    result = plan(WANTED, broker_with(bindings={payments: keys}), CONSUMERS)
    assert result.unbind == ((payments, "order.cancelled"),)
    assert result.bind == ((payments, specs.by_name("payments").bindings[0]),)


def test_read_over_amqp_alone_a_changed_queue_shows_unknown_old_arguments_and_no_bindings():
    observed = broker_with(Existing(topology.UNROUTED_QUEUE, None, 2))
    observed = Observed(observed.queues, None, complete=False, source="AMQP alone")
    result = plan(WANTED, observed, CONSUMERS)
    [change] = result.change
    assert change.old is None
    assert "          x-max-length: ? → 100000" in result.lines()
    assert (result.bind, result.unbind) == ((), ())


def test_the_archive_stream_is_never_recreated_for_a_new_retention():
    archive = topology.Archive().spec()
    wanted = [*WANTED, archive]
    old = Existing(archive.name, {**archive.arguments, "x-max-age": "1D"}, 10)
    observed = broker_with(old)
    [change] = plan(wanted, observed, CONSUMERS).change
    assert change.queue == topology.ARCHIVE_QUEUE
    assert change.refusal is not None and "is a stream and is not recreated" in change.refusal
