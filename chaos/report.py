"""The table `make chaos` prints, and the JSON it leaves in chaos/results/."""

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from chaos.verdict import Verdict

# Piped (CI, `| tee`), rich assumes 80 columns and would fold the table, which needs ~190.
console = Console(width=None if sys.stdout.isatty() else 200)
RESULTS_DIR = Path(__file__).parent / "results"


def failed(verdict: Verdict) -> bool:
    """The promise broken: an effect lost or duplicated, one parked with its effects, an answer
    other than 202 or 503 from a 5xx, or a check of the scenario's own (`Verdict.failures`)."""
    return bool(verdict.failures())


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _flag(count: int) -> str:
    return f"[bold red]{count}[/]" if count else "0"


def table(rows: list[dict[str, Any]]) -> Table:
    result = Table(title="make chaos: faults under load on a three-node RabbitMQ cluster")
    for header in (
        "scenario",
        "sent",
        "202",
        "503",
        "other 5xx",
        "no answer",
        "gave up",
        "effects",
        "lost",
        "dup effects",
        "repeats",
        "parked (with effects)",
        "queued",
        "recovery s",
        "ingest gap s",
        "notify p50/max s",
        "verdict",
    ):
        if header == "scenario":
            result.add_column(header, no_wrap=True)
        else:
            result.add_column(header, justify="right")
    for row in rows:
        if "error" in row:
            result.add_row(row["scenario"], f"[red]{row['error']}[/]", *[""] * 15)
            continue
        v: Verdict = row["verdict"]
        result.add_row(
            row["scenario"],
            str(v.sent),
            str(v.accepted),
            str(v.answers_503),
            _flag(v.other_5xx),
            str(v.no_answer),
            str(v.gave_up),
            str(v.expected),
            _flag(v.lost),
            _flag(v.duplicates),
            str(v.repeats),
            f"{v.parked} ({_flag(v.parked_with_effects)})",
            str(v.queued),
            _seconds(v.recovery_s),
            _seconds(v.ingest_gap_s),
            f"{_seconds(v.notify_p50_s)}/{_seconds(v.notify_max_s)}",
            "[green]ok[/]" if not v.failures() else f"[red]{'; '.join(v.failures())}[/]",
        )
    return result


def write_json(started: datetime, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{started:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def row_json(row: dict[str, Any]) -> dict[str, Any]:
    """A table row as it goes to the JSON file."""
    out = {k: v for k, v in row.items() if k != "verdict"}
    if "verdict" in row:
        out.update(row["verdict"].as_dict())
    return out
