"""The outbox: publishing the follow-up events a state change saved, and relaying the ones left.

A handler's follow-ups are saved in the store with its state change (one atomic write) and
published after the commit. When the broker cannot confirm them then, or the process dies before
it could, they stay saved: the relay publishes every outbox older than one relay interval, at
start-up and then once per interval. So the message that caused them can be acked as soon as they
are saved, and no retry, parking or purge of it can lose them. Only the copy of an event that
saved the outbox publishes it after its commit; another copy (a redelivery, a provider's repeat
in hand at once in another process) leaves it to the relay, so that concurrent copies publish
each follow-up once. Their ids derive from the cause, so a follow-up published twice anyway (two
processes' relays at once) is one event downstream.

A follow-up too large to publish (`MessageTooLarge`: its headers over what one frame may carry)
never will be: it is parked, stripped to its body and identity, in the consumer's dead-letter
queue, recorded in its cause's journey, and counted as sent, so that it does not stop the relay
at every round, nor the outboxes after it.
"""

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import aio_pika
import aiormq
from hookhub import failures, topology
from hookhub.broker import Broker, BrokerUnavailable, MessageTooLarge
from hookhub.events import Event
from hookhub.logs import log
from hookhub_eventlog.store import Step
from prometheus_client import Gauge

from hookhub_consumers.store import Marker, Store
from hookhub_consumers.store.base import FORGET_WITHIN_S

OUTBOX_PENDING = Gauge(
    "hookhub_outbox_pending",
    "Events whose follow-ups were saved more than a relay interval ago and are not yet published",
    ["consumer"],
)


class Outbox:
    """One consumer's follow-ups on their way from the store to the broker."""

    def __init__(
        self,
        consumer: str,
        store: Store,
        broker: Broker,
        relay_interval_s: float,
        journey: Callable[[Step], Awaitable[None]] | None = None,
    ):
        self.consumer = consumer
        self.store = store
        self.broker = broker
        self.relay_interval_s = relay_interval_s
        self.journey = journey  # records a step of an event's journey, never raising
        # The deadline queues this process declared (each duration's, on its first deadline).
        self._declared: set[str] = set()

    async def publish(self, follow_ups: list[Event]) -> bool:
        """Publish saved follow-ups, with their confirms in flight together; False when the
        broker did not confirm them all (they stay saved, and the relay sends them). One too
        large to publish is parked instead, and counts as sent."""
        results = await asyncio.gather(
            *(self._publish_one(follow_up) for follow_up in follow_ups), return_exceptions=True
        )
        sent = True
        for follow_up, result in zip(follow_ups, results, strict=True):
            if isinstance(result, MessageTooLarge):
                result = await self._park(follow_up, result)
            if isinstance(result, BrokerUnavailable):
                log.warning("outbox.deferred", follow_up=follow_up.type, error=str(result))
                sent = False
            elif isinstance(result, BaseException):
                raise result
        return sent

    async def _park(self, follow_up: Event, error: MessageTooLarge) -> BrokerUnavailable | None:
        """Put a follow-up that can never be published in the dead-letter queue, as much of it
        as can be: its body and identity, and why. `BrokerUnavailable` (returned) when the
        broker did not take that either: it stays saved, and the relay tries again."""
        log.error(
            "outbox.too_large",
            consumer=self.consumer,
            type=follow_up.type,
            id=follow_up.id,
            largest=error.largest,
            size_bytes=error.size_bytes,
        )
        reason = f"follow-up {follow_up.type} {follow_up.id} not published: {error}"
        try:
            await self.broker.publish_to_queue(
                parked_copy(follow_up, self.consumer, reason),
                topology.dead_letter_queue(self.consumer),
            )
        except BrokerUnavailable as unavailable:
            return unavailable
        if self.journey is not None:
            # In its cause's journey: the follow-up itself never reached the event log.
            cause = follow_up.causation_id or follow_up.id
            await self.journey(Step(cause, self.consumer, "parked", reason))
        return None

    async def _publish_one(self, follow_up: Event) -> None:
        if follow_up.delay_s is None:
            await self.broker.publish(follow_up)
            return
        left_s = time_left_s(follow_up, datetime.now(UTC))
        if left_s <= 0:
            # Already due (relayed late): to the work queue, not behind deadlines still pending.
            message = replace(follow_up, delay_s=None).to_message()
            await self.broker.publish_to_queue(message, topology.work_queue(self.consumer))
            return
        # A deadline goes to the queue of the duration it was set with, whose TTL hands it back
        # to this consumer; with what is left of it as its own TTL (see `topology`'s deadlines).
        spec = topology.deadline_queue_spec(self.consumer, follow_up.type, follow_up.delay_s)
        await self._declare(spec)
        try:
            message = replace(follow_up, delay_s=left_s).to_message()
            await self.broker.publish_to_queue(message, spec.name)
        except BrokerUnavailable:
            self._declared.discard(spec.name)  # removed meanwhile? declared again next time
            raise

    async def _declare(self, spec: topology.QueueSpec) -> None:
        """Declare a deadline queue once per process: the one of the configured duration exists
        already, another (a deadline saved before its setting changed) may not any more."""
        if spec.name in self._declared:
            return
        connection = self.broker.connection
        if connection is None or connection.is_closed:
            raise BrokerUnavailable("RabbitMQ is not connected")
        try:
            async with asyncio.timeout(self.broker.settings.publish_timeout_s):
                async with connection.channel() as channel:
                    await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        except aiormq.exceptions.ChannelPreconditionFailed:
            pass  # it exists, declared otherwise (an older version's): it still takes deadlines
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError, TimeoutError) as exc:
            raise BrokerUnavailable(f"deadline queue not declared: {type(exc).__name__}") from exc
        self._declared.add(spec.name)

    def forget_soon(self, marker: Marker) -> None:
        """Drop the marker's published outbox with the store's next write, waiting for nothing
        (`Store.forget_soon`): after its publish, an event costs no write of its own. Written
        well within a relay interval, so the relay does not take it for one left behind."""
        self.store.forget_soon(marker, min(FORGET_WITHIN_S, self.relay_interval_s / 4))

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
            if not self.broker.connected.is_set():
                # A round now would only fail, and put off what a crash left (which no other
                # copy publishes: see the runtime's duplicates) by a whole interval.
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.broker.connected.wait(), self.relay_interval_s)
                continue
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


def parked_copy(follow_up: Event, consumer: str, reason: str) -> aio_pika.Message:
    """What of a follow-up too large to publish is kept in the dead-letter queue: its body, its
    CloudEvents identity (id, source, type, time), its correlation id and the failure headers
    saying why; not its subject, trace context or causation, one of which made it too large."""
    identity = Event(
        id=follow_up.id,
        source=follow_up.source,
        type=follow_up.type,
        data=follow_up.data,
        content_type=follow_up.content_type,
        time=follow_up.time,
        correlation_id=follow_up.correlation_id,
    )
    copy = identity.to_message()
    copy.headers = failures.failure_headers(
        copy.headers, consumer=consumer, attempts=1, reason=reason, routing_key=follow_up.type
    )
    return copy


def time_left_s(deadline: Event, now: datetime) -> float:
    """What is left of a deadline's delay at `now`: one published late (the relay's, after the
    broker was away or the process died) is still due when it was set to be."""
    assert deadline.delay_s is not None
    return max(0.0, deadline.delay_s - (now - deadline.time).total_seconds())
