"""The handler table and the topology agree: every binding and deadline has a step, every step a
binding or a deadline."""

import httpx
import pytest
from hookhub import topology
from hookhub.settings import Settings
from hookhub_consumers.handlers import HANDLERS
from hookhub_consumers.runtime import Consumer, steps_disagreeing
from hookhub_consumers.store import open_store


def test_the_handler_table_names_exactly_the_topologys_consumers():
    assert list(HANDLERS) == list(topology.CONSUMERS)


@pytest.mark.parametrize("consumer", topology.CONSUMERS)
def test_each_binding_and_deadline_of_a_consumer_is_served_by_one_handler_step(consumer):
    expected = {
        *topology.CONSUMER_BINDINGS[consumer],
        *topology.CONSUMER_DEADLINES.get(consumer, ()),
    }
    assert set(HANDLERS[consumer]) == expected
    assert steps_disagreeing(consumer, HANDLERS[consumer]) == set()


async def test_the_runtime_refuses_a_consumer_whose_steps_miss_a_binding(tmp_path):
    steps = dict(HANDLERS["production"])
    del steps["payment.refunded"]
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match=r"production: .* disagree on \{'payment.refunded'\}"):
            Consumer("production", steps, Settings(), store, http)
    await store.close()


async def test_the_runtime_refuses_a_consumer_without_a_step_for_its_deadline(tmp_path):
    steps = dict(HANDLERS["payments"])
    del steps["deadline.order_payment"]
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match=r"disagree on \{'deadline.order_payment'\}"):
            Consumer("payments", steps, Settings(), store, http)
    await store.close()
