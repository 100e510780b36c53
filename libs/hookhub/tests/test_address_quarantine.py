"""A node left because it hung is tried last for a while: a frozen node takes a whole connect
timeout per attempt, and a client bouncing between healthy nodes must not spend it again."""

import asyncio

import pytest
from hookhub.addresses import QUARANTINE_S, Addresses

NODES = ("amqp://u:p@rabbit-0/", "amqp://u:p@rabbit-1/", "amqp://u:p@rabbit-2/")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_node_left_as_hung_is_skipped_by_the_next_failover():
    addresses = Addresses(NODES, clock=Clock())

    addresses.move_on(hung=True)  # rabbit-0 froze: on to rabbit-1
    assert addresses.current == NODES[1]
    addresses.move_on()  # rabbit-1 waits on an election: on to rabbit-2, not back to rabbit-0

    assert addresses.current == NODES[2]
    assert addresses.in_turn() == (NODES[2], NODES[1], NODES[0])


def test_a_hung_node_is_still_tried_once_every_other_address_failed():
    addresses = Addresses(NODES[:2], clock=Clock())

    addresses.move_on(hung=True)
    assert addresses.current == NODES[1]
    addresses.move_on()

    assert addresses.current == NODES[0]  # the only other one, quarantined or not


def test_the_quarantine_ends_after_its_time():
    clock = Clock()
    addresses = Addresses(NODES, clock=clock)
    addresses.move_on(hung=True)

    clock.now += QUARANTINE_S

    assert not addresses.quarantined(NODES[0])
    assert addresses.in_turn() == (NODES[1], NODES[2], NODES[0])  # plain round-robin again
    addresses.move_on()
    assert addresses.in_turn() == (NODES[2], NODES[0], NODES[1])


def test_a_node_given_up_on_without_hanging_keeps_its_place_in_turn():
    addresses = Addresses(NODES, clock=Clock())

    addresses.move_on()
    addresses.move_on()

    assert addresses.current == NODES[2] and addresses.in_turn()[1] == NODES[0]


def test_one_address_is_never_quarantined():
    addresses = Addresses(NODES[:1], clock=Clock())

    addresses.move_on(hung=True)

    assert addresses.in_turn() == NODES[:1] and not addresses.quarantined(NODES[0])


def test_a_connect_that_times_out_quarantines_the_node_and_an_answer_releases_it():
    addresses = Addresses(NODES, clock=Clock())
    tried: list[str] = []
    frozen = {NODES[0]}

    async def connect(url: str, **_: float) -> str:
        tried.append(url.partition("?")[0])
        if url.partition("?")[0] in frozen:
            await asyncio.sleep(1)
        return url

    _, url = asyncio.run(addresses.connect_first(connect, timeout_s=0.05))
    assert url == NODES[1] and addresses.quarantined(NODES[0])

    tried.clear()
    addresses.current = NODES[0]  # even asked to start there, rabbit-0 comes last
    _, url = asyncio.run(addresses.connect_first(connect, timeout_s=0.05))
    assert tried == [NODES[1]] and url == NODES[1]

    frozen.clear()
    addresses.current = NODES[2]
    with pytest.raises(TimeoutError):
        frozen.update(NODES)
        asyncio.run(addresses.connect_first(connect, timeout_s=0.05))
    assert tried[-1] == NODES[0]  # every address tried, the quarantined one last
