"""The broker topology, declared in one place and idempotently.

    publishers ──▶ hookhub.events (topic) ──▶ hookhub.<consumer>            (quorum work queue)
                        │  │ "#"                    │ failure ▶ hookhub.<consumer>.retry.<delay>
                        │  ▼                        │            (TTL, dead-letters back to work)
                        │ hookhub.archive (stream)  └ exhausted/permanent ▶ hookhub.<consumer>.dlq
                        │ alternate exchange (only without the archive: it takes every event)
                        ▼
                   hookhub.unrouted (bounded)

    a consumer's deadline ──▶ hookhub.<consumer>.deadline.<name>.<duration>s
                              (one queue per duration, its TTL = the duration; nobody consumes it)
                                  └─expired──▶ hookhub.<consumer>

Which queues a consumer has, and what its work queue binds, come from its spec
(`specs.ConsumerSpec`). Every name comes from the functions below; nothing else spells a queue
name.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel

from hookhub.events import EXCHANGE
from hookhub.settings import Settings
from hookhub.specs import ConsumerSpec, installed

# Every queue and exchange of Hookhub's is named under this prefix, and nothing else is.
PREFIX = "hookhub."
MIGRATING_SUFFIX = ".migrating"
UNROUTED_EXCHANGE = "hookhub.unrouted"
UNROUTED_QUEUE = "hookhub.unrouted"
# Without an archive, what no queue binds waits here; bounded, the oldest dropped first.
UNROUTED_MAX_MESSAGES = 100_000
ARCHIVE_QUEUE = "hookhub.archive"


def binding_matches(binding_key: str, routing_key: str) -> bool:
    """Whether a topic binding key matches a routing key, word by word as the broker matches:
    `*` stands for exactly one word, `#` for zero or more.

    In time proportional to (pattern words x routing key words), whatever the pattern: a search
    for `#.#.#.#.nomatch` costs what `a.b.c.d.e` does, and no pattern recurses.
    """
    pattern, words = binding_key.split("."), routing_key.split(".")
    # matched[j]: the pattern's words so far match the routing key's first j words.
    matched = [True] + [False] * len(words)
    for word in pattern:
        if word == "#":
            # Zero or more words: every length from the shortest matched so far on.
            first = matched.index(True) if True in matched else len(matched)
            matched = [j >= first for j in range(len(matched))]
        else:
            matched = [False] + [matched[j] and word in ("*", words[j]) for j in range(len(words))]
        if True not in matched:
            return False
    return matched[-1]


def literal_head(binding_key: str) -> str:
    """What every routing key a binding key matches starts with: its words before the first
    wildcard (`stripe.#` → `stripe`); the whole key when it has none. For narrowing a search by
    prefix before matching word by word."""
    return binding_key.split(".#")[0].split(".*")[0].split("*")[0].split("#")[0]


def work_queue(consumer: str) -> str:
    return f"{PREFIX}{consumer}"


def retry_queue(consumer: str, delay_s: float) -> str:
    return f"{PREFIX}{consumer}.retry.{delay_s:g}s"


def dead_letter_queue(consumer: str) -> str:
    return f"{PREFIX}{consumer}.dlq"


# ---- deadlines: one delay queue per duration -------------------------------------------------
#
# RabbitMQ expires a message only at the head of its queue. One queue per deadline type (the
# previous release's `hookhub.<consumer>.<type>`, each message with its own TTL) held a deadline
# set under a 90 s timeout behind the one-day deadlines set before it. So each duration has a
# queue of its own whose queue TTL is that duration: everything in it was set with the same
# duration, so the order it arrived in is the order it falls due in, and its head is always the
# next one due.
#
# A deadline published late (the outbox relay's, after the broker or the process was away) goes
# to the queue of the duration D it was *set* with, with a per-message TTL of what is left of it
# (never more than D, the queue's TTL: the broker applies the lesser). Set at s, published at
# p >= s, it is due at s + D. Every deadline ahead of it in the queue was published before p,
# so set before p, so due by p + D: it waits behind them at most p - s, its own publishing
# delay, never more (with the queue's TTL alone, it would always wait that long). Every deadline
# published on time after it is due at p' + D >= s + D: it never holds one of those back. So no
# deadline fires later than its own publishing delay, and on time when published on time. One
# already due goes straight to the work queue.
# A duration that is no longer configured keeps its queue until it is empty: its deadlines
# expire into the work queue by themselves, on time; `hookhub topology apply` removes it then
# (see `migrations`), and never empties one into the work queue (every deadline would fire at
# once).


def duration_label(duration_s: float) -> str:
    """A duration as it appears in a queue name: whole milliseconds, in seconds (`90`, `1.5`)."""
    return f"{round(duration_s * 1000) / 1000:f}".rstrip("0").rstrip(".")


def deadline_queue(consumer: str, deadline_type: str, duration_s: float) -> str:
    """Where a deadline of `deadline_type` set with `duration_s` waits."""
    return f"{PREFIX}{consumer}.{deadline_type}.{duration_label(duration_s)}s"


def legacy_deadline_queue(consumer: str, deadline_type: str) -> str:
    """The previous release's one queue per deadline type (per-message TTLs): drained in place
    after an upgrade, then removed."""
    return f"{PREFIX}{consumer}.{deadline_type}"


def deadline_type_of(queue: str, spec: ConsumerSpec) -> str | None:
    """The deadline type of one of `spec`'s deadline queues (of any duration, or the previous
    release's), None for any other queue."""
    for deadline_type in spec.deadlines:
        base = legacy_deadline_queue(spec.name, deadline_type)
        label = queue.removeprefix(f"{base}.")
        if queue == base or (label != queue and _is_duration_label(label)):
            return deadline_type
    return None


def _is_duration_label(label: str) -> bool:
    number = label.removesuffix("s")
    return label.endswith("s") and number.replace(".", "", 1).isdigit()


def deadline_queue_spec(consumer: str, deadline_type: str, duration_s: float) -> "QueueSpec":
    """One duration's delay queue: its TTL is the duration; what expires goes to the work queue."""
    ttl = {"x-message-ttl": round(duration_s * 1000)}
    return QueueSpec(
        deadline_queue(consumer, deadline_type, duration_s),
        _quorum(**ttl, **_dead_letter_to(work_queue(consumer))),
    )


def deadline_durations(
    settings: Settings, consumers: tuple[ConsumerSpec, ...] | None = None
) -> dict[str, float]:
    """The duration configured now for each deadline type of the consumers (the installed ones
    when not given): the setting each spec names for it (`ConsumerSpec.deadline_settings`)."""
    return {
        deadline_type: float(getattr(settings, setting))
        for spec in (installed() if consumers is None else consumers)
        for deadline_type, setting in spec.deadline_settings.items()
    }


def migrating_queue(queue: str) -> str:
    """Where `hookhub topology apply` keeps a queue's messages while it declares it again."""
    return f"{queue}{MIGRATING_SUFFIX}"


def owner_of(queue: str) -> str | None:
    """The consumer a queue name belongs to by its shape (`hookhub.<consumer>[.<what>]`), or
    None for a name outside the prefix. Shared queues (the unrouted queue, the archive) answer
    their own word, which no consumer is named."""
    if not queue.startswith(PREFIX):
        return None
    return queue.removeprefix(PREFIX).split(".", 1)[0]


class TopologyConflict(RuntimeError):
    """The broker already has an exchange or queue of that name, declared differently."""


class ExchangeConflict(TopologyConflict):
    """An exchange declared differently: nothing was declared after it."""


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    arguments: dict[str, Any]
    bindings: tuple[str, ...] = field(default=())


def _quorum(**arguments: Any) -> dict[str, Any]:
    return {"x-queue-type": "quorum", **arguments}


def _dead_letter_to(queue: str) -> dict[str, Any]:
    """Send what this queue dead-letters straight to `queue`, losslessly: quorum queues
    dead-letter at-most-once unless told at-least-once, which needs reject-publish overflow."""
    return {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
    }


def consumer_queues(
    spec: ConsumerSpec,
    retry_delays_s: tuple[float, ...],
    delivery_limit: int,
    deadlines_s: Mapping[str, float] | None = None,
) -> list[QueueSpec]:
    """The work queue, one retry queue per delay, the deadline queues (one per deadline type
    with a duration in `deadlines_s`: see `deadline_durations`) and the parking lot of one
    consumer, from its spec."""
    consumer = spec.name
    work, dlq = work_queue(consumer), dead_letter_queue(consumer)
    # A message redelivered delivery_limit times (a consumer crashing on it) is dead-lettered by
    # the broker itself, so a poison message cannot crash-loop the consumers forever.
    work_arguments = _quorum(**{"x-delivery-limit": delivery_limit}, **_dead_letter_to(dlq))
    specs = [
        QueueSpec(work, work_arguments, spec.bindings),
        QueueSpec(dlq, _quorum()),
    ]
    for delay_s in retry_delays_s:
        # One queue per delay, so no message waits behind a longer TTL at the head of the queue.
        ttl = {"x-message-ttl": int(delay_s * 1000)}
        specs.append(
            QueueSpec(retry_queue(consumer, delay_s), _quorum(**ttl, **_dead_letter_to(work)))
        )
    for deadline_type in spec.deadlines:
        # The duration configured now; the outbox declares another one's when it needs it (a
        # deadline saved before the setting changed), and `topology apply` keeps an old one
        # until it is empty.
        if (duration_s := (deadlines_s or {}).get(deadline_type)) is not None:
            specs.append(deadline_queue_spec(consumer, deadline_type, duration_s))
    return specs


@dataclass(frozen=True, slots=True)
class Archive:
    """The event log's retention: a stream queue keeps every event routed through the exchange
    for `max_age` (RabbitMQ's units: 7D, 12h, 30m...) and at most `max_bytes`, whichever is
    reached first; whole segments of `segment_bytes` are dropped at a time."""

    max_age: str = "7D"
    max_bytes: int = 20 * 1024**3
    segment_bytes: int = 100 * 1024**2

    def spec(self) -> QueueSpec:
        arguments = {
            "x-queue-type": "stream",
            "x-max-age": self.max_age,
            "x-max-length-bytes": self.max_bytes,
            "x-stream-max-segment-size-bytes": self.segment_bytes,
        }
        return QueueSpec(ARCHIVE_QUEUE, arguments, ("#",))

    @classmethod
    def of(cls, settings: Settings) -> "Archive | None":
        """The archive the settings ask for; None when it is off."""
        if not settings.archive_enabled:
            return None
        return cls(
            settings.archive_max_age, settings.archive_max_bytes, settings.archive_segment_bytes
        )


def all_queues(
    retry_delays_s: tuple[float, ...],
    delivery_limit: int,
    archive: Archive | None = None,
    consumers: tuple[ConsumerSpec, ...] | None = None,
    deadlines_s: Mapping[str, float] | None = None,
) -> list[QueueSpec]:
    """Every queue: the unrouted queue, each consumer's (the installed consumers' when not
    given; deadline queues for the durations in `deadlines_s`) and the archive."""
    unrouted = _quorum(**{"x-max-length": UNROUTED_MAX_MESSAGES, "x-overflow": "drop-head"})
    queues = [QueueSpec(UNROUTED_QUEUE, unrouted)]
    for spec in installed() if consumers is None else consumers:
        queues += consumer_queues(spec, retry_delays_s, delivery_limit, deadlines_s)
    # The archive last: bound with `#`, it takes every event, so once it is bound the broker
    # confirms any publish. Declared before the consumers' queues (a broker that lost its
    # definitions, declared again), it would have an event accepted that no consumer gets.
    if archive is not None:
        queues.append(archive.spec())
    return queues


def _conflict(what: str, error: Exception) -> str:
    # Never "delete it": deleting a queue deletes the messages in it (accepted events).
    return (
        f"{what} already exists on the broker with different settings ({error}); it was left "
        f"as it is. `hookhub topology plan` shows what differs; `hookhub topology apply` "
        f"declares it again with the new settings without losing its messages."
    )


async def _guard(what: str, declaration: Any) -> Any:
    try:
        return await declaration
    except aiormq.exceptions.ChannelPreconditionFailed as exc:
        # An exchange holds no message, so deleting one loses none; but while it is gone every
        # publish is refused (and retried by its caller): `apply` leaves that to the operator.
        raise ExchangeConflict(
            f"{what} already exists on the broker with different settings ({exc}); it was left "
            f"as it is. Exchanges are not migrated: delete it (rabbitmqctl delete_exchange; its "
            f"queues and their messages stay) and run `hookhub topology apply` at once."
        ) from None


async def declare(
    channel: AbstractChannel,
    retry_delays_s: tuple[float, ...],
    delivery_limit: int,
    archive: Archive | None = None,
    consumers: tuple[ConsumerSpec, ...] | None = None,
    deadlines_s: Mapping[str, float] | None = None,
) -> list[QueueSpec]:
    """Declare everything (for the installed consumers when `consumers` is not given); a no-op
    when it exists as specified, TopologyConflict when it differs.

    Declaring is idempotent on the broker side: a second run with the same settings changes nothing.
    A queue that exists declared differently is left as it is, the rest declared, and the conflict
    raised at the end. A PRECONDITION_FAILED closes the channel, so callers should give this a
    channel of its own.
    """
    unrouted = await _guard(
        f"exchange {UNROUTED_EXCHANGE}",
        channel.declare_exchange(UNROUTED_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True),
    )
    events = await _guard(
        f"exchange {EXCHANGE}",
        channel.declare_exchange(
            EXCHANGE,
            aio_pika.ExchangeType.TOPIC,
            durable=True,
            arguments={"alternate-exchange": UNROUTED_EXCHANGE},
        ),
    )
    queues = all_queues(retry_delays_s, delivery_limit, archive, consumers, deadlines_s)
    conflicts = []
    for spec in queues:
        try:
            queue = await channel.declare_queue(spec.name, durable=True, arguments=spec.arguments)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            # One queue declared differently (an older Hookhub's) must not keep the rest from
            # being declared: the conflict closed the channel; reopen it, keep the queue as it
            # is (its bindings still apply), and say so at the end.
            conflicts.append(_conflict(f"queue {spec.name}", exc))
            await channel.reopen()
            queue = await channel.declare_queue(spec.name, passive=True)
        for key in spec.bindings:
            await queue.bind(events, key)
    await (await channel.get_queue(UNROUTED_QUEUE)).bind(unrouted, "")
    if conflicts:
        raise TopologyConflict(" ".join(conflicts))
    return queues


# --- outbound endpoints ---------------------------------------------------------------------
# Each endpoint of the registry (hookhub_endpoints) has queues of its own, made and removed with
# it, bound with its type patterns: `hookhub topology plan/apply` leaves them alone. The one
# HOOKHUB_NOTIFY_URL describes keeps the notifications consumer's queues (an upgrade loses none).
ENDPOINT_PREFIX = f"{PREFIX}endpoint."
SHORTHAND_ENDPOINT = "notifications"
# A delivery's waits after each failure: Svix's schedule, reaching ~27 hours in all.
ENDPOINT_RETRY_DELAYS_S = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def endpoint_owner(endpoint: str) -> str:
    """The name an endpoint's queues are kept under: `retry_queue(endpoint_owner(e), d)`..."""
    return SHORTHAND_ENDPOINT if endpoint == SHORTHAND_ENDPOINT else f"endpoint.{endpoint}"


def endpoint_queue(endpoint: str) -> str:
    """An endpoint's own queue: `hookhub.endpoint.<name>` (the shorthand's: the consumer's)."""
    return work_queue(endpoint_owner(endpoint))


def is_endpoint_queue(queue: str) -> bool:
    """Whether the registry, not the consumers' specs, manages this queue."""
    return queue.startswith(ENDPOINT_PREFIX)


def endpoint_queues(endpoint: str, types: tuple[str, ...], delivery_limit: int) -> list[QueueSpec]:
    """A registry endpoint's queue (one active consumer at a time, so that its rate and
    concurrency limits hold across delivery processes), its retry queues and parking lot."""
    owner = endpoint_owner(endpoint)
    work, dlq = work_queue(owner), dead_letter_queue(owner)
    arguments = _quorum(
        **{"x-single-active-consumer": True, "x-delivery-limit": delivery_limit},
        **_dead_letter_to(dlq),
    )
    queues = [QueueSpec(work, arguments, types), QueueSpec(dlq, _quorum())]
    for delay_s in sorted(set(ENDPOINT_RETRY_DELAYS_S)):
        ttl = {"x-message-ttl": int(delay_s * 1000)}
        queues.append(
            QueueSpec(retry_queue(owner, delay_s), _quorum(**ttl, **_dead_letter_to(work)))
        )
    return queues
