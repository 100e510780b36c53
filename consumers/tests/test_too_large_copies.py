"""A failed message whose copy would be too large to publish (its own headers and the failure
headers over `MAX_PROPERTIES_BYTES`) is parked without its largest headers, the reason naming
them, and the original acked: never given back to come round forever."""

from types import SimpleNamespace

import aio_pika
import pamqp.header
from hookhub import failures, topology
from hookhub.broker import MAX_PROPERTIES_BYTES, MessageTooLarge, check_size
from hookhub.events import Event
from hookhub_consumers.retries import DeadLetter, Policy, decide, fitting, retry_or_park

POLICY = Policy((5.0, 30.0))


class Delivered:
    """A delivered message, as much of one as the move reads; it says how it was settled."""

    def __init__(self, headers: dict, routing_key: str = "ci.big") -> None:
        message = Event(id="big-1", source="ci", type=routing_key, data=b"{}").to_message()
        self.body, self.routing_key = message.body, routing_key
        self.headers = {**(message.headers or {}), **headers}
        for name in ("content_type", "message_id", "correlation_id", "timestamp", "type"):
            setattr(self, name, getattr(message, name))
        self.app_id = message.app_id
        self.channel = SimpleNamespace(is_closed=False)
        self.settled: list[str] = []

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.settled.append("nack")


class SizeCheckingBroker:
    """Takes what a broker would take: a copy too large is refused as `Broker` refuses it."""

    def __init__(self) -> None:
        self.taken: list[tuple[str, aio_pika.Message]] = []

    async def publish_to_queue(self, message: aio_pika.Message, queue: str) -> None:
        check_size(message.properties)
        self.taken.append((queue, message))


def size_bytes(message: Delivered) -> int:
    properties = aio_pika.Message(message.body, headers=message.headers).properties
    return len(pamqp.header.ContentHeader(0, 0, properties).marshal())


def near_the_limit() -> Delivered:
    """A delivered message 20 bytes under the limit: with the failure headers, it is over."""
    message = Delivered({"x-storefront-cart": "", "x-small": "kept"})
    message.headers["x-storefront-cart"] = "c" * (MAX_PROPERTIES_BYTES - 20 - size_bytes(message))
    check_size(aio_pika.Message(b"", headers=message.headers).properties)
    return message


def test_a_message_too_large_to_publish_is_dead_lettered_at_once():
    error = MessageTooLarge(40_000, "header cloudEvents:subject")
    step = decide(error, 1, POLICY)
    assert isinstance(step, DeadLetter) and "largest: header cloudEvents:subject" in step.reason


async def test_a_retry_copy_too_large_is_parked_without_its_largest_header_and_the_original_acked():
    message = near_the_limit()
    broker = SizeCheckingBroker()
    moved = await retry_or_park(message, RuntimeError("boom"), "notifications", POLICY, broker)  # type: ignore[arg-type]
    assert moved is not None and moved.outcome == "dead_lettered"
    [(queue, copy)] = broker.taken
    assert queue == topology.dead_letter_queue("notifications")
    assert "x-storefront-cart" not in copy.headers and copy.headers["x-small"] == "kept"
    assert copy.headers[failures.REASON_HEADER] == moved.reason
    assert moved.reason.startswith("too large to move, dropped header(s) x-storefront-cart: ")
    assert moved.reason.endswith("RuntimeError: boom")
    assert copy.expiration is None and copy.body == message.body
    assert message.settled == ["ack"]


async def test_a_copy_that_fits_moves_as_before():
    message = Delivered({"x-small": "kept"})
    broker = SizeCheckingBroker()
    moved = await retry_or_park(message, RuntimeError("boom"), "notifications", POLICY, broker)  # type: ignore[arg-type]
    assert moved is not None and moved.outcome == "retried"
    assert broker.taken[0][0] == topology.retry_queue("notifications", 5.0)
    assert message.settled == ["ack"]


def test_fitting_drops_the_largest_headers_first_and_keeps_the_events_identity():
    headers = {
        "cloudEvents:id": "e1",
        "cloudEvents:type": "ci.big",
        **{f"x-part-{n}": "p" * 9_000 for n in range(6)},
        "x-small": "s",
    }
    copy = fitting(aio_pika.Message(b"{}", headers=headers), "permanent failure: no")
    check_size(copy.properties)
    assert {"cloudEvents:id", "cloudEvents:type", "x-small"} <= set(copy.headers)
    reason = str(copy.headers[failures.REASON_HEADER])
    assert reason.startswith("too large to move, dropped header(s) x-part-")
    assert " and 0 more" not in reason and len(reason) < 200
