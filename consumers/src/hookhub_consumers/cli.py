"""`hookhub consume NAME` runs one consumer, `hookhub index` the event log's indexer (both
registered with the `hookhub` command as plugins)."""

from typing import Annotated

import typer
from hookhub.commands import RUN_PANEL, ConsumerName, known_consumer, load_settings, run

from hookhub_consumers.eventlog import run_indexer
from hookhub_consumers.handlers import HANDLERS
from hookhub_consumers.runtime import run_consumers, stop_on_signals


def consume(
    name: ConsumerName,
    probe_port: Annotated[
        int, typer.Option(envvar="HOOKHUB_PROBE_PORT", help="Port for /livez, /readyz, /metrics")
    ] = 9100,
) -> None:
    """Run one consumer; run more processes of it to scale out (competing consumers)."""
    known_consumer(name)
    settings = load_settings()

    async def main() -> None:
        await run_consumers(
            settings, {name: HANDLERS[name]}, stop_on_signals(), probe_port=probe_port
        )

    run(main)


def index() -> None:
    """Index the event log: read the archive stream into the store, in batches (one process)."""
    settings = load_settings()

    async def main() -> None:
        await run_indexer(settings, stop_on_signals())

    run(main)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=RUN_PANEL)(consume)


def register_index(app: typer.Typer) -> None:
    app.command(rich_help_panel=RUN_PANEL)(index)
