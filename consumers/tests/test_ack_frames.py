"""Acks in as few frames as the broker allows, and none held back for nothing: an ack that leaves
nothing in hand goes at once (the broker sends the next prefetch window only after it); one with
messages still in hand waits a little for them to share its frame. The ack mechanism in memory:
the `basic.ack` frames a channel was asked to send, and when."""

import asyncio
from dataclasses import dataclass, field

import pytest
from hookhub_consumers import acks
from hookhub_consumers.acks import Acks

LONG_S = 30.0  # a frame-sharing wait no test may sit out
BOUND_S = 5.0


@dataclass
class Channel:
    """What `Acks` uses of aiormq's channel: the frames asked for."""

    frames: list[tuple[int, bool]] = field(default_factory=list)
    sent: asyncio.Event = field(default_factory=asyncio.Event)
    is_closed: bool = False

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self.frames.append((delivery_tag, multiple))
        self.sent.set()


@dataclass
class Message:
    channel: Channel
    delivery_tag: int


@pytest.fixture
def slow_sharing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(acks, "SEND_AFTER_S", LONG_S)


async def test_an_ack_that_leaves_nothing_in_hand_goes_at_once(slow_sharing: None) -> None:
    channel, line = Channel(), Acks()
    window = [Message(channel, tag) for tag in (1, 2, 3)]
    for message in window:
        line.received(message)  # type: ignore[arg-type]
    for message in window:
        line.ack(message)  # type: ignore[arg-type]
    await asyncio.wait_for(channel.sent.wait(), BOUND_S)
    assert channel.frames == [(3, True)]  # the whole window, one frame


async def test_an_ack_with_messages_still_in_hand_waits_to_share_its_frame(
    slow_sharing: None,
) -> None:
    channel, line = Channel(), Acks()
    first, second = Message(channel, 1), Message(channel, 2)
    line.received(first)  # type: ignore[arg-type]
    line.received(second)  # type: ignore[arg-type]
    line.ack(first)  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert channel.frames == []  # waiting for the second to finish
    line.ack(second)  # type: ignore[arg-type]
    await asyncio.wait_for(channel.sent.wait(), BOUND_S)
    assert channel.frames == [(2, True)]
