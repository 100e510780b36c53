"""The table `make chaos` prints, and the JSON it leaves in chaos/results/."""

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from chaos.verdict import Verdict

# Piped (CI, `| tee`), rich assumes 80 columns and would fold the table, which needs ~150.
console = Console(width=None if sys.stdout.isatty() else 160)
RESULTS_DIR = Path(__file__).parent / "results"


def failed(verdict: Verdict) -> bool:
    """The promise broken: an accepted event lost, or one parked with its effects saved."""
    return verdict.lost > 0 or verdict.parked_with_effects > 0


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
        "lost",
        "duplicates",
        "parked (with effects)",
        "queued",
        "recovery s",
        "ready s",
        "ingest gap s",
    ):
        if header == "scenario":
            result.add_column(header, no_wrap=True)
        else:
            result.add_column(header, justify="right")
    for row in rows:
        if "error" in row:
            result.add_row(row["scenario"], f"[red]{row['error']}[/]", *[""] * 12)
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
            _flag(v.lost),
            str(v.duplicates),
            f"{v.parked} ({_flag(v.parked_with_effects)})",
            str(v.queued),
            _seconds(v.recovery_s),
            _seconds(v.ready_s),
            _seconds(v.ingest_gap_s),
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
