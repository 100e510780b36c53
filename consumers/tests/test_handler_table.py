"""The handler table and the topology agree: every binding has a step, every step a binding."""

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
def test_each_binding_of_a_work_queue_is_served_by_one_handler_step(consumer):
    assert set(HANDLERS[consumer]) == set(topology.CONSUMER_BINDINGS[consumer])
    assert steps_disagreeing(consumer, HANDLERS[consumer]) == set()


async def test_the_runtime_refuses_a_consumer_whose_steps_miss_a_binding(tmp_path):
    steps = dict(HANDLERS["production"])
    del steps["payment.refunded"]
    store = open_store(f"sqlite:///{tmp_path}/store.db")
    async with httpx.AsyncClient() as http:
        with pytest.raises(ValueError, match=r"production: .* disagree on \{'payment.refunded'\}"):
            Consumer("production", steps, Settings(), store, http)
    await store.close()
