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
from hookhub.slow_clients import KEEP_ALIVE_TIMEOUT_S, with_head_timeout
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hub_api.app import create_app

# uvicorn's httptools protocol, with a time limit on each request's head (slowloris).
HeadTimeoutProtocol = with_head_timeout(HttpToolsProtocol)


def uvicorn_server(settings: Settings, host: str, port: int) -> uvicorn.Server:
    """hub-api on uvicorn as production runs it: uvloop, httptools with a time limit on each
    request's head (`hookhub.slow_clients`; the body's is the app's), no access log (the app logs
    each event itself), ten seconds to finish requests in flight on shutdown."""
    config = uvicorn.Config(
        create_app(settings),
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
