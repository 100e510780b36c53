"""One long-lived robust connection to RabbitMQ and a confirm-mode publisher on it.

Connecting never blocks start-up: a background task tries the broker's addresses in turn, with
backoff, until one answers. aio-pika's robust connection restores channels after a short outage,
but only on the URL it was given; so with several addresses, a node that is not back within
`failover_after_s` is left for the next, where the topology is declared and `on_connected` called
again; a node that hangs (frozen, its TCP connection open) is left as soon as two round trips
in a row go unanswered: the watch (`SILENT_AFTER_S`) probes whenever the broker has said nothing
for a second, and every step of connecting (connect, declare, open a channel, `on_connected`)
has `connect_timeout_s`. `ready` needs a usable channel and a confirm as the broker's last answer
to a publish; `check()` proves that round trip again when nothing has for
`readiness_probe_interval_s`, so an idle process notices a silent broker too. `publish` fails
with `BrokerUnavailable` at once without
a connection or on a refusal, within `publish_timeout_s` without a confirm; a channel the broker
keeps refusing is replaced. The topology is declared at start-up and again, from a short-lived
connection, whenever the connection drops or a publish finds the exchange or a queue missing;
after a failover, in the background, never in the connect path (a hung node holds it).
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aio_pika
import aiormq
import pamqp.header
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from prometheus_client import Gauge
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from hookhub import topology, tracing
from hookhub.addresses import CONNECT_ERRORS, Addresses, redact
from hookhub.events import EXCHANGE, Event
from hookhub.logs import log
from hookhub.settings import Settings

BROKER_CONNECTED = Gauge("hookhub_broker_connected", "1 while the RabbitMQ connection is usable")

READINESS_PROBE = "hookhub.readiness-probe"
PROBE_PROPERTIES = aiormq.spec.Basic.Properties()
# A healthy broker confirms the probe in milliseconds; waiting longer than Kubernetes' default
# probe timeout (1 s) would only make the kubelet give up first.
PROBE_TIMEOUT_S = 1.0
# The broker answered nothing (no confirm, no probe) for this long while connected: probe it, so
# that a hung node is noticed in seconds whether the process publishes or only consumes. Checked
# every WATCH_INTERVAL_S; a probe costs a frame and its confirm.
SILENT_AFTER_S = 1.0
WATCH_INTERVAL_S = 0.5
# After a quorum queue's leader election, RabbitMQ 3.10 was seen refusing every publish on the
# channel that lived through it while a fresh connection worked. A few refusals in a row is that
# (or a queue refusing for its own reasons, where a new channel costs nothing).
REFUSALS_BEFORE_REOPEN = 3
# A node whose confirms are late but that opens a channel of its own at once is alive, waiting on
# a queue leader's election (a cluster node hung): every other node waits on the same election,
# so failing over gains nothing and spends a connect. It is left anyway once no confirm has come
# for this long (a node on the wrong side of a partition).
WAITING_ON_CLUSTER_S = 10.0
REFUSED = "the broker refused the last publish"
ERRORS = (*CONNECT_ERRORS, RuntimeError)  # aiormq raises RuntimeError on a closed channel
# A message's properties and headers travel in one content-header frame. One larger than the
# connection's frame_max (RabbitMQ's default: 128 KiB) is not refused alone: the broker closes
# the whole connection (FRAME_ERROR), failing every publish in flight with it and, for a
# consumer, redelivering every message it held. So a publish is measured first, against a bound
# well under any frame_max in use, and refused here, alone.
MAX_PROPERTIES_BYTES = 32 * 1024
# Below this many characters of string properties and headers, a message is known to fit without
# encoding it (a UTF-8 character is at most 4 bytes, and every field's framing is under 1 KiB).
_SURELY_FITS_CHARS = (MAX_PROPERTIES_BYTES - 1024) // 4


class BrokerUnavailable(Exception):
    """The broker could not take or confirm the message; the caller should retry later."""


class MessageTooLarge(ValueError):
    """The message's properties and headers are larger than `MAX_PROPERTIES_BYTES`: it was not
    sent, and sending it again will not help. Refuse it (hub-api: 422) or park it (a consumer's
    outbox, retries, replays); the connection is untouched."""

    def __init__(self, size_bytes: int, largest: str) -> None:
        super().__init__(
            f"the message's properties and headers take {size_bytes} bytes, over the "
            f"{MAX_PROPERTIES_BYTES} allowed (largest: {largest}); it was not published"
        )
        self.size_bytes = size_bytes
        self.largest = largest


def check_size(properties: aiormq.spec.Basic.Properties) -> None:
    """Raises `MessageTooLarge` when the properties cannot be published without risking the
    connection; costs a sum of string lengths for any ordinary message."""
    chars = 0
    for name in ("content_type", "correlation_id", "message_id", "message_type", "expiration"):
        chars += len(getattr(properties, name) or "")
    for name, value in (properties.headers or {}).items():
        if not isinstance(value, str):
            chars = _SURELY_FITS_CHARS  # nested or binary: measured exactly below
            break
        chars += len(name) + len(value)
    if chars < _SURELY_FITS_CHARS:
        return
    size_bytes = len(pamqp.header.ContentHeader(0, 0, properties).marshal())
    if size_bytes > MAX_PROPERTIES_BYTES:
        raise MessageTooLarge(size_bytes, _largest(properties))


def _largest(properties: aiormq.spec.Basic.Properties) -> str:
    """The name of the largest header (or property), for the message: what to look at."""
    sizes = {f"header {n}": len(str(v)) for n, v in (properties.headers or {}).items()}
    for name in ("correlation_id", "message_id", "message_type", "content_type"):
        sizes[name] = len(getattr(properties, name) or "")
    return max(sizes, key=lambda name: sizes[name])


class _Returned(BrokerUnavailable):
    """The broker took the message, found no queue for it and gave it back."""


class Broker:
    """The process's connection to RabbitMQ, with a confirm-mode channel for publishing."""

    def __init__(
        self,
        settings: Settings,
        *,
        declare_topology: bool = True,
        on_connected: Callable[[AbstractRobustConnection], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.declare_topology = declare_topology
        self.on_connected = on_connected
        self.addresses = Addresses(settings.amqp_urls)
        self.connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        # The aiormq channel under `_channel`, kept in hand while it is open (`_underlay`).
        self._in_hand: tuple[AbstractChannel, aiormq.abc.AbstractChannel] | None = None
        self.connected = asyncio.Event()
        # Readiness: why the broker's last answer to a publish was no confirm (None: it was one),
        # and when that answer, or the silence that stood for it, came.
        self._doubt: str | None = None
        self._answered_at = 0.0
        self._refusals = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._leaving: set[asyncio.Task[None]] = set()  # connections failed over from, closing
        self._closing = False
        self._declared = False  # the topology was declared once, at the first connect
        self._confirmed_at = time.monotonic()  # the last confirm (or a new connection)

    @property
    def _usable(self) -> bool:
        connection, channel = self.connection, self._channel
        connected = connection is not None and connection.transport is not None
        return connected and channel is not None and not channel.is_closed

    @property
    def _redeclaring(self) -> bool:
        """The topology is being declared again (after a lost connection, a missing exchange):
        until it is done, a queue an event should reach may be missing, and a publish the broker
        confirms could reach only some of them."""
        task = self._tasks.get("redeclare")
        return task is not None and not task.done()

    @property
    def ready(self) -> bool:
        """Connected, with a usable channel, and the last publish was confirmed.

        A broker that goes silent keeps the TCP connection open until the heartbeat notices; a
        confirm that timed out is the earlier sign, and a refusal the plainer one. Either makes
        us not ready until a publish (or `check()`'s probe) is confirmed again.
        """
        ready = self._usable and self._doubt is None and not self._redeclaring
        BROKER_CONNECTED.set(1 if ready else 0)
        return ready

    async def check(self) -> bool:
        """`ready`, with the round trip proven within the last `readiness_probe_interval_s`.

        When no publish has had an answer for that long (the process is idle, or has been not
        ready since a failure), one probe goes out, shared by every caller meanwhile and answered
        within `PROBE_TIMEOUT_S`. It goes to the default exchange under a name no queue has: the
        broker drops it and still confirms it. Under traffic, checks cost nothing.
        """
        since_s = time.monotonic() - self._answered_at
        if self._usable and since_s >= self.settings.readiness_probe_interval_s:
            await asyncio.shield(self._soon("probe", self._probe))
        return self.ready

    async def _probe(self) -> None:
        with contextlib.suppress(BrokerUnavailable):
            await self._publish_confirmed(
                "",
                b"",
                PROBE_PROPERTIES,
                READINESS_PROBE,
                mandatory=False,
                timeout_s=PROBE_TIMEOUT_S,
            )

    def _answered(self, doubt: str | None) -> None:
        self._doubt, self._answered_at = doubt, time.monotonic()
        if doubt is None:
            self._refusals = 0
            self._confirmed_at = self._answered_at

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        self._soon("connect", self._connect_until_up)
        self._soon("watch", self._watch)

    async def _watch(self) -> None:
        """Probe a broker that has been silent for `SILENT_AFTER_S`: a probe unanswered fails
        over (`_fail_over`), where a hung node's open TCP connection would otherwise hold the
        process until its heartbeat runs out."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if self._usable and time.monotonic() - self._answered_at >= SILENT_AFTER_S:
                await asyncio.shield(self._soon("probe", self._probe))

    async def wait_ready(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self.connected.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def _soon(self, name: str, work: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
        """The background task `name`, started with `work()` unless it is running already: each
        kind of repair (connect, probe, reopen, fail over, re-declare) runs once at a time."""
        task = self._tasks.get(name)
        if task is None or task.done():
            task = self._tasks[name] = asyncio.create_task(work(), name=f"broker-{name}")
        return task

    async def _connect_until_up(self) -> None:
        async for attempt in AsyncRetrying(
            wait=wait_exponential(multiplier=0.2, max=5),
            # RuntimeError too: aio-pika's, when a connection closes while a channel opens on it.
            retry=retry_if_exception_type(ERRORS),
            before_sleep=lambda state: log.warning(
                "broker.unreachable",
                urls=self.addresses.redacted(),
                attempt=state.attempt_number,
                error=str(state.outcome.exception()) if state.outcome else None,
            ),
        ):
            with attempt:
                await self._set_up()
        log.info("broker.connected", url=redact(self.addresses.current))
        self.connected.set()

    async def _set_up(self) -> None:
        """Connect to the first address that answers, declare, open the publishing channel and
        hand the connection to `on_connected`; all or nothing, so a drop halfway through is
        retried from the start."""
        connection, url = await self.addresses.connect_first(
            aio_pika.connect_robust, self.settings.connect_timeout_s
        )
        try:
            # Each step bounded: a node that took the connection and then hung (or a cluster
            # waiting for a frozen node's queue leader) must not hold start-up or a failover.
            self.connection = connection
            if self.declare_topology and not self._declared:
                async with asyncio.timeout(self.settings.connect_timeout_s):
                    await self.declare()
            async with asyncio.timeout(self.settings.connect_timeout_s):
                self._channel = await self._open_publishing_channel(connection)
            if self.on_connected:
                async with asyncio.timeout(self.settings.connect_timeout_s):
                    await self.on_connected(connection)
        except BaseException as exc:
            self.connection = self._channel = None
            if isinstance(exc, TimeoutError):
                self.addresses.move_on(url)  # the next attempt starts with the next node
            # In the background: a polite close waits for a node that may be the hung one.
            self._leave(connection)
            raise
        self.addresses.current = url
        self._answered(None)  # opening the channel was a round trip
        if self.declare_topology and self._declared:
            # Connected again (a failover): declared in the background, publishes not waiting.
            # Declaring an exchange, a queue or a binding is a Mnesia transaction on every
            # cluster node, so it blocks while one node hangs (until net_ticktime declares it
            # down, a minute); connecting, publishing and consuming do not (quorum queues elect
            # a new leader among the others). In the connect path it held intake for as long as
            # the node hung.
            self._soon("refresh", lambda: self._redeclare(f"connected to {redact(url)}"))
        self._declared = True
        connection.reconnect_callbacks.add(lambda *_: self._reconnected(url))
        connection.close_callbacks.add(lambda *_: self._connection_lost(connection))

    @staticmethod
    async def _open_publishing_channel(connection: AbstractRobustConnection) -> AbstractChannel:
        # on_return_raises: a mandatory message no queue took must fail the publish, not count as
        # confirmed (a retry copy returned for a missing queue would be lost).
        return await connection.channel(publisher_confirms=True, on_return_raises=True)

    def _reconnected(self, url: str) -> None:
        log.info("broker.reconnected", url=redact(url))
        self._answered_at = 0.0  # a new transport: prove it at the next check, not an interval on

    def _connection_lost(self, connection: AbstractRobustConnection) -> None:
        if connection is not self.connection or self._closing:
            return  # one we left behind (a failover) or are closing
        # The broker may come back without its definitions (a new node, a lost volume).
        self._redeclare_soon("connection lost")
        self._fail_over_unless_back("connection lost")

    def _fail_over_unless_back(self, reason: str) -> None:
        if self.addresses.several and not self._closing:
            self._soon("failover", lambda: self._fail_over(reason))

    async def _fail_over(self, reason: str) -> None:
        """Give a lost node `failover_after_s` to come back, then one more probe; a node still
        connected but silent only that probe, with `_alive` beside it. Unconfirmed: a node that
        opened the channel waits on the cluster and is kept (`WAITING_ON_CLUSTER_S`) with a fresh
        publishing channel; otherwise connect to the next address as at start-up, the one left
        in quarantine if it hung (`Addresses.move_on`)."""
        left = self.connection
        if not self._usable:  # lost: the robust connection may well be back in a moment
            await asyncio.sleep(self.settings.failover_after_s)
        elif (probing := self._tasks.get("probe")) is not None and not probing.done():
            await asyncio.wait({probing})  # the probe that failed: a second one decides
        hung = False
        if self._usable and left is not None:
            # The second probe, and beside it a channel of its own: does the node answer at all?
            alive = asyncio.create_task(self._alive(left), name="broker-alive")
            await asyncio.shield(self._soon("probe", self._probe))
            if self.ready or left is not self.connection:
                alive.cancel()
                return
            if await alive:
                if time.monotonic() - self._confirmed_at < WAITING_ON_CLUSTER_S:
                    # Staying; a fresh publishing channel looks the queues' leaders up again
                    # (one that lived through an election kept waiting on the old leader).
                    log.info("broker.waiting", url=redact(self.addresses.current), reason=reason)
                    await self._reopen_channel(f"waiting on the cluster: {reason}")
                    return
            else:
                hung = True
        log.warning("broker.failover", url=redact(self.addresses.current), reason=reason, hung=hung)
        self.connected.clear()
        self.connection = self._channel = None
        if left is not None:
            # Closed, or it would reconnect to the node we are leaving and restore its channels
            # (a second subscription).
            self._leave(left)
        self.addresses.move_on(hung=hung)
        await self._connect_until_up()

    @staticmethod
    async def _alive(connection: AbstractRobustConnection) -> bool:
        """The node opens (and closes) a channel of its own within `PROBE_TIMEOUT_S`: a round
        trip to the connection's node alone, which no queue or election holds. A probe publish
        is not that signal: its confirm waits for every queue's leader it is routed to."""
        transport = connection.transport
        if transport is None:
            return False
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                channel = await transport.connection.channel()
                await channel.close()
        except ERRORS:
            return False
        return True

    def _leave(self, connection: AbstractRobustConnection) -> None:
        """Close a connection in the background: a polite close waits for the node, which may
        be hung."""

        async def close() -> None:
            with contextlib.suppress(*ERRORS, asyncio.CancelledError):
                async with asyncio.timeout(self.settings.connect_timeout_s):
                    await connection.close()

        closing = asyncio.create_task(close(), name="broker-leave")
        self._leaving.add(closing)
        closing.add_done_callback(self._leaving.discard)

    async def _reopen_channel(self, reason: str) -> None:
        connection, refusing = self.connection, self._channel
        if connection is None:
            return
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                channel = await self._open_publishing_channel(connection)
        except ERRORS as exc:  # the connection is going too: its own recovery takes over
            log.warning("broker.channel_not_reopened", reason=reason, error=type(exc).__name__)
            return
        if connection is not self.connection:
            await channel.close()
            return
        self._channel = channel
        log.warning("broker.channel_reopened", reason=reason)
        if refusing is not None:
            await self._retire(refusing)

    async def _retire(self, channel: AbstractChannel) -> None:
        """Close a replaced channel once the publishes still in flight on it are answered (for
        at most a publish's timeout): closed under them, they would fail though the broker may
        well confirm them."""
        with contextlib.suppress(*ERRORS):
            underlay = await channel.get_underlay_channel()
            confirms = getattr(underlay, "confirmations", {}).values()
            if in_flight := [c for c in confirms if asyncio.isfuture(c)]:
                await asyncio.wait(in_flight, timeout=self.settings.publish_timeout_s)
            await channel.close()

    async def declare(self) -> None:
        """Declare the topology on a channel of its own (a conflict closes the channel)."""
        assert self.connection is not None
        async with self.connection.channel() as channel:
            await self._declare_on(channel)

    async def _declare_on(self, channel: AbstractChannel) -> None:
        try:
            await topology.declare(
                channel,
                self.settings.retry_delays_s,
                self.settings.delivery_limit,
                topology.Archive.of(self.settings),
                deadlines_s=topology.deadline_durations(self.settings),
            )
        except topology.TopologyConflict as exc:
            # What is safe was done (the missing declared, the bindings added); a queue declared
            # differently is left as it is: recreating it is `hookhub topology apply`'s, which
            # moves its messages. The process keeps serving: the old queue still takes and
            # delivers messages, where refusing to start would turn every publish away.
            log.error("topology.conflict", error=str(exc), fix="hookhub topology apply")

    def _redeclare_soon(self, why: str) -> asyncio.Task[None] | None:
        """Declare the topology again in the background, once at a time, until it is done.

        From a connection of its own: after a reconnect, aio-pika restores this connection's
        channels (a consumer's subscription to its queue) and retries them until the queue
        exists, so the declaration has to come from elsewhere.
        """
        if not self.declare_topology or self._closing:
            return None
        return self._soon("redeclare", lambda: self._redeclare(why))

    async def _redeclare(self, why: str) -> None:
        log.warning("topology.redeclaring", reason=why)
        try:
            async for attempt in AsyncRetrying(
                # Publishes wait for it: tried again often, so that it is done soon after the
                # broker is back.
                wait=wait_exponential(multiplier=0.2, max=1),
                retry=retry_if_exception_type(CONNECT_ERRORS),
            ):
                with attempt:
                    connection, _ = await self.addresses.connect_first(
                        aio_pika.connect, self.settings.connect_timeout_s
                    )
                    async with asyncio.timeout(self.settings.connect_timeout_s):
                        async with connection, connection.channel() as channel:
                            await self._declare_on(channel)
        except Exception as exc:  # e.g. refused credentials: the main connection says so too
            log.error("topology.not_declared", error=f"{type(exc).__name__}: {exc}")

    async def publish(self, event: Event) -> None:
        """Publish persistently to hookhub.events and return once the broker has confirmed it.

        With tracing on, in a publish span whose context the message carries in `traceparent`.
        """
        properties = event.to_properties()
        if not tracing.on():
            await self._publish_confirmed(EXCHANGE, event.data, properties, event.routing_key)
            return
        assert properties.headers is not None
        with tracing.publishing(EXCHANGE, event.routing_key, event.id, properties.headers):
            await self._publish_confirmed(EXCHANGE, event.data, properties, event.routing_key)

    async def publish_to_queue(self, message: aio_pika.Message, queue: str) -> None:
        """Put a message straight on one queue (retry, dead-letter, replay), confirmed.

        A queue that does not exist (deleted by someone) is declared again with the rest of the
        topology and the message sent once more; `BrokerUnavailable` if it is still not taken.
        """
        try:
            await self._publish_confirmed("", message.body, message.properties, queue)
        except _Returned:
            redeclaring = self._redeclare_soon(f"publish to a missing queue {queue!r}")
            if redeclaring is None:
                raise
            try:
                await asyncio.wait_for(asyncio.shield(redeclaring), self.settings.publish_timeout_s)
            except TimeoutError:
                raise BrokerUnavailable(f"queue {queue!r} not declared again in time") from None
            await self._publish_confirmed("", message.body, message.properties, queue)

    async def _publish_confirmed(
        self,
        exchange: str,
        body: bytes,
        properties: aiormq.spec.Basic.Properties,
        routing_key: str,
        mandatory: bool = True,
        timeout_s: float | None = None,
    ) -> None:
        check_size(properties)  # before anything: too large is never the broker's to refuse
        channel = self._channel
        if not self._usable or channel is None:
            raise BrokerUnavailable("RabbitMQ is not connected")
        if self._redeclaring:
            raise BrokerUnavailable("the topology is being declared again")
        timeout_s = timeout_s or self.settings.publish_timeout_s
        deadline = time.monotonic() + timeout_s
        try:
            in_hand = self._in_hand
            if in_hand is not None and in_hand[0] is channel and not in_hand[1].is_closed:
                underlay = in_hand[1]
            else:
                underlay = await self._underlay(channel, timeout_s)
            # On aiormq's channel under aio-pika's, as aio-pika's Exchange.publish does, without
            # building an aio-pika Message first: a fifth of the publish's CPU. aiormq bounds the
            # publish and its confirm by the time left, in the timeout scope it opens anyway (a
            # scope of our own around it cost 2% of a publish). wait=False: a confirm comes only
            # after the frame was written, so also waiting for the write cost 5%, in a wake-up.
            await underlay.basic_publish(
                body,
                exchange=exchange,
                routing_key=routing_key,
                properties=properties,
                mandatory=mandatory,
                timeout=deadline - time.monotonic(),
                wait=False,
            )
        except TimeoutError as exc:
            self._answered(f"no confirm within {timeout_s:g}s")
            self._fail_over_unless_back(f"no confirm within {timeout_s:g}s")
            raise BrokerUnavailable("publish not confirmed in time") from exc
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            self._redeclare_soon(f"publish to a missing exchange: {exc}")
            raise BrokerUnavailable(f"publish not confirmed: {exc}") from exc
        except aiormq.exceptions.PublishError as exc:
            self._answered(None)  # returned, then confirmed: the round trip works
            raise _Returned(f"no queue took the message sent to {routing_key!r}") from exc
        except aiormq.exceptions.DeliveryError as exc:  # a nack
            self._refused()
            raise BrokerUnavailable("the broker refused the message") from exc
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            raise BrokerUnavailable(f"publish not confirmed: {type(exc).__name__}") from exc
        except asyncio.CancelledError as exc:
            # aiormq cancels the confirms it still awaits when their channel closes under them
            # (`make chaos` saw it as a partition healed): a publish not confirmed, unless it is
            # this task that is being cancelled.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise BrokerUnavailable("publish not confirmed: the channel closed") from exc
        self._answered(None)

    async def _underlay(
        self, channel: AbstractChannel, timeout_s: float
    ) -> aiormq.abc.AbstractChannel:
        """The aiormq channel under `channel`, taken in hand for the next publishes.

        Asked of the robust channel only when the one in hand is closed (aio-pika reopens the
        channel on a new one after a reconnection or a channel error) or `channel` is a new one
        (reopened by us, or after a failover): asking on every publish cost 5% of a publish. The
        robust channel waits for its reconnection, within `timeout_s`.
        """
        async with asyncio.timeout(timeout_s):
            underlay = await channel.get_underlay_channel()
        self._in_hand = (channel, underlay)
        return underlay

    def _refused(self) -> None:
        self._answered(REFUSED)
        self._refusals += 1
        if self._refusals % REFUSALS_BEFORE_REOPEN == 0:
            reason = f"{self._refusals} publishes refused in a row"
            self._soon("reopen", lambda: self._reopen_channel(reason))

    async def close(self) -> None:
        self._closing = True
        tasks = [*self._tasks.values(), *self._leaving]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.connection is not None:
            await self.connection.close()
        BROKER_CONNECTED.set(0)
