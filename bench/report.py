"""One case's figures, the table a section prints, and the JSON file it leaves in bench/results/."""

import json
import math
import os
import platform
import resource
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


@dataclass(frozen=True, slots=True)
class Latencies:
    sorted_s: tuple[float, ...]

    @classmethod
    def from_seconds(cls, samples_s: Sequence[float]) -> "Latencies":
        return cls(tuple(sorted(samples_s)))

    def percentile_ms(self, p: float) -> float | None:
        """Nearest-rank percentile, in milliseconds; None without samples."""
        if not self.sorted_s:
            return None
        rank = max(1, math.ceil(p / 100 * len(self.sorted_s)))
        return self.sorted_s[rank - 1] * 1000


@dataclass(slots=True)
class CaseResult:
    """What one case measured over its timed window (the warm-up is not in it).

    `ok` counts successful requests only (2xx, or a confirmed publish), so a server answering
    errors quickly cannot look fast; `errors` counts every other outcome by kind.
    """

    ok: int
    duration_s: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    errors: dict[str, int] = field(default_factory=dict)
    case: str = ""
    delivered: int | None = None  # messages the drain took during the timed window
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def rate_per_s(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "rate_per_s": self.rate_per_s, "error_count": self.error_count}


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _errors(result: CaseResult) -> str:
    if not result.errors:
        return "0"
    kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(result.errors.items()))
    return f"{result.error_count} ({kinds})"


def print_table(title: str, results: Sequence[CaseResult], rate_label: str = "requests/s") -> None:
    table = Table(title=title)
    table.add_column("case")
    table.add_column(rate_label, justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("errors", justify="right")
    table.add_column("delivered", justify="right")
    for r in results:
        table.add_row(
            r.case,
            f"{r.rate_per_s:,.0f}",
            _ms(r.p50_ms),
            _ms(r.p99_ms),
            _errors(r),
            "-" if r.delivered is None else f"{r.delivered:,}",
        )
    console.print(table)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def machine() -> dict[str, Any]:
    """Where the figures were taken: they mean little without it."""
    return {
        "cpus": os.cpu_count(),
        "load_average_1m_5m_15m": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }


CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU a live process has used so far, in seconds (Linux /proc); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def machine_busy_s() -> float | None:
    """CPU seconds every core together has spent not idle so far (Linux /proc/stat)."""
    try:
        ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS_PER_S


def pid_of(command_name: str) -> int | None:
    """The first process whose command name (/proc/<pid>/comm) is `command_name`."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() == command_name:
                return int(comm.parent.name)
        except OSError:
            continue
    return None


def waited_children_cpu_s() -> float:
    """CPU used by child processes that have exited and been waited for (e.g. wrk after its run)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuWindow:
    """CPU each process of a case used during its timed window: who spends the machine's cores.

    `processes` maps a role to a live pid read from /proc before and after; `"wrk"` is whatever
    children exited and were waited for in between (the window's wrk run, and nothing else).
    """

    def __init__(self, processes: dict[str, int | None]) -> None:
        self.processes = processes
        self._start = self._sample()

    def _sample(self) -> dict[str, float | None]:
        sample = {role: pid and process_cpu_s(pid) for role, pid in self.processes.items()}
        sample["wrk"] = waited_children_cpu_s()
        sample["all cores"] = machine_busy_s()
        return sample

    def close(self, duration_s: float, requests: int) -> dict[str, Any]:
        """Cores used by each role over the window, and the server's CPU per successful request."""
        end = self._sample()
        used_s = {
            role: (end[role] - start) if start is not None and end[role] is not None else None
            for role, start in self._start.items()
        }
        server_s = used_s.get("server")
        return {
            "cores": {
                role: None if s is None or duration_s <= 0 else s / duration_s
                for role, s in used_s.items()
            },
            "server_us_per_request": server_s * 1e6 / requests
            if server_s is not None and requests
            else None,
            "cpus": os.cpu_count(),
        }


def print_cpu_table(title: str, results: Sequence[CaseResult]) -> None:
    """From each result's `detail["cpu"]` (a `CpuWindow`): where the cores went."""
    roles = [role for role in results[0].detail["cpu"]["cores"] if role != "all cores"]
    table = Table(title=title)
    table.add_column("case")
    table.add_column("server µs/req", justify="right")
    for role in roles:
        table.add_column(role, justify="right")
    table.add_column(f"all (of {os.cpu_count()})", justify="right")
    for r in results:
        cpu = r.detail["cpu"]
        per_request = cpu["server_us_per_request"]
        table.add_row(
            r.case,
            "-" if per_request is None else f"{per_request:,.0f}",
            *(_cores(cpu["cores"][role]) for role in roles),
            _cores(cpu["cores"]["all cores"]),
        )
    console.print(table)


def _cores(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def write_json(results_dir: Path, section: str, payload: dict[str, Any]) -> Path:
    """bench/results/<section>-<UTC timestamp>.json"""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"{section}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
