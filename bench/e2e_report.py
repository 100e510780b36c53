"""The end-to-end benchmark's figures: what the witness saw, each rate's results, the tables."""

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from e2e_sender import Sent
from e2e_witness import APPROVED, NOTIFIED
from report import Latencies, console
from rich.table import Table
from support import Options

LATE_SEND_S = 0.005  # an order whose first request went out later than this was sent late
# Goals from issue 25 (issue 10's were 1,000 and 500 orders/s on another machine), reported
# against, never asserted.
GOAL_BOUNDED_AT_PER_S = 300
GOAL_EFFECT_P99_MS, GOAL_EFFECT_AT_PER_S = 100.0, 200
PERCENTILES = {"p50": 50, "p99": 99, "max": 100}
CPU_ROLES = ("hub-api", "payments", "production", "notifications", "witness", "broker", "sender")
# The hub's own processes and the broker: what an order costs (the witness and the sender are the
# bench's, standing in for receivers and providers).
HUB_ROLES = ("hub-api", "payments", "production", "notifications", "broker")
GOAL_CPU_AT_PER_S = 100
GOAL_CPU_MS_PER_ORDER = 6.0


class WitnessLog:
    """What the witness recorded, read as its file grows: the first arrival of each (kind,
    order), and how many arrivals repeated one."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._first: dict[tuple[str, str], float] = {}
        self.repeats: Counter[tuple[str, str]] = Counter()

    def read(self) -> None:
        try:
            with open(self.path, "rb") as file:
                file.seek(self._offset)
                chunk = file.read()
        except FileNotFoundError:
            return
        whole = chunk.rfind(b"\n") + 1  # a line still being written is read next time
        self._offset += whole
        for line in chunk[:whole].decode().splitlines():
            kind, order_id, at = line.split("\t")
            if (kind, order_id) in self._first:
                self.repeats[kind, order_id] += 1
            else:
                self._first[kind, order_id] = float(at)

    def at(self, kind: str, order_id: str) -> float | None:
        return self._first.get((kind, order_id))

    def done(self, order_id: str, *kinds: str) -> bool:
        return all((kind, order_id) in self._first for kind in kinds)


def _since(arrived_at: float | None, accepted_at: float) -> float:
    return math.inf if arrived_at is None else arrived_at - accepted_at


def _percentiles_ms(samples_s: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max; an order still unfinished counts as infinitely late (math.inf)."""
    latencies = Latencies.from_seconds(samples_s)
    return {name: latencies.percentile_ms(p) for name, p in PERCENTILES.items()}


@dataclass(slots=True)
class Rate:
    """One offered rate's figures, over the orders of its timed window (never the warm-up's)."""

    offered_per_s: int
    achieved_per_s: float  # orders whose first request went out, per second of the window
    orders: int
    accepted: int  # 202 answers, two requests an order
    errors: dict[str, int]  # every other answer, by status code or failure
    latency_ms: dict[str, dict[str, float | None]]  # accept, effect, notified → p50, p99, max
    unfinished: dict[str, int]  # accepted orders whose effect or notification never came
    repeats: dict[str, int]  # effects or notifications that arrived more than once
    peak_depth: dict[str, int]  # ready messages, by consumer
    depth_series: list[list[float]]  # every sample: [s since the first, payments, production, ...]
    drained_after_s: float | None  # None: not within --drain-s
    bounded: bool
    purged: dict[str, int]  # what was left when --drain-s ran out, by consumer
    failed: dict[str, int]  # messages in retry and dead-letter queues
    cores: dict[str, float | None]  # in the window, by role, and "all cores"
    # first order sent → drained, ÷ every order accepted (warm-up's too); {} when not drained
    cpu_ms_per_order_whole_run: dict[str, float | None]
    window: tuple[float, float]  # wall-clock start and end of the timed window
    answered_per_s: float  # hub-api's answers (any status) that came within the window, per s
    sender: dict[str, float]

    @classmethod
    def of(
        cls,
        offered_per_s: int,
        sent: Sent,
        witness: WitnessLog,
        window: tuple[float, float],
        **measured: Any,
    ) -> "Rate":
        window_from, window_to = window
        answered_in_window = sum(
            window_from <= a.at < window_to
            for o in sent.orders
            for a in (o.created, o.paid)
            if a is not None and a.status is not None
        )
        window_orders = [o for o in sent.orders if o.in_window]
        answers = [a for o in window_orders for a in (o.created, o.paid) if a is not None]
        errors = Counter(str(a.status or a.error) for a in answers if a.status != 202)
        accepted = [o for o in window_orders if o.accepted_at is not None]
        latencies: dict[str, list[float]] = {"accept": [o.paid.latency_s for o in accepted]}
        unfinished, repeats = {}, {}
        for name, kind in (("effect", APPROVED), ("notified", NOTIFIED)):
            arrived = {o.order_id: witness.at(kind, o.order_id) for o in accepted}
            latencies[name] = [_since(arrived[o.order_id], o.accepted_at) for o in accepted]
            unfinished[name] = list(arrived.values()).count(None)
            repeats[name] = sum(witness.repeats[kind, o.order_id] for o in accepted)
        lags = sorted(o.lag_s for o in window_orders)
        return cls(
            offered_per_s=offered_per_s,
            achieved_per_s=len(window_orders) / sent.window_s if sent.window_s else 0.0,
            orders=len(window_orders),
            accepted=len(answers) - errors.total(),
            errors=dict(errors),
            latency_ms={name: _percentiles_ms(s) for name, s in latencies.items()},
            unfinished=unfinished,
            repeats=repeats,
            window=window,
            answered_per_s=answered_in_window / (window_to - window_from),
            sender={
                "late_orders": sum(lag > LATE_SEND_S for lag in lags),
                "max_lag_ms": lags[-1] * 1000 if lags else 0.0,
                "peak_requests_in_flight": sent.peak_in_flight,
            },
            **measured,
        )

    @property
    def hub_api_us_per_request(self) -> float | None:
        """hub-api's CPU in the window ÷ the requests it answered in the window."""
        cores = self.cores.get("hub-api")
        return cores * 1e6 / self.answered_per_s if cores and self.answered_per_s else None

    def cpu_ms_per_order(self) -> dict[str, float | None]:
        """CPU per order in the window, by hub role and all of them ("hub"): cores used ÷ orders
        per s. None where a role's CPU was not read, or no order was sent."""
        if self.achieved_per_s <= 0:
            return {role: None for role in (*HUB_ROLES, "hub")}
        per_role = {
            role: None if (cores := self.cores.get(role)) is None
            else cores * 1000 / self.achieved_per_s
            for role in HUB_ROLES
        }  # fmt: skip
        known = [ms for ms in per_role.values() if ms is not None]
        return {**per_role, "hub": sum(known) if len(known) == len(HUB_ROLES) else None}

    def as_json(self) -> dict[str, Any]:
        figures = asdict(self)
        # JSON has no infinity: an unfinished percentile is null, and `unfinished` says how many.
        for percentiles in figures["latency_ms"].values():
            for name, value in percentiles.items():
                if value is not None and math.isinf(value):
                    percentiles[name] = None
        return {
            **figures,
            "hub_api_us_per_request": self.hub_api_us_per_request,
            "cpu_ms_per_order": self.cpu_ms_per_order(),
        }


def summary(rates: Sequence[Rate]) -> dict[str, Any]:
    """The highest bounded rate, and the issue's goals: met (True), not (False), or not measured
    (None: that rate was not among --rates)."""
    highest = max((r.offered_per_s for r in rates if r.bounded), default=None)
    at_goal_rate = next((r for r in rates if r.offered_per_s == GOAL_EFFECT_AT_PER_S), None)
    effect_goal_met = None
    if at_goal_rate is not None:
        p99_ms = at_goal_rate.latency_ms["effect"]["p99"]
        effect_goal_met = p99_ms is not None and p99_ms < GOAL_EFFECT_P99_MS
    at_cpu_rate = next((r for r in rates if r.offered_per_s == GOAL_CPU_AT_PER_S), None)
    cpu_goal_met = None
    if at_cpu_rate is not None and (hub_ms := at_cpu_rate.cpu_ms_per_order()["hub"]) is not None:
        cpu_goal_met = hub_ms <= GOAL_CPU_MS_PER_ORDER
    return {
        "highest_bounded_orders_per_s": highest,
        "goals": {
            f"every queue bounded at >= {GOAL_BOUNDED_AT_PER_S:,} orders/s offered": (
                highest is not None and highest >= GOAL_BOUNDED_AT_PER_S
            ),
            f"accept → effect p99 < {GOAL_EFFECT_P99_MS:g} ms at {GOAL_EFFECT_AT_PER_S} orders/s": (
                effect_goal_met
            ),
            f"CPU per order <= {GOAL_CPU_MS_PER_ORDER:g} ms (hub + broker) at "
            f"{GOAL_CPU_AT_PER_S} orders/s": cpu_goal_met,
        },
    }


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return "∞" if math.isinf(value) else f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _count(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    if not total:
        return "0"
    return f"{total:,} (" + ", ".join(f"{k} {n:,}" for k, n in sorted(counts.items())) + ")"


def _cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _rows(r: Rate, drain_s: float) -> dict[str, list[tuple[str, str]]]:
    """One rate's column of the table, by section: (row label, cell)."""
    per_request = r.hub_api_us_per_request
    latency_sections = {
        "accept": "ms, payment webhook sent → its 202",
        "effect": "ms, 202 → payment effect (payment.approved)",
        "notified": "ms, 202 → notification received",
    }
    return {
        "load": [
            ("orders/s sent", f"{r.achieved_per_s:,.0f}"),
            (f"orders started > {LATE_SEND_S * 1000:g} ms late", f"{r.sender['late_orders']:,}"),
            ("requests answered/s in the window", f"{r.answered_per_s:,.0f}"),
            ("202 answers", f"{r.accepted:,}"),
            ("errors", _count(r.errors)),
        ],
        **{
            title: [(p, _ms(r.latency_ms[name][p])) for p in PERCENTILES]
            for name, title in latency_sections.items()
        },
        "work queues, peak ready messages": [
            (name, f"{depth:,}") for name, depth in r.peak_depth.items()
        ],
        "after the sender stopped": [
            ("drained after s", f"> {drain_s:g}" if r.drained_after_s is None
             else f"{r.drained_after_s:.1f}"),
            ("bounded", "[green]yes[/green]" if r.bounded else "[red]no[/red]"),
            ("orders unfinished", f"{r.unfinished['notified']:,}"),
            ("in retry or dead-letter queues", _count(r.failed)),
        ],
        "cores used in the window": [
            *((role, _cores(r.cores.get(role))) for role in CPU_ROLES),
            (f"all (of {os.cpu_count()})", _cores(r.cores.get("all cores"))),
            ("hub-api µs/request", "-" if per_request is None else f"{per_request:,.0f}"),
        ],
        "CPU ms per order (cores ÷ orders/s)": [
            (role, _ms(ms)) for role, ms in r.cpu_ms_per_order().items()
        ],
        "CPU ms per order, whole run (sent → drained)": [
            (role, _ms(r.cpu_ms_per_order_whole_run.get(role)))
            for role in r.cpu_ms_per_order()
        ],
    }  # fmt: skip


def print_tables(options: Options, rates: Sequence[Rate], bounded_within_s: float) -> None:
    """One column per offered rate: rates side by side read best, and it fits a narrow terminal."""
    table = Table(
        title=f"End to end, open loop: order.created + a signed Stripe payment per order, "
        f"{options.duration_s}s per rate after {options.warmup_s}s warm-up"
    )
    table.add_column("offered orders/s")
    for r in rates:
        table.add_column(f"{r.offered_per_s:,}", justify="right")
    columns = [_rows(r, options.drain_s) for r in rates]
    for section in columns[0]:
        table.add_row(f"[bold]{section}[/bold]", *("" for _ in rates))
        for i, (label, _) in enumerate(columns[0][section]):
            table.add_row(f"  {label}", *(column[section][i][1] for column in columns))
        table.add_section()
    console.print(table)
    console.print(
        f"bounded: every work queue empty and every order done within {bounded_within_s:g}s of "
        "the sender stopping; ∞: not done when --drain-s ran out (its backlog was purged)"
    )
    result = summary(rates)
    highest = result["highest_bounded_orders_per_s"]
    console.print(
        "highest offered rate with every queue bounded: "
        + ("none of those tried" if highest is None else f"{highest:,} orders/s")
    )
    verdicts = {True: "[green]met[/green]", False: "[red]not met[/red]", None: "not measured"}
    for goal, met in result["goals"].items():
        console.print(f"  goal {goal}: {verdicts[met]}")
