"""`make chaos`: Hookhub's fault suite, on a three-node RabbitMQ cluster of its own.

    .venv/bin/python -m chaos.run [--only SCENARIO ...] [--orders-per-s 10]

Starts three RabbitMQ nodes beside the shared broker (never touching it), runs hub-api and the
three consumers against them, and for each scenario drives orders through the hub while one
fault is injected and healed. Prints one row per scenario, writes chaos/results/<UTC time>.json
(with the processes' logs in chaos/results/<UTC time>/), and exits 1 if any row lost or
duplicated an effect, parked an event with its effects, answered a 5xx other than 503 or failed a
check of its own (chaos/verdict.py, chaos/README.md).
"""

import argparse
import asyncio
import signal
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos import report
from chaos.cluster import RABBITMQ_BIN, Cluster, ClusterError
from chaos.hub import RETRY_DELAYS_S, takes_broker_list
from chaos.scenarios import SCENARIOS, Skipped, run_scenario

DEFAULT_ORDERS_PER_S = 10.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=[s.name for s in SCENARIOS],
        help="run this scenario (repeatable); default all",
    )
    parser.add_argument(
        "--orders-per-s",
        type=float,
        default=DEFAULT_ORDERS_PER_S,
        help="new orders a second (4 events each: order.created, a Stripe payment, a CI report, "
        "production.finished)",
    )
    return parser.parse_args(argv)


async def main(args: argparse.Namespace, started: datetime) -> list[dict[str, Any]]:
    # Ctrl-C and SIGTERM (a CI timeout, `kill`) unwind the run: every finally runs, so the hub's
    # processes stop, the tmpfs is unmounted and the cluster is torn down. Remembered, because a
    # cleanup that fails on the way (a node still booting) turns the cancellation into an error
    # that the next scenario would otherwise shrug off.
    main_task = asyncio.current_task()
    assert main_task is not None
    interrupted = asyncio.Event()

    def interrupt() -> None:
        interrupted.set()
        main_task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, interrupt)

    work_dir = report.RESULTS_DIR / f"{started:%Y%m%dT%H%M%SZ}"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hookhub-chaos-") as home:
        report.console.print("starting a three-node RabbitMQ cluster …")
        with Cluster(Path(home), log_dir=work_dir / "rabbitmq") as cluster:
            for scenario in [s for s in SCENARIOS if not args.only or s.name in args.only]:
                report.console.print(f"[bold]{scenario.name}[/]: {scenario.fault}")
                began = time.monotonic()
                row: dict[str, Any] = {"scenario": scenario.name, "fault": scenario.fault}
                try:
                    verdict, notes = await run_scenario(
                        scenario, cluster, work_dir, args.orders_per_s
                    )
                    row.update(verdict=verdict, notes=notes)
                except Skipped as exc:
                    row["error"] = f"skipped: {exc}"
                except Exception as exc:  # one broken scenario must not hide the others' rows
                    if interrupted.is_set():
                        raise asyncio.CancelledError from exc
                    row["error"] = f"{type(exc).__name__}: {exc}"
                    row["traceback"] = traceback.format_exc()
                    cluster.wait_running()  # the next scenario needs the three nodes back
                row["duration_s"] = round(time.monotonic() - began, 1)
                rows.append(row)
    return rows


def cli() -> int:
    args = parse_args(sys.argv[1:])
    if not (RABBITMQ_BIN / "rabbitmq-server").exists():
        report.console.print(
            "[red]chaos needs Debian's rabbitmq-server[/] (apt-get install rabbitmq-server); "
            "it runs nodes of its own and leaves any running broker alone"
        )
        return 1
    started, began = datetime.now(UTC), time.monotonic()
    try:
        rows = asyncio.run(main(args, started))
    except ClusterError as exc:
        report.console.print(f"[red]chaos failed:[/] {exc}")
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        report.console.print("[yellow]chaos interrupted[/]; the cluster and the hub are stopped")
        return 130
    report.console.print(report.table(rows))
    broken = [
        r["scenario"] for r in rows if "error" in r and not r["error"].startswith("skipped")
    ] + [r["scenario"] for r in rows if "verdict" in r and report.failed(r["verdict"])]
    path = report.write_json(
        started,
        {
            "started_at": started.isoformat(),
            "duration_s": round(time.monotonic() - began, 1),
            "hub_takes_every_node": takes_broker_list(),
            "retry_delays_s": RETRY_DELAYS_S,
            "orders_per_s": args.orders_per_s,
            "passed": not broken,
            "scenarios": [report.row_json(r) for r in rows],
        },
    )
    report.console.print(
        f"results: {path}  (logs: {path.with_suffix('')}/)  total {time.monotonic() - began:.0f} s"
    )
    if broken:
        report.console.print(f"[bold red]promise broken in: {', '.join(broken)}[/]")
        return 1
    report.console.print(
        "[bold green]every accepted event had its effects once; none lost, none parked with "
        "its effects, no 5xx but 503[/]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(cli())
