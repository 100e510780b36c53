"""`hookhub consume NAME`: run one consumer (registered with the `hookhub` command as a plugin)."""

from typing import Annotated

import typer
from hookhub.commands import RUN_PANEL, ConsumerName, known_consumer, load_settings, run

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


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=RUN_PANEL)(consume)
