"""Acking the messages a consumer is done with in as few frames as the broker allows.

Every ack is a frame and a socket write; with many messages in hand they finish close together.
A message done is acked together with every message delivered before it (`multiple=True`) once
none of those is still being handled; acks decided within SEND_AFTER_S of each other, or before
the previous one went out, are sent as one, and one that leaves nothing in hand goes at once
(nothing else could share its frame; at saturation the window's next deliveries wait on it).
One that finishes while an earlier one is still in hand waits for it at most FLUSH_AFTER_S, then
is acked alone, so a slow message never holds the others' prefetch slots for long. Messages
settled otherwise (moved to a retry queue, given back) are settled by the runtime itself and
only leave the line here.

Also what settling one message by hand needs: where it came from, whether the broker has it back.
"""

import asyncio
from collections.abc import Awaitable

from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError
from aiormq.abc import AbstractChannel
from hookhub import failures
from hookhub.logs import log

FLUSH_AFTER_S = 0.05
# How long an ack waits for others to go in its frame. Each frame is a socket write, the largest
# share of a message's CPU (py-spy, issue #25); the effects are saved and the follow-ups
# confirmed already, so the wait holds only the message's prefetch slot, this long.
SEND_AFTER_S = 0.005


class _Line:
    """One channel's deliveries. Its delivery tags count 1, 2, 3...: every tag up to `floor` is
    acked or settled; above it, `done` holds those in hand (True once done) and `gone` those
    acked or settled one by one."""

    def __init__(self, channel: AbstractChannel) -> None:
        self.channel = channel
        self.floor = 0
        self.done: dict[int, bool] = {}
        self.gone: set[int] = set()
        self.flush: asyncio.TimerHandle | None = None
        # Acks decided, sent in the order decided by one task: an ack sent alone after a
        # multiple one that already took its message would make the broker close the channel.
        self.to_send: list[tuple[int, bool]] = []
        self.sender: asyncio.Task[None] | None = None
        self.due: asyncio.TimerHandle | None = None  # the sender's start, SEND_AFTER_S away

    def send(self, tag: int, multiple: bool) -> None:
        if multiple:
            # Every tag up to this one is settled, so this ack takes the place of those still
            # waiting to be sent for them: messages finished together (a group committed, a
            # batch of confirms) go in one frame, not one each.
            self.to_send = [(t, m) for t, m in self.to_send if t > tag]
        self.to_send.append((tag, multiple))
        if self.due is None and (self.sender is None or self.sender.done()):
            self.due = asyncio.get_running_loop().call_later(SEND_AFTER_S, self.send_now)

    def send_now(self) -> None:
        if self.due is not None:
            self.due.cancel()
            self.due = None
        if self.to_send and (self.sender is None or self.sender.done()):
            self.sender = asyncio.create_task(self._send_in_order(), name="acks")

    async def _send_in_order(self) -> None:
        while self.to_send:
            tag, multiple = self.to_send.pop(0)
            try:
                await self.channel.basic_ack(tag, multiple=multiple)
            except Exception as error:
                # The channel closed under us: the broker has taken back what it held and
                # redelivers it, and the markers make each redelivery a duplicate.
                log.warning(
                    "event.unsettled", error=f"{type(error).__name__}: {error}", redelivered=True
                )
                self.to_send.clear()


class Acks:
    def __init__(self) -> None:
        self._lines: dict[int, _Line] = {}  # by id() of the channel: it changes on reconnect

    def received(self, message: AbstractIncomingMessage) -> None:
        if (line := self._line(message)) is not None:
            line.done[message.delivery_tag or 0] = False

    def ack(self, message: AbstractIncomingMessage) -> None:
        """The message is done: ack it (with the done ones delivered before it) now or soon."""
        if (line := self._line(message)) is None:
            log.warning("event.unsettled", redelivered=True)  # the broker has it back already
            return
        line.done[message.delivery_tag or 0] = True
        self._ack_done_prefix(line)
        if line.flush is None and any(line.done.values()):
            line.flush = asyncio.get_running_loop().call_later(FLUSH_AFTER_S, self._flush, line)

    def settled(self, message: AbstractIncomingMessage) -> None:
        """The runtime acked or gave back the message itself: it leaves the line."""
        if (line := self._line(message)) is None:
            return
        tag = message.delivery_tag or 0
        line.done.pop(tag, None)
        line.gone.add(tag)
        self._ack_done_prefix(line)

    async def flush(self) -> None:
        """Send every ack still waiting (before the channel closes at shutdown)."""
        for line in list(self._lines.values()):
            if line.flush is not None:
                line.flush.cancel()
                self._flush(line)
        for line in self._lines.values():
            line.send_now()
        senders = [line.sender for line in self._lines.values() if line.sender is not None]
        await asyncio.gather(*senders, return_exceptions=True)

    def _line(self, message: AbstractIncomingMessage) -> _Line | None:
        """The line of the message's channel; None once that channel is closed."""
        try:
            channel = message.channel
        except ChannelInvalidStateError:  # aio-pika's way of saying the channel is closed
            return None
        line = self._lines.get(id(channel))
        if line is None or line.channel is not channel:
            self._lines = {k: v for k, v in self._lines.items() if not v.channel.is_closed}
            line = self._lines[id(channel)] = _Line(channel)
        return line

    def _ack_done_prefix(self, line: _Line) -> None:
        """Ack, in one frame, the done messages from the floor up to the first tag still in hand
        or not yet seen (a multiple ack would take a message not yet handled with it)."""
        tag, last_done = line.floor + 1, None
        while line.done.get(tag) or tag in line.gone:
            if line.done.pop(tag, False):
                last_done = tag
            line.gone.discard(tag)
            tag += 1
        line.floor = tag - 1
        if last_done is not None:
            line.send(last_done, multiple=True)
            if not line.done:  # nothing else in hand to finish and share the frame: wait no more
                line.send_now()

    def _flush(self, line: _Line) -> None:
        """Ack alone each done message still waiting behind one in hand."""
        line.flush = None
        for tag in [tag for tag, done in line.done.items() if done]:
            del line.done[tag]
            line.gone.add(tag)
            line.send(tag, multiple=False)


def from_archive(message: AbstractIncomingMessage) -> bool:
    """Whether the message was read from the archive (a backfill's), not from a queue."""
    return failures.STREAM_OFFSET_HEADER in (message.headers or {})


def taken_back(message: AbstractIncomingMessage) -> bool:
    """Whether the broker has taken the message back, to deliver it again: a queue's, whose
    channel closed. Never an archive's (a backfill's): a stream delivers nothing again, so its
    failure is moved to the retry queues whatever became of the channel it came on."""
    return not from_archive(message) and _channel_gone(message)


def _channel_gone(message: AbstractIncomingMessage) -> bool:
    try:
        return message.channel.is_closed
    except ChannelInvalidStateError:  # aio-pika's way of saying closed
        return True


async def settle(ack_or_nack: Awaitable[None]) -> None:
    """Ack or nack one message now; on a channel the connection has dropped, the broker has
    already taken the message back and redelivers it, so there is nothing left but to say so."""
    try:
        await ack_or_nack
    except Exception as error:
        log.warning("event.unsettled", error=f"{type(error).__name__}: {error}", redelivered=True)
