"""`make bench`: Hookhub's benchmarks, each side by side with its baselines.

    .venv/bin/python bench/run.py [--only SECTION] [--duration-s 10]
                                  [--warmup-s 2]
                                  [--connections 64] [--body-bytes 1024] [--events 5000]
                                  [--rates 100,200,300] [--drain-s 30]
                                  [--deadlines 200000]

Each section is a module with `async def run(options) -> dict`: it prints its own table and
returns what goes to bench/results/<section>-<UTC timestamp>.json. To add one, import it and add
it to SECTIONS; `--only` then accepts its name. Sections run one after the other, never at the
same time, so none measures another's load.
"""

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import consumer
import deadlines
import e2e
import ingest
import operator_search
import order_page
import people
from report import console, write_json
from support import DEFAULT_ADMIN_URL, RESULTS_DIR, BenchError, Options

import endpoints
import eventlog

SECTIONS: dict[str, Callable[[Options], Awaitable[dict[str, Any]]]] = {
    "ingest": ingest.run,
    "consumer": consumer.run,
    "e2e": e2e.run,
    "eventlog": eventlog.run,
    "operator_search": operator_search.run,
    "order_page": order_page.run,
    "deadlines": deadlines.run,
    "people": people.run,
    "endpoints": endpoints.run,
}


def _rates(text: str) -> tuple[int, ...]:
    try:
        rates = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("whole orders per second, e.g. 100,300,1000") from None
    if not rates or min(rates) < 1:
        raise argparse.ArgumentTypeError("every rate must be at least 1 order per second")
    return rates


def parse_args(argv: list[str]) -> tuple[list[str], Options]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        choices=sorted(SECTIONS),
        action="append",
        help="run this section (repeatable); default all",
    )
    parser.add_argument(
        "--duration-s",
        type=int,
        default=10,
        help="timed window per case (whole seconds, as wrk takes them)",
    )
    parser.add_argument(
        "--warmup-s", type=int, default=2, help="untimed load before each case's window"
    )
    parser.add_argument(
        "--connections", type=int, default=64, help="HTTP connections, or concurrent publishers"
    )
    parser.add_argument("--body-bytes", type=int, default=1024, help="size of the JSON body")
    parser.add_argument(
        "--events",
        type=int,
        default=consumer.DEFAULT_EVENTS,
        help="consumer section: events pre-loaded for each consumer to work through",
    )
    parser.add_argument(
        "--rates",
        type=_rates,
        default=e2e.DEFAULT_RATES,
        help="e2e section: offered orders/s, comma-separated, each for the warm-up and the window",
    )
    parser.add_argument(
        "--drain-s",
        type=float,
        default=e2e.DEFAULT_DRAIN_S,
        help="e2e section: how long the hub may take to catch up after each rate before its "
        "backlog is purged",
    )
    parser.add_argument(
        "--deadlines",
        type=int,
        default=deadlines.DEFAULT_DEADLINES,
        help="deadlines section: pending deadlines measured (the figures are extrapolated per "
        "million)",
    )
    parser.add_argument(
        "--amqp-url",
        default=DEFAULT_ADMIN_URL,
        help="the local broker; the bench makes a vhost of its own there and deletes it after",
    )
    args = parser.parse_args(argv)
    if args.duration_s < 1 or args.warmup_s < 0 or args.connections < 1 or args.events < 1:
        parser.error(
            "--duration-s must be at least 1, --warmup-s at least 0, --connections and --events "
            "at least 1"
        )
    options = Options(
        duration_s=args.duration_s,
        warmup_s=args.warmup_s,
        connections=args.connections,
        body_bytes=args.body_bytes,
        admin_url=args.amqp_url,
        events=args.events,
        rates=args.rates,
        drain_s=args.drain_s,
        deadlines=args.deadlines,
    )
    return args.only or list(SECTIONS), options


async def main(sections: list[str], options: Options) -> None:
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C does: every finally runs, so servers
    # are stopped and the bench vhost is deleted.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    for name in sections:
        console.rule(f"[bold]{name}")
        payload = await SECTIONS[name](options)
        path = write_json(RESULTS_DIR, name, payload)
        console.print(f"results: {path}")


def cli() -> int:
    import uvloop

    sections, options = parse_args(sys.argv[1:])
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main(sections, options))
    except BenchError as exc:
        console.print(f"[red]bench failed:[/red] {exc}")
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print("[yellow]bench interrupted[/yellow]; servers stopped, bench vhost deleted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli())
