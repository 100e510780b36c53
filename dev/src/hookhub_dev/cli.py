"""`hookhub dev`: hub-api and every consumer in this one process, with no Kong in front.

It depends on both services, so it lives in a package of its own, never in the library and in
neither service's image.
"""

import asyncio

import typer
from hookhub.commands import RUN_PANEL, Host, Port, console, load_settings, run
from hookhub_consumers.eventlog import run_indexer
from hookhub_consumers.handlers import HANDLERS
from hookhub_consumers.runtime import run_consumers
from hub_api.cli import uvicorn_server


def dev(host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """Run the API, every consumer and the event log's indexer in this process, for one
    machine. Ctrl-C stops cleanly."""
    settings = load_settings()
    settings.gateway_secret = None  # no Kong in front in dev

    async def main() -> None:
        server = uvicorn_server(settings, host, port)
        stop = asyncio.Event()
        consumers = asyncio.create_task(run_consumers(settings, HANDLERS, stop))
        indexing = asyncio.create_task(run_indexer(settings, stop))
        console.print(f"Hookhub dev: API on http://{host}:{port} (docs at /docs), Ctrl-C stops")
        try:
            await server.serve()
        finally:
            stop.set()
            await asyncio.gather(consumers, indexing, return_exceptions=True)

    run(main)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=RUN_PANEL)(dev)
