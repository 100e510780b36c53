"""Topology migrations: what differs between the broker and the code (`plan`), and carrying it
out without losing a message (`apply`).

Reading the broker (`observe`). AMQP can neither list a vhost's queues nor read a queue's
arguments, so the broker is read, in this order, through:
  1. the management HTTP API, when HOOKHUB_RABBITMQ_MANAGEMENT_URL is set: reachable from any pod
     with the broker's own credentials, and on in the RabbitMQ Cluster Operator's clusters and the
     `-management` images (the way in Kubernetes, where a Job has no `rabbitmqctl` and no cookie);
  2. `rabbitmqctl`, when it is installed here and the broker is on this machine (a developer's
     machine, CI), and answers for the vhost;
  3. AMQP alone: a passive declare then an active one with the new arguments says whether a queue
     differs (PRECONDITION_FAILED), not how; and a queue the code no longer names (retired) is not
     seen at all. The plan says so.

Applying. Each message is moved with a publisher confirm and acked from where it was only once
confirmed: at least once, so a crash half-way leaves duplicates (consumers drop a repeated event
id), never a loss; and `apply` run again finishes what was left (a `<queue>.migrating` queue is
emptied back into its queue). A queue whose arguments changed is recreated (`_recreate`): its
temporary queue is bound like it first, so what publishers route meanwhile waits there.
"""

import asyncio
import base64
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

from hookhub import specs, topology
from hookhub.events import EXCHANGE
from hookhub.failures import ROUTING_KEY_HEADER
from hookhub.settings import Settings
from hookhub.topology import QueueSpec

# A message's own TTL (a deadline's) rides in this header while it waits in a temporary queue,
# which would otherwise expire it, and drop it: a temporary queue dead-letters nowhere.
EXPIRATION_HEADER = "x-hookhub-migrating-expiration"
MOVE_BATCH = 100
# rabbitmqctl starts an Erlang VM (a second or two); the management API answers in milliseconds
# unless something (a NetworkPolicy) drops the packets.
RABBITMQCTL_TIMEOUT_S = 60
MANAGEMENT_API_TIMEOUT_S = 10
# How long a queue to be deleted may keep consumers before `apply` stops: a message in a
# consumer's hand when its queue is deleted could never be redelivered.
HELD_TIMEOUT_S = 60.0
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
Say = Callable[[str], None]


class MigrationStopped(RuntimeError):
    """A step could not be carried out; nothing was lost, and the message says where things are."""


# ---- what the broker has ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Existing:
    name: str
    # None when they cannot be read (AMQP alone), and are known to differ.
    arguments: dict[str, Any] | None
    messages: int  # ready to be delivered
    durable: bool = True


@dataclass(frozen=True, slots=True)
class Observed:
    queues: dict[str, Existing]
    # Each queue's binding keys on hookhub.events; None when they cannot be read.
    bindings: dict[str, frozenset[str]] | None
    # Whether every queue of the vhost is listed: only then are retired queues seen.
    complete: bool
    source: str  # how it was read, for the operator


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _arguments(value: Any) -> dict[str, Any]:
    # rabbitmqctl writes a table as [[key, type, value], ...]; the management API as an object.
    if isinstance(value, dict):
        return value
    return {entry[0]: entry[-1] for entry in value}


def _observed(
    queues: list[dict[str, Any]], bindings: list[dict[str, Any]], source: str
) -> Observed:
    keys: dict[str, set[str]] = {}
    for binding in bindings:
        if binding["source"] == EXCHANGE and binding["destination_type"] == "queue":
            keys.setdefault(binding["destination"], set()).add(binding["routing_key"])
    return Observed(
        queues={
            q["name"]: Existing(
                q["name"], _arguments(q["arguments"]), int(q.get("messages") or 0), q["durable"]
            )
            for q in queues
        },
        bindings={name: frozenset(k) for name, k in keys.items()},
        complete=True,
        source=source,
    )


def _rabbitmqctl(*args: str) -> Any:
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args, "--formatter", "json"],
        capture_output=True,
        text=True,
        timeout=RABBITMQCTL_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise MigrationStopped(f"rabbitmqctl {args[0]} failed: {result.stderr.strip()}")
    return json.loads(result.stdout or "[]")


def _with_rabbitmqctl(vhost: str) -> Observed:
    queues = _rabbitmqctl("list_queues", "-p", vhost, "name", "arguments", "messages", "durable")
    bindings = [
        {
            "source": b["source_name"],
            "destination": b["destination_name"],
            "destination_type": b["destination_kind"],
            "routing_key": b["routing_key"],
        }
        for b in _rabbitmqctl(
            "list_bindings",
            "-p",
            vhost,
            "source_name",
            "destination_name",
            "destination_kind",
            "routing_key",
        )
    ]
    return _observed(queues, bindings, "rabbitmqctl")


def _get_json(url: str, credentials: tuple[str, str]) -> Any:
    base, netloc = urlsplit(url), None
    if base.username:
        credentials = (unquote(base.username), unquote(base.password or ""))
        netloc = base.hostname + (f":{base.port}" if base.port else "")
    if netloc:
        url = base._replace(netloc=netloc).geturl()
    token = base64.b64encode(":".join(credentials).encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(request, timeout=MANAGEMENT_API_TIMEOUT_S) as response:
        return json.load(response)


def _with_management_api(management_url: str, amqp_url: str) -> Observed:
    amqp = urlsplit(amqp_url)
    credentials = (unquote(amqp.username or "guest"), unquote(amqp.password or "guest"))
    api = management_url.rstrip("/") + "/api"
    vhost = quote(vhost_of(amqp_url), safe="")
    try:
        queues = _get_json(
            f"{api}/queues/{vhost}?columns=name,arguments,messages,durable", credentials
        )
        bindings = _get_json(f"{api}/bindings/{vhost}", credentials)
    except (urllib.error.URLError, OSError) as exc:
        where = urlsplit(management_url)
        raise MigrationStopped(
            f"the RabbitMQ management API at {where.scheme}://{where.hostname}:{where.port} did "
            f"not answer ({exc}): check HOOKHUB_RABBITMQ_MANAGEMENT_URL"
        ) from None
    return _observed(queues, bindings, "the management API")


async def _with_amqp(connection: AbstractConnection, wanted: list[QueueSpec]) -> Observed:
    """What AMQP alone can tell: whether each queue the code names (and its temporary queue)
    exists, and whether it was declared as the code declares it."""
    queues: dict[str, Existing] = {}
    for spec in wanted:
        for name, arguments in (
            (spec.name, spec.arguments),
            (topology.migrating_queue(spec.name), None),
        ):
            async with connection.channel() as channel:
                try:
                    found = await channel.declare_queue(name, passive=True)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    continue
            messages = found.declaration_result.message_count
            if arguments is None:
                queues[name] = Existing(name, None, messages)
                continue
            try:
                async with connection.channel() as channel:
                    await channel.declare_queue(name, durable=True, arguments=arguments)
            except aiormq.exceptions.ChannelPreconditionFailed:
                arguments = None
            queues[name] = Existing(name, arguments, messages)
    return Observed(queues, None, complete=False, source="AMQP alone")


async def observe(
    connection: AbstractConnection, settings: Settings, wanted: list[QueueSpec]
) -> Observed:
    """The broker's queues and bindings in the vhost of HOOKHUB_AMQP_URL, read the best way
    available here (see the module's docstring)."""
    try:
        if settings.rabbitmq_management_url is not None:
            url = settings.rabbitmq_management_url.get_secret_value()
            listed = await asyncio.to_thread(_with_management_api, url, settings.amqp_url)
        elif shutil.which("rabbitmqctl") and urlsplit(settings.amqp_url).hostname in LOCAL_HOSTS:
            listed = await asyncio.to_thread(_with_rabbitmqctl, vhost_of(settings.amqp_url))
        else:
            return await _with_amqp(connection, wanted)
    except (MigrationStopped, OSError, subprocess.TimeoutExpired) as exc:
        # A management API out of reach (a NetworkPolicy), a broker in a container that leaves
        # rabbitmqctl no node: AMQP alone still migrates what differs, and the plan says why it
        # could see no more.
        observed = await _with_amqp(connection, wanted)
        return replace(observed, source=f"AMQP alone ({exc})")
    # Both count from statistics a few seconds old; a passive declare counts now.
    queues = dict(listed.queues)
    for name, existing in listed.queues.items():
        if name.startswith(topology.PREFIX) and (state := await _queue_state(connection, name)):
            queues[name] = replace(existing, messages=state[0])
    return replace(listed, queues=queues)


# ---- the plan: pure -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """A queue declared with other arguments than the code's: recreated, its messages kept."""

    queue: str
    old: dict[str, Any] | None  # None: not readable
    new: dict[str, Any]
    messages: int
    old_bindings: tuple[str, ...]
    refusal: str | None = None


@dataclass(frozen=True, slots=True)
class Retired:
    """A queue under the prefix that the code no longer declares."""

    queue: str
    messages: int
    bindings: tuple[str, ...]
    destination: str | None  # where its messages now belong; None: nowhere (then empty, or kept)
    refusal: str | None = None
    # A deadline queue of a duration no longer configured (or the previous release's), with
    # deadlines in it: left to expire into its work queue on time, removed once empty.
    draining: bool = False


@dataclass(frozen=True, slots=True)
class Leftover:
    """A temporary queue an interrupted migration left: emptied back into its queue."""

    temporary: str
    queue: str
    messages: int
    bindings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Plan:
    source: str
    complete: bool  # retired queues and bindings could be seen
    create: tuple[str, ...] = ()
    change: tuple[Change, ...] = ()
    retire: tuple[Retired, ...] = ()
    resume: tuple[Leftover, ...] = ()
    bind: tuple[tuple[str, str], ...] = ()
    unbind: tuple[tuple[str, str], ...] = ()

    @property
    def empty(self) -> bool:
        return not (
            self.create or self.change or self.retire or self.resume or self.bind or self.unbind
        )

    @property
    def refusals(self) -> list[str]:
        return [x.refusal for x in (*self.change, *self.retire) if x.refusal]

    @property
    def removable(self) -> list[Retired]:
        """The retired queues `apply` removes (emptied into their destination first)."""
        return [r for r in self.retire if r.refusal is None and not r.draining]

    @property
    def settled(self) -> bool:
        """Whether the broker has this version's topology: nothing left to do but retired
        queues kept for their messages (which no longer take any)."""
        return not (
            self.create or self.change or self.removable or self.resume or self.bind or self.unbind
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "empty": self.empty, "settled": self.settled}

    def lines(self) -> list[str]:
        """The plan as an operator reads it."""
        out = [f"broker read through {self.source}"]
        if not self.complete:
            out.append(
                "  (AMQP alone: retired queues and bindings cannot be seen, nor old arguments; "
                "set HOOKHUB_RABBITMQ_MANAGEMENT_URL to see them)"
            )
        out += [f"create  {name}" for name in self.create]
        for c in self.change:
            out.append(f"change  {c.queue} ({c.messages} message(s) kept)")
            for key in sorted({*(c.old or {}), *c.new}):
                old = "?" if c.old is None else (c.old or {}).get(key, "-")
                if c.old is None or old != c.new.get(key, "-"):
                    out.append(f"          {key}: {old} → {c.new.get(key, '-')}")
            if c.refusal:
                out.append(f"          not recreated: {c.refusal}")
        for r in self.retire:
            if r.refusal:
                out.append(f"keep    {r.queue}: {r.refusal}")
            elif r.draining:
                out.append(
                    f"drain   {r.queue} ({r.messages} deadline(s) left to expire into their "
                    f"work queue on time; removed by `apply` once empty)"
                )
            elif r.destination:
                out.append(f"retire  {r.queue} ({r.messages} message(s) → {r.destination})")
            else:
                out.append(f"retire  {r.queue} (empty)")
        out += [f"resume  {x.temporary} ({x.messages} message(s) → {x.queue})" for x in self.resume]
        out += [f"bind    {queue} ← {EXCHANGE} {key!r}" for queue, key in self.bind]
        out += [f"unbind  {queue} ← {EXCHANGE} {key!r}" for queue, key in self.unbind]
        if self.empty:
            out.append("nothing to do: the broker has the code's topology")
        return out


def _same(existing: Existing, spec: QueueSpec) -> bool:
    return existing.durable and existing.arguments == spec.arguments


def _would_drop(messages: int, arguments: dict[str, Any]) -> int:
    """How many of `messages` a queue with these arguments would drop on being refilled."""
    limit = arguments.get("x-max-length")
    if limit is None or arguments.get("x-overflow", "drop-head") != "drop-head":
        return 0
    return max(0, messages - limit)


def _change(existing: Existing, spec: QueueSpec, keys: frozenset[str]) -> Change:
    old = existing.arguments
    refusal = None
    if "stream" in ((old or {}).get("x-queue-type"), spec.arguments.get("x-queue-type")):
        # A stream is a log: copied into a new one, every event would take the copy's time and
        # offset.
        refusal = (
            f"{spec.name} is a stream and is not recreated: it keeps its old retention. A "
            f"policy can change a stream's retention (rabbitmqctl set_policy --apply-to queues); "
            f"deleting it loses the events it keeps"
        )
    elif dropped := _would_drop(existing.messages, spec.arguments):
        refusal = (
            f"{spec.name} holds {existing.messages} message(s), {dropped} more than its new "
            f"x-max-length keeps (the oldest would be dropped): move some out first"
        )
    return Change(spec.name, old, spec.arguments, existing.messages, tuple(sorted(keys)), refusal)


def _retired(
    existing: Existing,
    keys: frozenset[str],
    consumers: tuple[str, ...],
    consumer_specs: tuple[specs.ConsumerSpec, ...] = (),
) -> Retired:
    name, messages = existing.name, existing.messages
    owner = topology.owner_of(name)
    deadlines = any(topology.deadline_type_of(name, s) for s in consumer_specs if s.name == owner)
    if owner in consumers and deadlines:
        # A deadline queue: emptied into the work queue, every deadline in it would fire now.
        # It is left to expire there by itself (its TTLs run on), and removed once empty.
        return Retired(name, messages, tuple(sorted(keys)), None, draining=messages > 0)
    if owner in consumers and name != topology.work_queue(owner):
        # A retry queue for a delay no longer configured, a deadline no longer set, a temporary
        # queue of one of those: its messages are its consumer's work.
        return Retired(name, messages, tuple(sorted(keys)), topology.work_queue(owner))
    refusal = None
    if messages:
        refusal = (
            f"{name} holds {messages} message(s) and no installed consumer takes them: run "
            f"the consumer that did until it is empty, or delete it by hand if they are not "
            f"wanted; it stays as it is"
        )
    return Retired(name, messages, tuple(sorted(keys)), None, refusal)


def plan(
    wanted: list[QueueSpec],
    observed: Observed,
    consumers: tuple[str, ...],
    consumer_specs: tuple[specs.ConsumerSpec, ...] = (),
) -> Plan:
    """What `apply` would do to bring the observed broker to the wanted queues (`consumer_specs`
    tells their deadline queues, which drain in place)."""
    by_name = {spec.name: spec for spec in wanted}
    bindings = observed.bindings or {}
    create, change, bind, unbind = [], [], [], []
    for spec in wanted:
        existing = observed.queues.get(spec.name)
        keys = bindings.get(spec.name, frozenset())
        if existing is None:
            create.append(spec.name)
        elif not _same(existing, spec):
            change.append(_change(existing, spec, keys))
        elif observed.bindings is not None:
            bind += [(spec.name, key) for key in spec.bindings if key not in keys]
            unbind += [(spec.name, key) for key in sorted(keys - set(spec.bindings))]
    retire, resume = [], []
    for name, existing in sorted(observed.queues.items()):
        if name in by_name or not name.startswith(topology.PREFIX):
            continue
        if topology.is_endpoint_queue(name):  # the endpoint registry's, made and removed there
            continue
        queue = name.removesuffix(topology.MIGRATING_SUFFIX)
        if queue != name and queue in by_name:
            keys = bindings.get(name, frozenset())
            resume.append(Leftover(name, queue, existing.messages, tuple(sorted(keys))))
        else:
            keys = bindings.get(name, frozenset())
            retire.append(_retired(existing, keys, consumers, consumer_specs))
    return Plan(
        observed.source,
        observed.complete,
        tuple(create),
        tuple(change),
        tuple(retire),
        tuple(resume),
        tuple(bind),
        tuple(unbind),
    )


def wanted_queues(
    settings: Settings, consumers: tuple[specs.ConsumerSpec, ...] | None
) -> list[QueueSpec]:
    return topology.all_queues(
        settings.retry_delays_s,
        settings.delivery_limit,
        topology.Archive.of(settings),
        consumers,
        topology.deadline_durations(settings, consumers),
    )


async def plan_for(
    connection: AbstractConnection,
    settings: Settings,
    consumers: tuple[specs.ConsumerSpec, ...] | None = None,
) -> Plan:
    """The plan for the broker of `connection` and the code (the installed consumers unless
    `consumers` is given)."""
    wanted = wanted_queues(settings, consumers)
    observed = await observe(connection, settings, wanted)
    every = specs.installed() if consumers is None else consumers
    return plan(wanted, observed, specs.names(consumers), tuple(every))


# ---- moving messages ----------------------------------------------------------------------


def _copy(
    message: AbstractIncomingMessage, headers: dict[str, Any], expiration: Any
) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
        priority=message.priority,
        reply_to=message.reply_to,
        expiration=expiration,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _headers(message: AbstractIncomingMessage) -> dict[str, Any]:
    headers = dict(message.headers or {})
    # Moved through the default exchange, keyed by the queue's name: the routing key of an event
    # routed by the exchange goes in the header it is read from (as a retry copy's does).
    routed = message.exchange in (EXCHANGE, topology.UNROUTED_EXCHANGE)
    if routed and message.routing_key and ROUTING_KEY_HEADER not in headers:
        headers[ROUTING_KEY_HEADER] = message.routing_key
    return headers


def to_holding(message: AbstractIncomingMessage) -> aio_pika.Message:
    """A copy for a temporary queue: its TTL kept aside, not running."""
    headers = _headers(message)
    if message.expiration is not None:
        headers[EXPIRATION_HEADER] = str(message.expiration)
    return _copy(message, headers, None)


def from_holding(message: AbstractIncomingMessage) -> aio_pika.Message:
    """A copy back from a temporary queue, with its TTL again (a deadline waits its delay
    again from now: the broker does not say how much of it had passed)."""
    headers = _headers(message)
    kept = headers.pop(EXPIRATION_HEADER, None)
    expiration = (
        message.expiration
        if kept is None
        else float(kept.decode() if isinstance(kept, bytes) else kept)
    )
    return _copy(message, headers, expiration)


def to_work(message: AbstractIncomingMessage) -> aio_pika.Message:
    """A copy for a consumer's work queue: due now (a retry or a deadline whose queue is
    retired is handled at once rather than never)."""
    headers = _headers(message)
    headers.pop(EXPIRATION_HEADER, None)
    return _copy(message, headers, None)


async def move(
    connection: AbstractConnection,
    source: str,
    target: str,
    timeout_s: float,
    copy: Callable[[AbstractIncomingMessage], aio_pika.Message],
) -> int:
    """Move every ready message of `source` to the queue `target`; how many were moved.

    Each batch is published with confirms and acked from `source` only once every copy is
    confirmed; a failure closes the channel, which gives the unacked back to `source`.
    """
    moved = 0
    async with connection.channel(publisher_confirms=True, on_return_raises=True) as channel:
        queue = await channel.declare_queue(source, passive=True)
        while True:
            batch: list[AbstractIncomingMessage] = []
            while len(batch) < MOVE_BATCH:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                batch.append(message)
            if not batch:
                return moved
            await asyncio.gather(
                *(
                    channel.default_exchange.publish(
                        copy(m), target, mandatory=True, timeout=timeout_s
                    )
                    for m in batch
                )
            )
            await batch[-1].ack(multiple=True)
            moved += len(batch)


# ---- applying -----------------------------------------------------------------------------


async def _queue_state(connection: AbstractConnection, name: str) -> tuple[int, int] | None:
    """(ready messages, consumers) of a queue; None when it does not exist."""
    async with connection.channel() as channel:
        try:
            queue = await channel.declare_queue(name, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return None
    result = queue.declaration_result
    return result.message_count, result.consumer_count


async def _bind(
    connection: AbstractConnection, target: str, like: str, keys: set[str], *, on: bool
) -> None:
    """Bind `target` (or unbind it) where publishers send the messages of the queue `like`:
    the unrouted exchange for the unrouted queue, else hookhub.events with `keys`."""
    async with connection.channel() as channel:
        declared = await channel.declare_queue(target, passive=True)
        if like == topology.UNROUTED_QUEUE:
            sources = [(await channel.get_exchange(topology.UNROUTED_EXCHANGE), "")]
        else:
            events = await channel.get_exchange(EXCHANGE)
            sources = [(events, key) for key in sorted(keys)]
        for exchange, key in sources:
            if on:
                await declared.bind(exchange, key)
            else:
                # Unbinding what is not bound is a no-op for the broker.
                await declared.unbind(exchange, key)


async def _delete(connection: AbstractConnection, queue: str) -> None:
    async with connection.channel() as channel:
        # Quorum queues refuse if-unused and if-empty: emptiness is checked by the caller.
        await channel.queue_delete(queue, if_unused=False, if_empty=False)


async def _empty_then_delete(
    connection: AbstractConnection,
    settings: Settings,
    queue: str,
    target: str,
    copy: Callable[[AbstractIncomingMessage], aio_pika.Message],
) -> int:
    """Move what is in `queue` to `target` until nothing is ready and its consumers hold none
    (a message in a consumer's hand would go with the queue: it could not be redelivered),
    then delete it; how many were moved."""
    moved = 0
    deadline = asyncio.get_running_loop().time() + HELD_TIMEOUT_S
    while True:
        moved += await move(connection, queue, target, settings.publish_timeout_s, copy)
        state = await _queue_state(connection, queue)
        if state is None:
            return moved
        ready, consumers = state
        # How many messages a consumer holds is only in the broker's statistics, which lag by
        # seconds: a queue is deleted only once nothing consumes it.
        if ready == 0 and consumers == 0:
            await _delete(connection, queue)
            return moved
        if asyncio.get_running_loop().time() > deadline:
            raise MigrationStopped(
                f"{queue} still has {consumers} consumer(s) after {HELD_TIMEOUT_S:g}s: a message "
                f"in a consumer's hands would be lost with the queue, so it was not deleted; "
                f"what it had ready is in {target}. Stop its consumers (scale them to 0) and "
                f"run `hookhub topology apply` again"
            )
        await asyncio.sleep(0.2)


async def _recreate(
    connection: AbstractConnection, settings: Settings, change: Change, spec: QueueSpec, say: Say
) -> None:
    """Declare a queue again with new arguments, its messages kept.

    The temporary queue is bound like the old one before the old one is unbound, and the new
    one before the temporary one is unbound, so an event published meanwhile lands in one of
    them (in both, for a moment: a duplicate, never a loss). What the broker sends straight to
    the queue while it is gone (a retry queue's expiry, at least once) waits in the sender.
    """
    queue, temporary = spec.name, topology.migrating_queue(spec.name)
    timeout_s = settings.publish_timeout_s
    keys = {*change.old_bindings, *spec.bindings}
    async with connection.channel() as channel:
        await channel.declare_queue(temporary, durable=True, arguments={"x-queue-type": "quorum"})
    await _bind(connection, temporary, queue, keys, on=True)
    await _bind(connection, queue, queue, keys, on=False)
    out = await _empty_then_delete(connection, settings, queue, temporary, to_holding)
    try:
        async with connection.channel() as channel:
            await channel.declare_queue(queue, durable=True, arguments=spec.arguments)
    except aiormq.exceptions.ChannelPreconditionFailed:
        raise MigrationStopped(
            f"{queue} was declared again meanwhile with other arguments (by a process of the "
            f"old version?): its messages are safe in {temporary}. Stop that process and run "
            f"`hookhub topology apply` again"
        ) from None
    await _bind(connection, queue, queue, set(spec.bindings), on=True)
    await _bind(connection, temporary, queue, keys, on=False)
    moved_in = await _refill(connection, temporary, spec, timeout_s)
    say(
        f"{queue}: recreated with the new arguments; {out} moved out to {temporary}, "
        f"{moved_in - out} routed there meanwhile, {moved_in} moved back in, 0 left"
    )


async def _refill(
    connection: AbstractConnection, temporary: str, spec: QueueSpec, timeout_s: float
) -> int:
    """Empty a temporary queue into its queue and delete it, checking the count."""
    queue = spec.name
    before = await _queue_state(connection, temporary)
    if before is None:
        return 0
    there = await _queue_state(connection, queue)
    if dropped := _would_drop(before[0] + (there[0] if there else 0), spec.arguments):
        raise MigrationStopped(
            f"{temporary} holds {before[0]} message(s), {dropped} more than {queue} keeps: "
            f"they stay in {temporary}; move some out, then run `hookhub topology apply` again"
        )
    moved = await move(connection, temporary, queue, timeout_s, from_holding)
    after = await _queue_state(connection, temporary)
    if after is None or after[0] != 0 or moved < before[0]:
        left = "?" if after is None else after[0]
        raise MigrationStopped(
            f"{temporary} held {before[0]} message(s) and {moved} were moved to {queue}, "
            f"{left} are left: the count does not add up, so {temporary} stays as it is. Run "
            f"`hookhub topology apply` again, or look at it"
        )
    await _delete(connection, temporary)
    return moved


async def _retire(
    connection: AbstractConnection, settings: Settings, retired: Retired, say: Say
) -> None:
    await _bind(connection, retired.queue, retired.queue, set(retired.bindings), on=False)
    if retired.destination is None:
        state = await _queue_state(connection, retired.queue)
        if state is not None and (state[0] or state[1]):
            raise MigrationStopped(
                f"{retired.queue} was empty but now holds {state[0]} message(s) or has "
                f"consumers: it stays; run `hookhub topology apply` again"
            )
        await _delete(connection, retired.queue)
        say(f"{retired.queue}: empty; removed")
        return
    moved = await _empty_then_delete(
        connection, settings, retired.queue, retired.destination, to_work
    )
    say(f"{retired.queue}: {moved} moved to {retired.destination}; removed")


async def apply(
    connection: AbstractConnection,
    settings: Settings,
    the_plan: Plan,
    say: Say,
    consumers: tuple[specs.ConsumerSpec, ...] | None = None,
) -> list[str]:
    """Carry `the_plan` out; what was refused (left as it is), to tell the operator.

    MigrationStopped when a step could not be done: nothing lost, the message says where the
    messages are, and running `apply` again continues.
    """
    timeout_s = settings.publish_timeout_s
    async with connection.channel() as channel:
        try:
            # Creates what is missing and binds what exists; the queues that differ are kept.
            await topology.declare(
                channel,
                settings.retry_delays_s,
                settings.delivery_limit,
                topology.Archive.of(settings),
                consumers,
                topology.deadline_durations(settings, consumers),
            )
        except topology.ExchangeConflict:
            raise
        except topology.TopologyConflict:
            pass  # the queues that differ: recreated below
    for name in the_plan.create:
        say(f"{name}: created")
    for queue, key in the_plan.bind:
        say(f"{queue}: bound to {key!r}")
    by_name = {spec.name: spec for spec in wanted_queues(settings, consumers)}
    for change in the_plan.change:
        if change.refusal is None:
            await _recreate(connection, settings, change, by_name[change.queue], say)
    changed = {change.queue for change in the_plan.change}
    for leftover in the_plan.resume:
        if leftover.queue in changed:
            continue  # emptied by its queue's migration
        keys = {*leftover.bindings, *by_name[leftover.queue].bindings}
        await _bind(connection, leftover.temporary, leftover.queue, keys, on=False)
        moved = await _refill(connection, leftover.temporary, by_name[leftover.queue], timeout_s)
        say(
            f"{leftover.temporary}: {moved} moved back to {leftover.queue} "
            f"(left by an earlier run); removed"
        )
    for retired in the_plan.removable:
        await _retire(connection, settings, retired, say)
    for queue, key in the_plan.unbind:
        await _bind(connection, queue, queue, {key}, on=False)
        say(f"{queue}: unbound from {key!r}")
    return the_plan.refusals
