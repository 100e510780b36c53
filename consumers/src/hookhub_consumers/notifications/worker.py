"""The delivery worker: every registry endpoint's own queue, each on a channel of its own.

    hookhub.events ──(an endpoint's types)──▶ hookhub.endpoint.<name>  (quorum, single active
                                               │                        consumer, prefetch =
                                               │ failure                its max_in_flight)
                                               ├──▶ hookhub.endpoint.<name>.retry.<delay>
                                               └──▶ hookhub.endpoint.<name>.dlq

A slow or failing endpoint fills only its own prefetch slots: the others' messages are on other
queues, delivered on other channels. Its queue is its backlog; while it is disabled or paused by
the circuit breaker, its events wait there durably. The registry's change counter is polled every
`POLL_S`: an endpoint added, changed or removed is picked up without a restart.

The shorthand endpoint (HOOKHUB_NOTIFY_URL) is not delivered here but by the notifications
consumer's step (`steps.deliver`), on its queue `hookhub.notifications`, through the same `post`.
"""

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

import httpx
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from hookhub import topology
from hookhub.broker import Broker
from hookhub.events import Event
from hookhub.logs import log
from hookhub.settings import Settings
from hookhub_endpoints import config, queues
from hookhub_endpoints import registry as endpoints
from hookhub_endpoints.model import SHORTHAND, Endpoint, EndpointError
from hookhub_endpoints.registry import Registry, open_registry
from hookhub_endpoints.resend import RESEND_HEADER

from hookhub_consumers import acks, retries
from hookhub_consumers.notifications.records import Deliveries, deliveries
from hookhub_consumers.notifications.spec import SPEC
from hookhub_consumers.notifications.steps import Target, post
from hookhub_consumers.store import open_store

POLL_S = 2.0  # how often the registry's change counter is read
SOURCE = f"/consumers/{SPEC.name}"
BREAKER_ACTOR = "circuit-breaker"


@dataclass(frozen=True, slots=True)
class Breaker:
    """When an endpoint is paused: `failures` failed attempts in a row spanning at least
    `over_s` (so a burst of errors in one second does not pause it); then one delivery is
    tried every `probe_every_s` until one succeeds."""

    failures: int = 20
    over_s: float = 60.0
    probe_every_s: float = 30.0

    @classmethod
    def of(cls, settings: Settings) -> "Breaker":
        return cls(
            settings.endpoint_breaker_failures,
            settings.endpoint_breaker_over_s,
            settings.endpoint_probe_every_s,
        )


@dataclass(slots=True)
class Circuit:
    """An endpoint's run of failures (pure: the worker feeds it outcomes)."""

    breaker: Breaker
    in_a_row: int = 0
    first_at: float | None = None

    def failed(self, now: float) -> bool:
        """Count a failure; whether the endpoint should now be paused."""
        self.in_a_row += 1
        self.first_at = now if self.first_at is None else self.first_at
        return self.in_a_row >= self.breaker.failures and now - self.first_at >= self.breaker.over_s

    def succeeded(self) -> None:
        self.in_a_row, self.first_at = 0, None


@dataclass(slots=True)
class Pace:
    """At most `rate_per_s` starts a second (None: no limit), spaced evenly."""

    rate_per_s: float | None
    next_at: float = 0.0

    async def wait(self) -> None:
        if self.rate_per_s is None:
            return
        now = time.monotonic()
        start = max(now, self.next_at)
        self.next_at = start + 1 / self.rate_per_s
        if start > now:
            await asyncio.sleep(start - now)


def _event(type: str, endpoint: Endpoint, **data: object) -> Event:
    body = {"endpoint": endpoint.name, "url": endpoint.shown()["url"], **data}
    return Event(
        id=str(uuid.uuid4()),
        source=SOURCE,
        type=type,
        data=json.dumps(body, separators=(",", ":")).encode(),
        subject=endpoint.name,
    )


@dataclass(eq=False)
class Line:
    """One endpoint's deliveries in this process: its channel, prefetch, pace and circuit."""

    worker: "Worker"
    endpoint: Endpoint
    circuit: Circuit
    pace: Pace
    channel: AbstractChannel | None = None
    queue: AbstractQueue | None = None
    tag: str | None = None
    pausing: bool = False
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    in_hand: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def owner(self) -> str:
        return topology.endpoint_owner(self.endpoint.name)

    async def open(self, connection: AbstractRobustConnection) -> None:
        """Its channel and (unless disabled) its subscription."""
        self.channel = await connection.channel()
        self.queue = await self.channel.declare_queue(
            topology.endpoint_queue(self.endpoint.name), passive=True
        )
        if self.endpoint.enabled:
            await self.subscribe()

    async def subscribe(self) -> None:
        """Take the queue's messages, up to max in flight at once; paused, one at a time, each
        held until the next probe is due (a queue with a single active consumer refuses
        basic.get, so a probe is a delivery like any other, only spaced out)."""
        assert self.channel is not None and self.queue is not None
        if self.tag is not None:
            await self.queue.cancel(self.tag)
        paused = self.endpoint.state == "paused"
        # basic.qos applies to the consumers started after it.
        await self.channel.set_qos(prefetch_count=1 if paused else self.endpoint.max_in_flight)
        self.tag = await self.queue.consume(self._on_message)
        log.info("endpoint.started", endpoint=self.endpoint.name, state=self.endpoint.state)

    async def close(self) -> None:
        self.closing.set()
        if self.queue is not None and self.tag is not None:
            try:
                await self.queue.cancel(self.tag)
            except Exception:  # the connection may be gone: nothing is in hand then
                pass
            self.tag = None
        if self.in_hand:  # let what was POSTed be settled before the channel goes
            await asyncio.wait(self.in_hand, timeout=self.endpoint.timeout_s + 5)
        if self.channel is not None and not self.channel.is_closed:
            await self.channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        # In a task of its own, shielded: a POST once started finishes and is recorded.
        task = asyncio.create_task(self._take(message))
        self.in_hand.add(task)
        task.add_done_callback(self.in_hand.discard)
        await asyncio.shield(task)

    async def _take(self, message: AbstractIncomingMessage) -> None:
        if self.endpoint.state != "paused":
            await self.deliver(message)
            return
        # A probe: the one message in hand waits for its turn, then is delivered; if it gets
        # through, the endpoint is resumed.
        try:
            await asyncio.wait_for(self.closing.wait(), self.worker.breaker.probe_every_s)
        except TimeoutError:
            pass
        if self.closing.is_set():
            await acks.settle(message.nack(requeue=True))
            return
        if await self.deliver(message) and self.endpoint.state == "paused":
            await self.worker.recovered(self)

    async def deliver(self, message: AbstractIncomingMessage) -> bool:
        """Deliver one message; it ends acked, in a retry queue or in the parking lot.
        Whether the endpoint took it."""
        endpoint = self.endpoint
        try:
            event = Event.from_message(message)
        except Exception as error:
            await self._failed(message, retries.Permanent(f"not a Hookhub event: {error}"))
            return False
        secrets = tuple(s.value for s in endpoint.signing_secrets())
        target = Target(endpoint.name, endpoint.url, secrets, endpoint.timeout_s)
        again = bool((message.headers or {}).get(RESEND_HEADER))
        await self.pace.wait()
        try:
            await post(event, target, self.worker.http, self.worker.deliveries, again=again)
        except Exception as error:
            log.warning(
                "endpoint.delivery_failed",
                endpoint=endpoint.name,
                event_id=event.id,
                correlation_id=event.correlation_id,
                error=f"{type(error).__name__}: {error}",
            )
            await self._failed(message, error)
            return False
        self.circuit.succeeded()
        log.info(
            "endpoint.delivered",
            endpoint=endpoint.name,
            event_id=event.id,
            correlation_id=event.correlation_id,
            type=event.type,
        )
        await acks.settle(message.ack())
        return True

    async def _failed(self, message: AbstractIncomingMessage, error: Exception) -> None:
        jitter = self.worker.settings.retry_jitter_ratio
        policy = retries.Policy(topology.ENDPOINT_RETRY_DELAYS_S, jitter)
        await retries.retry_or_park(message, error, self.owner, policy, self.worker.broker)
        opens = self.circuit.failed(time.monotonic())
        if opens and self.endpoint.state == "active" and not self.pausing:
            self.pausing = True  # set before any await: failures in hand together pause once
            try:
                await self.worker.pause(self, f"{self.circuit.in_a_row} failures in a row: {error}")
            finally:
                self.pausing = False


class Worker:
    """Delivers every enabled registry endpoint's queue, in this process, until stopped."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        deliveries: Deliveries,
        http: httpx.AsyncClient,
        breaker: Breaker | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.deliveries = deliveries
        self.http = http
        self.breaker = breaker or Breaker.of(settings)
        self.broker = Broker(settings, on_connected=self._on_connected)
        self.lines: dict[str, Line] = {}
        self._version = -1
        self._reloading: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one reload at a time, and none during a reconnect

    async def _on_connected(self, connection: AbstractRobustConnection) -> None:
        # A new connection (start-up, a failover): every line opens again on it, at the next
        # poll. The old lines' channels went with their connection; what they held is the
        # broker's again.
        for line in self.lines.values():
            line.closing.set()
        self.lines.clear()
        self._version = -1
        self._reloading = asyncio.create_task(self.reload(), name="endpoints-reload")

    async def reload(self) -> None:
        """Bring the lines to the registry's endpoints, if it changed since the last reload."""
        async with self._lock:
            version = await self.registry.version()
            connection = self.broker.connection
            if version == self._version or connection is None:
                return
            wanted = {e.name: e for e in await self.registry.endpoints() if e.name != SHORTHAND}
            for name in set(self.lines) - set(wanted):
                await self.lines.pop(name).close()
                log.info("endpoint.stopped", endpoint=name, reason="removed")
            for name, endpoint in wanted.items():
                line = self.lines.get(name)
                if line is not None and line.endpoint == endpoint:
                    continue
                async with connection.channel() as channel:  # idempotent; its own channel
                    previous = line.endpoint.types if line else ()
                    await queues.declare(channel, endpoint, self.settings, previous)
                if line is not None and _same_line(line.endpoint, endpoint):
                    line.endpoint = endpoint  # URL, secrets, timeout: the next delivery's
                    line.pace.rate_per_s = endpoint.rate_per_s
                    continue
                if line is not None:
                    await self.lines.pop(name).close()
                line = Line(self, endpoint, Circuit(self.breaker), Pace(endpoint.rate_per_s))
                self.lines[name] = line
                await line.open(connection)
            self._version = version

    async def pause(self, line: Line, reason: str) -> None:
        """The circuit breaker opens: stop taking the endpoint's messages, say so, probe."""
        name = line.endpoint.name
        line.endpoint = await endpoints.pause(self.registry, name, reason[:300], BREAKER_ACTOR)
        await line.subscribe()  # one at a time from now on, each a probe
        log.error("endpoint.paused", endpoint=name, reason=reason)
        await self.broker.publish(_event("endpoint.disabled", line.endpoint, reason=reason))

    async def recovered(self, line: Line) -> None:
        """A probe got through: deliver again, and say so."""
        name = line.endpoint.name
        line.endpoint = await endpoints.resume(self.registry, name, BREAKER_ACTOR)
        line.circuit.succeeded()
        log.info("endpoint.recovered", endpoint=name)
        await line.subscribe()  # max in flight again
        await self.broker.publish(_event("endpoint.recovered", line.endpoint))

    async def run(self, stop: asyncio.Event) -> None:
        await self.broker.start()
        while not stop.is_set():
            try:
                await self.reload()
            except Exception:  # a store or broker hiccup: said, and tried again next poll
                log.exception("endpoints.reload_failed")
            try:
                await asyncio.wait_for(stop.wait(), POLL_S)
            except TimeoutError:
                pass
        async with self._lock:
            await asyncio.gather(*(line.close() for line in self.lines.values()))
        await self.broker.close()


async def _apply_file(registry: Registry, path: str) -> None:
    """The endpoints file, into the registry; a bad file stops the start with its reason."""
    wanted = config.read(path)
    try:
        changes = await config.apply(registry, wanted, path)
    except EndpointError:  # another process applied it at the same moment: once more
        changes = await config.apply(registry, wanted, path)
    log.info("endpoints.file_applied", file=path, changes=changes)


def _same_line(old: Endpoint, new: Endpoint) -> bool:
    """Whether the line can go on as it is: same prefetch, same state."""
    return old.max_in_flight == new.max_in_flight and old.state == new.state


async def run_endpoints(
    settings: Settings, stop: asyncio.Event, breaker: Breaker | None = None
) -> None:
    """Deliver every registry endpoint from this process until `stop` is set (what `hookhub
    consume notifications` runs beside the shorthand endpoint's consumer)."""
    registry = open_registry(settings)
    store = open_store(settings.store_url, [SPEC])
    await registry.open()
    try:
        # Now, not at the first delivery: opening the store's file takes its write lock (the
        # schema), which may wait behind another consumer's write; recording attempts never does.
        await store.open()
        if settings.endpoints_file:
            await _apply_file(registry, settings.endpoints_file)
        async with httpx.AsyncClient() as http:
            await Worker(settings, registry, deliveries(store), http, breaker).run(stop)
    finally:
        await registry.close()
        await store.close()
