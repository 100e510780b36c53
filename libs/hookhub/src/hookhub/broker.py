"""One long-lived robust connection to RabbitMQ and a confirm-mode publisher on it.

Connecting never blocks start-up: a background task keeps trying with exponential backoff until
the broker answers, then aio-pika's robust connection restores channels after any later outage.
`ready` tells the truth throughout; `publish` fails fast with `BrokerUnavailable` while there is
no connection, and within `publish_timeout_s` when the broker does not confirm. The topology is
declared at start-up and again, from a short-lived connection, whenever the connection drops or a
publish finds the exchange missing.
"""

import asyncio
from collections.abc import Awaitable, Callable

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from prometheus_client import Gauge
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from hookhub import topology
from hookhub.events import EXCHANGE, Event
from hookhub.observability import log
from hookhub.settings import Settings

BROKER_CONNECTED = Gauge("hookhub_broker_connected", "1 while the RabbitMQ connection is usable")

CONNECT_ERRORS = (OSError, ConnectionError, aiormq.exceptions.AMQPError, asyncio.TimeoutError)


READINESS_PROBE = "hookhub.readiness-probe"


class BrokerUnavailable(Exception):
    """The broker could not take or confirm the message; the caller should retry later."""


def redact(url: str) -> str:
    """The AMQP URL without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


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
        self.connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._connecting: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self._confirms_stalled = False
        self._redeclaring: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def _usable(self) -> bool:
        connection, channel = self.connection, self._channel
        return (
            connection is not None
            and connection.transport is not None
            and channel is not None
            and not channel.is_closed
        )

    @property
    def ready(self) -> bool:
        """Connected, with a usable channel, and the last publish was confirmed in time.

        A broker that goes silent keeps the TCP connection open until the heartbeat notices;
        a confirm that timed out is the earlier sign, so it makes us not ready until the next
        publish is confirmed again.
        """
        ready = self._usable and not self._confirms_stalled
        BROKER_CONNECTED.set(1 if ready else 0)
        return ready

    async def check(self) -> bool:
        """`ready`; when confirms have stalled, one confirmed probe to see if the broker is back.

        The probe goes to the default exchange under a name no queue has: the broker drops it
        and still confirms it, so it proves the round trip without leaving anything behind.
        """
        if self._usable and self._confirms_stalled and self._channel is not None:
            try:
                await self._publish_confirmed(
                    "", b"", aiormq.spec.Basic.Properties(), READINESS_PROBE, mandatory=False
                )
            except BrokerUnavailable:
                pass
        return self.ready

    async def start(self) -> None:
        """Begin connecting in the background; returns at once."""
        self._connecting = asyncio.create_task(self._connect_until_up(), name="broker-connect")

    async def wait_ready(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self.connected.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _connect_until_up(self) -> None:
        async for attempt in AsyncRetrying(
            wait=wait_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception_type(CONNECT_ERRORS),
            before_sleep=lambda state: log.warning(
                "broker.unreachable",
                url=redact(self.settings.amqp_url),
                attempt=state.attempt_number,
                error=str(state.outcome.exception()) if state.outcome else None,
            ),
        ):
            with attempt:
                await self._set_up()
        log.info("broker.connected", url=redact(self.settings.amqp_url))
        self.connected.set()

    async def _set_up(self) -> None:
        """Connect, declare, open the publishing channel; all or nothing, so a drop halfway
        through is retried from the start."""
        connection = await aio_pika.connect_robust(
            self.settings.amqp_url, timeout=self.settings.connect_timeout_s
        )
        try:
            self.connection = connection
            if self.declare_topology:
                await self.declare()
            # on_return_raises: a mandatory message no queue took must fail the publish, not
            # count as confirmed (a retry copy returned for a missing queue would be lost).
            self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            if self.on_connected:
                await self.on_connected(connection)
        except BaseException:
            self.connection = self._channel = None
            await connection.close()
            raise
        connection.reconnect_callbacks.add(lambda *_: log.info("broker.reconnected"))
        # The broker may come back without its definitions (a new node, a lost volume).
        connection.close_callbacks.add(lambda *_: self._redeclare_soon("connection lost"))

    async def declare(self) -> None:
        """Declare the topology on a channel of its own (a conflict closes the channel)."""
        assert self.connection is not None
        async with self.connection.channel() as channel:
            await self._declare_on(channel)

    async def _declare_on(self, channel: AbstractChannel) -> None:
        try:
            await topology.declare(
                channel, self.settings.retry_delays_s, self.settings.delivery_limit
            )
        except topology.TopologyConflict as exc:  # logged, and the process keeps serving
            log.error("topology.conflict", error=str(exc))

    def _redeclare_soon(self, why: str) -> None:
        """Declare the topology again in the background, once at a time, until it is done.

        From a connection of its own: after a reconnect, aio-pika restores this connection's
        channels (a consumer's subscription to its queue) and retries them until the queue
        exists, so the declaration has to come from elsewhere.
        """
        if not self.declare_topology or self._closing:
            return
        if self._redeclaring is None or self._redeclaring.done():
            log.warning("topology.redeclaring", reason=why)
            self._redeclaring = asyncio.create_task(self._redeclare(), name="topology-redeclare")

    async def _redeclare(self) -> None:
        try:
            async for attempt in AsyncRetrying(
                wait=wait_exponential(multiplier=0.2, max=5),
                retry=retry_if_exception_type(CONNECT_ERRORS),
            ):
                with attempt:
                    connection = await aio_pika.connect(
                        self.settings.amqp_url, timeout=self.settings.connect_timeout_s
                    )
                    async with connection, connection.channel() as channel:
                        await self._declare_on(channel)
        except Exception as exc:  # e.g. refused credentials: the main connection says so too
            log.error("topology.not_declared", error=f"{type(exc).__name__}: {exc}")

    async def publish(self, event: Event) -> None:
        """Publish persistently to hookhub.events and return once the broker has confirmed it."""
        await self._publish_confirmed(
            EXCHANGE, event.data, event.to_properties(), event.routing_key
        )

    async def publish_to_queue(self, message: aio_pika.Message, queue: str) -> None:
        """Put a message straight on one queue (retry, dead-letter, replay), confirmed."""
        await self._publish_confirmed("", message.body, message.properties, queue)

    async def _publish_confirmed(
        self,
        exchange: str,
        body: bytes,
        properties: aiormq.spec.Basic.Properties,
        routing_key: str,
        mandatory: bool = True,
    ) -> None:
        channel = self._channel
        if not self._usable or channel is None:
            raise BrokerUnavailable("RabbitMQ is not connected")
        try:
            async with asyncio.timeout(self.settings.publish_timeout_s):
                # On aiormq's channel under aio-pika's, as aio-pika's Exchange.publish does,
                # without building an aio-pika Message first: a fifth of the publish's CPU.
                # (The robust channel's underlay waits for a reconnection, within the timeout.)
                underlay = await channel.get_underlay_channel()
                confirmation = await underlay.basic_publish(
                    body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=properties,
                    mandatory=mandatory,
                )
        except TimeoutError as exc:
            self._confirms_stalled = True
            raise BrokerUnavailable("publish not confirmed in time") from exc
        except aiormq.exceptions.ChannelNotFoundEntity as exc:
            self._redeclare_soon(f"publish to a missing exchange: {exc}")
            raise BrokerUnavailable(f"publish not confirmed: {exc}") from exc
        except aiormq.exceptions.PublishError as exc:
            raise BrokerUnavailable(f"no queue took the message sent to {routing_key!r}") from exc
        except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
            raise BrokerUnavailable(f"publish not confirmed: {type(exc).__name__}") from exc
        self._confirms_stalled = False
        if not isinstance(confirmation, aiormq.spec.Basic.Ack):
            raise BrokerUnavailable(f"broker refused the message: {confirmation!r}")

    async def close(self) -> None:
        self._closing = True
        if self._redeclaring and not self._redeclaring.done():
            self._redeclaring.cancel()
        if self._connecting and not self._connecting.done():
            self._connecting.cancel()
        if self.connection is not None:
            await self.connection.close()
        BROKER_CONNECTED.set(0)
