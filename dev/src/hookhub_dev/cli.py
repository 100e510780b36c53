"""`hookhub dev`: hub-api, every consumer and the operator console in this one process, with no
Kong in front.

It depends on every service, so it lives in a package of its own, never in the library and in
no service's image.
"""

import asyncio
from typing import Annotated

import typer
from hookhub import specs, tracing
from hookhub.commands import RUN_PANEL, Host, Port, console, load_settings, run
from hookhub_consumers.notifications.worker import run_endpoints
from hookhub_consumers.runtime import run_consumers
from hookhub_consumers.store import migrate
from hookhub_eventlog.indexer import run_indexer
from hookhub_operator import cli as operator_cli
from hub_api.cli import uvicorn_server


def dev(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    operator_port: Annotated[
        int, typer.Option(help="Port of the operator console and read API")
    ] = operator_cli.DEFAULT_PORT,
) -> None:
    """Run the API, every consumer, the event log's indexer and the operator console in this
    process, for one machine. Ctrl-C stops cleanly."""
    settings = load_settings()
    settings.gateway_secret = None  # no Kong in front in dev
    tracing.configure("hookhub")  # one process: one service, whose spans name each consumer
    settings.api_metrics_url = settings.api_metrics_url or f"http://{host}:{port}/metrics"

    async def main() -> None:
        await migrate(settings.store_url, specs.installed())  # a newer store stops it here
        server = uvicorn_server(settings, host, port)
        # The console shares hub-api's settings here, so it can say which providers are enabled.
        operator = operator_cli.uvicorn_server(settings, host, operator_port, providers_known=True)
        stop = asyncio.Event()
        consumers = asyncio.create_task(run_consumers(settings, specs.installed(), stop))
        indexing = asyncio.create_task(run_indexer(settings, stop))
        delivering = asyncio.create_task(run_endpoints(settings, stop))  # the registry's endpoints
        console_serving = asyncio.create_task(operator.serve())
        console.print(
            f"Hookhub dev: API on http://{host}:{port} (docs at /docs), operator console on "
            f"http://{host}:{operator_port}, Ctrl-C stops"
        )
        try:
            await server.serve()
        finally:
            operator.should_exit = True
            stop.set()
            await asyncio.gather(
                console_serving, consumers, indexing, delivering, return_exceptions=True
            )

    run(main)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=RUN_PANEL)(dev)
