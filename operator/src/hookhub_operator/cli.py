"""`hookhub operator`: the operator service (console and read API) on uvicorn, registered with
the `hookhub` command as a plugin."""

import typer
import uvicorn
from hookhub.commands import (
    RUN_PANEL,
    AllowNoGateway,
    Host,
    Port,
    fail,
    load_settings,
    require_gateway_secret,
    run,
)
from hookhub.settings import Settings
from hookhub.slow_clients import KEEP_ALIVE_TIMEOUT_S, with_head_timeout
from hookhub_eventlog.store import migrate_event_log
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hookhub_operator import csrf
from hookhub_operator.app import create_app

# uvicorn's httptools protocol, with a time limit on each request's head (slowloris).
HeadTimeoutProtocol = with_head_timeout(HttpToolsProtocol)

DEFAULT_PORT = 8001


def uvicorn_server(
    settings: Settings, host: str, port: int, *, providers_known: bool | None = None
) -> uvicorn.Server:
    config = uvicorn.Config(
        create_app(settings, providers_known=providers_known),
        host=host,
        port=port,
        loop="uvloop",
        http=HeadTimeoutProtocol,
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT_S,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def operator(
    host: Host = "127.0.0.1",
    port: Port = DEFAULT_PORT,
    allow_no_gateway: AllowNoGateway = False,
) -> None:
    """Run the operator service: the console and the event log's read API, behind the gateway."""
    settings = load_settings()
    require_gateway_secret(
        settings, allow_no_gateway, "this port is taken for an operator who may replay and purge"
    )
    try:
        csrf.key_of(settings)
    except csrf.CsrfKeyMissing as error:
        fail(str(error), code=2)
    run(lambda: migrate_event_log(settings.store_url))  # a newer store stops it here
    run(uvicorn_server(settings, host, port).serve)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=RUN_PANEL)(operator)
