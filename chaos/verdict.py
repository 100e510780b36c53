"""The verdict on one scenario, judged only from outside the hub: what the senders were answered
(`chaos.load.Sent`), what the notification receiver got (`Notified`: every POST, its
`webhook-id`, its body and what the receiver answered) and what the parking lots hold
(`ParkedMessage`, as `hookhub dlq list` shows them). Nothing here reads the hub's store or
imports a consumer: an effect exists when the receiver has it.

Every order is four events (`chaos.load.KINDS`), and the receiver should hear, once each:

    order.created + the payment  → payments      → payment.approved   (notified)
    payment.approved + production.finished → production → order.ready (notified)
    the CI report                → notifications → ci.chaos.build     (notified)

An *effect* is one such notification, keyed by (type, order id). It is *lost* when it is
expected (its events were accepted) and the receiver never answered 2xx to it, unless one of ITS
OWN causes is parked: a payment parked in payments excuses the missing payment.approved and
order.ready of that order, a payment.approved parked in notifications excuses only its own
notification (never the order's order.ready). A *duplicate effect* is the same effect under two
webhook-ids (fails the run); a *repeat* is one webhook-id answered 2xx twice, which a receiver
drops by its webhook-id as Standard Webhooks asks (counted, does not fail). A parked message
*with effects* is one whose effect the receiver already has: replaying it would repeat it.
"""

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

from chaos.load import Sent, event_id

OK = range(200, 300)
# Every order id the load makes; a parked message's order is the first one in its body.
ORDER_ID = re.compile(r"chaos-[0-9a-f]{12}")


@dataclass(frozen=True)
class Notified:
    """One POST the notification receiver got, and what it answered."""

    webhook_id: str
    type: str
    order_id: str | None
    status: int
    at: float  # when it arrived (monotonic)

    @property
    def ok(self) -> bool:
        return self.status in OK


@dataclass(frozen=True)
class ParkedMessage:
    """One message in a `hookhub.<consumer>.dlq`."""

    consumer: str
    id: str
    type: str
    order_id: str | None
    reason: str = ""


def order_of(body: bytes | str) -> str | None:
    found = ORDER_ID.search(body.decode(errors="replace") if isinstance(body, bytes) else body)
    return found.group(0) if found else None


def notified_from(webhook_id: str, body: bytes, status: int, at: float) -> Notified:
    try:
        event = json.loads(body)
    except ValueError:
        event = {}
    return Notified(webhook_id, str(event.get("type", "")), order_of(body), status, at)


@dataclass(frozen=True)
class Cause:
    """A message whose parking stops an effect: matched by consumer and id, or by consumer,
    type and order for a follow-up (whose id the hub derives)."""

    consumer: str
    id: str | None = None
    type: str | None = None
    order_id: str | None = None

    def matches(self, parked: ParkedMessage) -> bool:
        if parked.consumer != self.consumer:
            return False
        if self.id is not None:
            return parked.id == self.id
        return parked.type == self.type and parked.order_id == self.order_id


APPROVED, READY, CI = "payment.approved", "order.ready", "ci.chaos.build"
Effect = tuple[str, str]  # (notification type, order id)


def causes(effect: Effect) -> list[Cause]:
    """Every message whose parking would excuse this effect's absence: its own chain only."""
    kind, order = effect
    payment = [
        Cause("payments", id=event_id("order", order)),
        Cause("payments", id=event_id("payment", order)),
    ]
    if kind == APPROVED:
        return [*payment, Cause("notifications", type=APPROVED, order_id=order)]
    if kind == READY:
        return [
            *payment,
            Cause("production", type=APPROVED, order_id=order),
            Cause("production", id=event_id("finished", order)),
            Cause("notifications", type=READY, order_id=order),
        ]
    if kind == CI:
        return [Cause("notifications", id=event_id("ci", order))]
    return []


def expected_effects(sent: Iterable[Sent]) -> dict[Effect, list[str]]:
    """Each notification the accepted events call for → the events (kind:order) owning it."""
    accepted: dict[str, set[str]] = defaultdict(set)
    for s in sent:
        if s.accepted_at is not None:
            accepted[s.order_id].add(s.kind)
    expected: dict[Effect, list[str]] = {}
    for order, kinds in accepted.items():
        if {"order", "payment"} <= kinds:
            expected[(APPROVED, order)] = [f"order:{order}", f"payment:{order}"]
            if "finished" in kinds:
                expected[(READY, order)] = [f"finished:{order}"]
        if "ci" in kinds:
            expected[(CI, order)] = [f"ci:{order}"]
    return expected


@dataclass
class Verdict:
    sent: int
    accepted: int
    answers_503: int
    other_5xx: int  # 500 and the like: the hub failing otherwise than it promises (503)
    no_answer: int  # refused, reset or timed out: hub-api was down or hung
    gave_up: int  # never accepted within the sender's bound
    expected: int  # notifications the accepted events call for
    lost: int  # of those, never answered 2xx by the receiver, and no cause of theirs parked
    duplicates: int  # the same effect under more than one webhook-id (fails)
    repeats: int  # one webhook-id answered 2xx more than once (the receiver drops it)
    parked: int
    parked_with_effects: int
    queued: int = 0  # messages still in work and retry queues when the scenario ended
    unexpected: int = 0  # notifications no accepted event calls for (e.g. order.conflict)
    recovery_s: float | None = None  # heal → the first payment sent after it notified
    ready_s: float | None = None  # heal → every process says ready
    ingest_gap_s: float = 0.0  # the longest time without a 202 while the load ran
    notify_p50_s: float | None = None  # a payment's 202 → its payment.approved at the receiver
    notify_max_s: float | None = None
    not_findable: int | None = None  # accepted ids `hookhub events list` lacks (when checked)
    checks: list[str] = field(default_factory=list)  # the scenario's own failed checks
    answers: dict[str, int] = field(default_factory=dict)  # every attempt's answer, by status
    missing: dict[str, int] = field(default_factory=dict)  # lost, by notification type
    parked_by: dict[str, int] = field(default_factory=dict)  # "<consumer>: <reason>" → count
    excused: int = 0  # missing effects whose own cause is parked
    lost_examples: list[str] = field(default_factory=list)
    duplicate_examples: list[str] = field(default_factory=list)
    parked_with_effects_examples: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def failures(self) -> list[str]:
        """Why this row breaks the promise; empty when it holds."""
        why = [
            f"{name} {count}"
            for name, count in (
                ("lost", self.lost),
                ("duplicate effects", self.duplicates),
                ("parked with effects", self.parked_with_effects),
                ("other 5xx", self.other_5xx),
                ("not findable", self.not_findable or 0),
            )
            if count
        ]
        return why + self.checks


def answers(sent: Iterable[Sent]) -> Counter[str]:
    statuses: Counter[str] = Counter()
    for s in sent:
        statuses.update(s.statuses)
    return statuses


def repeats(received: Iterable[Notified]) -> int:
    """One webhook-id answered 2xx more than once."""
    counts = Counter(r.webhook_id for r in received if r.ok)
    return sum(n - 1 for n in counts.values())


def duplicate_effects(received: Iterable[Notified]) -> dict[Effect, set[str]]:
    """Effects the receiver got 2xx under more than one webhook-id, with those ids."""
    ids: dict[Effect, set[str]] = defaultdict(set)
    for r in received:
        if r.ok and r.order_id is not None:
            ids[(r.type, r.order_id)].add(r.webhook_id)
    return {effect: found for effect, found in ids.items() if len(found) > 1}


def delivered(received: Iterable[Notified]) -> set[Effect]:
    return {(r.type, r.order_id) for r in received if r.ok and r.order_id is not None}


def with_effects(parked: ParkedMessage, got: set[Effect], webhook_ids: set[str]) -> bool:
    """Whether the receiver already has an effect this parked message causes."""
    if parked.consumer == "notifications" and parked.id in webhook_ids:
        return True
    if parked.order_id is None:
        return False
    return any(
        effect in got and any(cause.matches(parked) for cause in causes(effect))
        for effect in ((APPROVED, parked.order_id), (READY, parked.order_id))
    )


def notify_latency(sent: Iterable[Sent], received: Iterable[Notified]) -> tuple[float, float]:
    """From each payment's 202 to its payment.approved first reaching the receiver."""
    first: dict[str, float] = {}
    for r in received:
        if r.type == APPROVED and r.order_id is not None:
            first[r.order_id] = min(first.get(r.order_id, r.at), r.at)
    waits = sorted(
        max(0.0, first[s.order_id] - s.accepted_at)
        for s in sent
        if s.kind == "payment" and s.accepted_at is not None and s.order_id in first
    )
    if not waits:
        return (0.0, 0.0)
    return (round(waits[len(waits) // 2], 2), round(waits[-1], 2))


def recovery_s(sent: list[Sent], received: list[Notified], healed_at: float) -> float | None:
    """From the heal to the first payment.approved of a payment first sent after it."""
    after = {s.order_id for s in sent if s.kind == "payment" and s.first_sent_at >= healed_at}
    times = [r.at for r in received if r.ok and r.type == APPROVED and r.order_id in after]
    return round(min(times) - healed_at, 2) if times else None


def longest_gap_s(sent: list[Sent], load_ended_at: float) -> float:
    """The longest stretch without a 202 while the load ran."""
    if not sent:
        return 0.0
    times = sorted(s.accepted_at for s in sent if s.accepted_at and s.accepted_at < load_ended_at)
    start = min(s.first_sent_at for s in sent)
    marks = [start, *times, load_ended_at]
    return round(max(b - a for a, b in zip(marks, marks[1:], strict=False)), 2)


def judge(
    sent: list[Sent],
    received: list[Notified],
    parked: list[ParkedMessage],
    *,
    healed_at: float = 0.0,
    load_ended_at: float = 0.0,
) -> Verdict:
    """The counts; pure (the scenario adds queue depths, readiness and its own checks)."""
    statuses = answers(sent)
    accepted = [s for s in sent if s.accepted_at is not None]
    expected = expected_effects(sent)
    got = delivered(received)
    webhook_ids = {r.webhook_id for r in received if r.ok}
    missing: Counter[str] = Counter()
    lost_examples, excused = [], 0
    for effect in expected:
        if effect in got:
            continue
        if any(cause.matches(p) for cause in causes(effect) for p in parked):
            excused += 1
            continue
        missing[effect[0]] += 1
        lost_examples.append(f"{effect[0]}:{effect[1]}")
    doubled = duplicate_effects(received)
    unexpected = {effect for effect in got if effect not in expected}
    by_reason = Counter(f"{p.consumer}: {p.reason[:80]}" for p in parked)
    had_effects = [p for p in parked if with_effects(p, got, webhook_ids)]
    p50, worst = notify_latency(sent, received)
    return Verdict(
        sent=len(sent),
        accepted=len(accepted),
        answers_503=statuses["503"],
        other_5xx=sum(n for status, n in statuses.items() if status[0] == "5" and status != "503"),
        no_answer=statuses["error"],
        gave_up=len(sent) - len(accepted),
        expected=len(expected),
        lost=sum(missing.values()),
        duplicates=sum(len(ids) - 1 for ids in doubled.values()),
        repeats=repeats(received),
        parked=len(parked),
        parked_with_effects=len(had_effects),
        unexpected=len(unexpected),
        recovery_s=recovery_s(sent, received, healed_at),
        ingest_gap_s=longest_gap_s(sent, load_ended_at),
        notify_p50_s=p50,
        notify_max_s=worst,
        answers=dict(statuses),
        missing=dict(missing),
        parked_by=dict(by_reason),
        excused=excused,
        lost_examples=sorted(lost_examples)[:20],
        duplicate_examples=[f"{t}:{o} {sorted(ids)}" for (t, o), ids in doubled.items()][:20],
        parked_with_effects_examples=[f"{p.consumer}: {p.type} {p.id}" for p in had_effects][:20],
    )
