"""`hookhub api`: run hub-api on uvicorn (registered with the `hookhub` command as a plugin)."""

from typing import Annotated

import typer
import uvicorn
from hookhub.commands import RUN_PANEL, Host, Port, fail, load_settings, run
from hookhub.observability import log
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
    allow_no_gateway: Annotated[
        bool,
        typer.Option(help="Serve without HOOKHUB_GATEWAY_SECRET (only where Kong is not in front)"),
    ] = False,
) -> None:
    """Run hub-api, the publisher, behind the gateway."""
    settings = load_settings()
    if settings.gateway_secret is None:
        if not allow_no_gateway:
            fail(
                "HOOKHUB_GATEWAY_SECRET is not set: without it anyone who reaches hub-api can "
                "pose as any caller. Set it to the secret Kong injects, or pass "
                "--allow-no-gateway if nothing but Kong can reach this port.",
                code=2,
            )
        log.warning("gateway.check_disabled", reason="--allow-no-gateway")
    run(uvicorn_server(settings, host, port).serve)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=RUN_PANEL)(api)
