"""Connections to the broker's addresses are bounded: a heartbeat asked of every one (unless the
URL sets its own), each connect within its timeout as a whole, and giving up on a named address
moves on to the one after it."""

import asyncio

from hookhub.addresses import HEARTBEAT_S, Addresses, with_heartbeat

A, B, C = "amqp://a/", "amqp://b/", "amqp://c/"


def test_a_url_gets_the_heartbeat_unless_it_sets_one():
    assert (
        with_heartbeat("amqp://u:p%40ss@h:5672/")
        == f"amqp://u:p%40ss@h:5672/?heartbeat={HEARTBEAT_S}"
    )
    assert with_heartbeat("amqp://h/v?name=x") == f"amqp://h/v?name=x&heartbeat={HEARTBEAT_S}"
    assert with_heartbeat("amqp://h/v?heartbeat=30") == "amqp://h/v?heartbeat=30"


def test_giving_up_on_a_named_address_tries_the_one_after_it_first():
    addresses = Addresses([A, B, C])

    addresses.move_on(B)

    assert addresses.in_turn() == (C, A, B)


async def test_an_address_that_takes_the_connection_and_then_hangs_is_passed_over():
    async def connect(url: str, timeout: float) -> str:  # noqa: ASYNC109 (aio-pika's signature)
        if url.startswith(A):
            await asyncio.sleep(60)  # a frozen node: TCP accepted, no handshake
        return url

    connection, url = await Addresses([A, B]).connect_first(connect, timeout_s=0.2)

    assert url == B and connection == with_heartbeat(B)
