"""`hookhub api`: run hub-api on uvicorn (registered with the `hookhub` command as a plugin)."""

import typer
import uvicorn
from hookhub import tracing
from hookhub.commands import (
    RUN_PANEL,
    AllowNoGateway,
    Host,
    Port,
    load_settings,
    require_gateway_secret,
    run,
)
from hookhub.settings import Settings

from hub_api.app import create_app


def uvicorn_server(settings: Settings, host: str, port: int) -> uvicorn.Server:
    """hub-api on uvicorn as production runs it: uvloop, httptools, no access log (the app logs
    each event itself), ten seconds to finish requests in flight on shutdown."""
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def api(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    allow_no_gateway: AllowNoGateway = False,
) -> None:
    """Run hub-api, the publisher, behind the gateway."""
    settings = load_settings()
    require_gateway_secret(settings, allow_no_gateway, "hub-api can pose as any caller")
    tracing.configure("hookhub-api")
    run(uvicorn_server(settings, host, port).serve)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=RUN_PANEL)(api)
