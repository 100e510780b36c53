"""The outbox: publishing the follow-up events a state change saved, and relaying the ones left.

A handler's follow-ups are saved in the store with its state change (one atomic write) and
published after the commit. When the broker cannot confirm them then, or the process dies before
it could, they stay saved: the relay publishes every outbox older than one relay interval, at
start-up and then once per interval. So the message that caused them can be acked as soon as they
are saved, and no retry, parking or purge of it can lose them. Their ids derive from the cause,
so a follow-up published twice (by the relay and a redelivery) is one event downstream.
"""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hookhub import topology
from hookhub.broker import Broker, BrokerUnavailable
from hookhub.events import Event
from hookhub.logs import log
from prometheus_client import Gauge

from hookhub_consumers.store import Marker, Store

OUTBOX_PENDING = Gauge(
    "hookhub_outbox_pending",
    "Events whose follow-ups were saved more than a relay interval ago and are not yet published",
    ["consumer"],
)


class Outbox:
    """One consumer's follow-ups on their way from the store to the broker."""

    def __init__(self, consumer: str, store: Store, broker: Broker, relay_interval_s: float):
        self.consumer = consumer
        self.store = store
        self.broker = broker
        self.relay_interval_s = relay_interval_s

    async def publish(self, follow_ups: list[Event]) -> bool:
        """Publish saved follow-ups, with their confirms in flight together; False when the
        broker did not confirm them all (they stay saved, and the relay sends them)."""
        results = await asyncio.gather(
            *(self._publish_one(follow_up) for follow_up in follow_ups), return_exceptions=True
        )
        for follow_up, result in zip(follow_ups, results, strict=True):
            if isinstance(result, BrokerUnavailable):
                log.warning("outbox.deferred", follow_up=follow_up.type, error=str(result))
                return False
            if isinstance(result, BaseException):
                raise result
        return True

    async def _publish_one(self, follow_up: Event) -> None:
        if follow_up.delay_s is None:
            await self.broker.publish(follow_up)
            return
        # A deadline goes straight to its queue, whose TTL hands it back to this consumer.
        queue = topology.deadline_queue(self.consumer, follow_up.type)
        left_s = time_left_s(follow_up, datetime.now(UTC))
        await self.broker.publish_to_queue(replace(follow_up, delay_s=left_s).to_message(), queue)

    async def publish_pending(self, marker: Marker) -> bool:
        """Publish what is still saved under this marker (left by a crash or another copy);
        True when something went out, to be forgotten."""
        pending = await self.store.pending(marker)
        return bool(pending) and await self.publish([Event.from_json(text) for text in pending])

    async def forget(self, marker: Marker) -> None:
        """Drop the marker's published outbox; if the store fails now, the relay publishes it
        again later (a repeat downstream drops by its id)."""
        try:
            await self.store.sent(marker)
        except Exception as error:
            log.warning("outbox.not_forgotten", error=f"{type(error).__name__}: {error}")

    async def relay(self, stop: asyncio.Event) -> None:
        """Until `stop` is set: publish what publishing after the commit left behind, now (what
        a previous process left) and once every relay interval."""
        saved_before = datetime.now(UTC)
        while not stop.is_set():
            try:
                unsent = await self.store.unsent(self.consumer, saved_before)
                OUTBOX_PENDING.labels(self.consumer).set(len(unsent))
                for marker in unsent:
                    pending = [Event.from_json(text) for text in await self.store.pending(marker)]
                    if not await self.publish(pending):
                        break  # the broker refuses: wait for the next round
                    await self.forget(marker)
                    log.info("outbox.relayed", consumer=self.consumer, event_key=marker.event_key)
            except Exception as error:  # the store is down: the next round tries again
                log.warning("outbox.relay_failed", error=f"{type(error).__name__}: {error}")
            try:
                await asyncio.wait_for(stop.wait(), self.relay_interval_s)
            except TimeoutError:
                pass
            # Only outboxes at least one interval old: the handler that saved a newer one is
            # publishing it right now.
            saved_before = datetime.now(UTC) - timedelta(seconds=self.relay_interval_s)


def time_left_s(deadline: Event, now: datetime) -> float:
    """What is left of a deadline's delay at `now`: one published late (the relay's, after the
    broker was away or the process died) is still due when it was set to be."""
    assert deadline.delay_s is not None
    return max(0.0, deadline.delay_s - (now - deadline.time).total_seconds())
