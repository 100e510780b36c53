"""The consumers' specs agree with their handler steps and with each other, and the runtime
refuses a consumer whose steps miss a binding or a deadline."""

import httpx
import pytest
from hookhub import specs
from hookhub.settings import Settings
from hookhub.specs import ConsumerSpec, SpecError
from hookhub_consumers.runtime import Consumer, steps_disagreeing
from hookhub_consumers.store import open_store
from hookhub_eventlog.store import open_event_log


def test_the_installed_consumers_are_found_through_their_entry_points():
    assert specs.names() == ("notifications", "payments", "production")


@pytest.mark.parametrize("consumer", specs.installed(), ids=specs.names())
def test_each_binding_and_deadline_of_a_consumer_is_served_by_one_handler_step(consumer):
    steps = consumer.load_steps()
    assert set(steps) == {*consumer.bindings, *consumer.deadlines}
    assert steps_disagreeing(consumer, steps) == set()


async def test_the_runtime_refuses_a_consumer_whose_steps_miss_a_binding(tmp_path):
    spec = specs.by_name("production")
    steps = dict(spec.load_steps())
    del steps["payment.refunded"]
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    journal = open_event_log(f"sqlite:///{tmp_path}/store.db")
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match=r"production: .* disagree on \{'payment.refunded'\}"):
            Consumer(spec, steps, Settings(), store, journal, http)
    await store.close()
    await journal.close()


async def test_the_runtime_refuses_a_consumer_without_a_step_for_its_deadline(tmp_path):
    spec = specs.by_name("payments")
    steps = dict(spec.load_steps())
    del steps["deadline.order_payment"]
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    journal = open_event_log(f"sqlite:///{tmp_path}/store.db")
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match=r"disagree on \{'deadline.order_payment'\}"):
            Consumer(spec, steps, Settings(), store, journal, http)
    await store.close()
    await journal.close()


def test_an_unknown_consumer_is_refused_naming_the_known_ones():
    with pytest.raises(KeyError, match="unknown consumer 'billing'; known: notifications, pay"):
        specs.by_name("billing")


def test_two_consumers_may_not_claim_one_type():
    a = ConsumerSpec("a", ("x.#",), "m:S", emits={"thing.done": "..."})
    b = ConsumerSpec("b", ("y.#",), "m:S", emits={"thing.done": "..."})
    with pytest.raises(SpecError, match="'thing.done' is claimed by both a and b"):
        specs.check((a, b))


def test_a_consumer_may_not_emit_what_callers_send():
    spec = ConsumerSpec("a", ("x.#",), "m:S", emits={"order.created": "..."})
    with pytest.raises(SpecError, match="emits 'order.created', which callers send"):
        specs.check((spec,))


def test_a_deadline_outside_the_deadline_namespace_is_refused():
    with pytest.raises(SpecError, match="must be named 'deadline.<what>'"):
        ConsumerSpec("a", ("x.#",), "m:S", deadlines={"timer.a": "..."})
