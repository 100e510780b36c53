"""`hookhub operator`: the operator service (console and read API) on uvicorn, registered with
the `hookhub` command as a plugin."""

from typing import Annotated

import typer
import uvicorn
from hookhub.commands import RUN_PANEL, Host, Port, fail, load_settings, run
from hookhub.observability import log
from hookhub.settings import Settings

from hookhub_operator.app import create_app

DEFAULT_PORT = 8001


def uvicorn_server(
    settings: Settings, host: str, port: int, *, providers_known: bool | None = None
) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings, providers_known=providers_known),
        host=host,
        port=port,
        loop="uvloop",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def operator(
    host: Host = "127.0.0.1",
    port: Port = DEFAULT_PORT,
    allow_no_gateway: Annotated[
        bool,
        typer.Option(help="Serve without HOOKHUB_GATEWAY_SECRET (only where Kong is not in front)"),
    ] = False,
) -> None:
    """Run the operator service: the console and the event log's read API, behind the gateway."""
    settings = load_settings()
    if settings.gateway_secret is None:
        if not allow_no_gateway:
            fail(
                "HOOKHUB_GATEWAY_SECRET is not set: without it anyone who reaches this port is "
                "taken for an operator who may replay and purge. Set it to the secret Kong "
                "injects, or pass --allow-no-gateway if nothing but Kong can reach this port.",
                code=2,
            )
        log.warning("gateway.check_disabled", reason="--allow-no-gateway")
    run(uvicorn_server(settings, host, port).serve)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=RUN_PANEL)(operator)
