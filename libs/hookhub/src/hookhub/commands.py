"""What every `hookhub` command is built from: settings and a broker connection whose failures
read as a sentence with the fix, and a coroutine run on uvloop until Ctrl-C.

The library's operator commands (`hookhub.cli`) and the services' own commands (`hookhub api`,
`hookhub consume`, `hookhub dev`, registered as plugins) share these.
"""

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import aio_pika
import aiormq
import typer
from aio_pika.abc import AbstractConnection
from pydantic import ValidationError
from rich.console import Console

from hookhub import specs
from hookhub.broker import CONNECT_ERRORS, redact
from hookhub.logs import configure_logging, log
from hookhub.settings import Settings, get_settings

console = Console()
err = Console(stderr=True)

# Where `hookhub --help` lists the services' commands, apart from the operator commands.
RUN_PANEL = "Run the hub"

Host = Annotated[str, typer.Option(help="Interface to listen on")]
Port = Annotated[int, typer.Option(help="Port to listen on")]
ConsumerName = Annotated[str, typer.Argument(help=f"One of: {', '.join(specs.names())}")]


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command with `message` on stderr and exit status `code`."""
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def moment(text: str, option: str) -> datetime:
    """A time given to `option` on the command line, ISO 8601; UTC when it names no zone."""
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} '{text}' is not a time: use ISO 8601, e.g. 2026-11-01 or 2026-11-01T12:00")
    return at if at.tzinfo else at.replace(tzinfo=UTC)


AllowNoGateway = Annotated[
    bool,
    typer.Option(help="Serve without HOOKHUB_GATEWAY_SECRET (only where Kong is not in front)"),
]


def require_gateway_secret(settings: Settings, allow_no_gateway: bool, risk: str) -> None:
    """Exit 2 when a service behind Kong would start without the secret Kong injects, saying
    what anyone who reaches its port could then do (`risk`); unless it was waived, on purpose."""
    if settings.gateway_secret is not None:
        return
    if not allow_no_gateway:
        fail(
            f"HOOKHUB_GATEWAY_SECRET is not set: without it anyone who reaches {risk}. Set it "
            "to the secret Kong injects, or pass --allow-no-gateway if nothing but Kong can "
            "reach this port.",
            code=2,
        )
    log.warning("gateway.check_disabled", reason="--allow-no-gateway")


def known_consumer(name: str) -> None:
    try:
        specs.by_name(name)
    except KeyError as error:
        fail(error.args[0])


def _setting_problem(error: Any) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    variable = field if field.startswith("HOOKHUB_") else f"HOOKHUB_{field.upper()}"
    return f"{variable}: {error['msg'].removeprefix('Value error, ')}"


def load_settings() -> Settings:
    """The settings, with logging configured; exit 2 naming each bad variable (never its value)."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        fail("invalid settings: " + "; ".join(map(_setting_problem, exc.errors())), code=2)
    json_lines = settings.log_json if settings.log_json is not None else not sys.stderr.isatty()
    configure_logging(settings.log_level, json_lines)
    return settings


@asynccontextmanager
async def broker_connection(settings: Settings) -> AsyncIterator[AbstractConnection]:
    """A plain connection to the broker for one operator command: to the first address of
    HOOKHUB_AMQP_URL that answers (a cluster's node may be down), tried in turn."""
    opened, refused, unreachable = None, [], []
    for url in settings.amqp_urls:
        try:
            opened = await aio_pika.connect(url, timeout=settings.connect_timeout_s)
            break
        except aiormq.exceptions.ProbableAuthenticationError:
            refused.append(redact(url))
        except CONNECT_ERRORS:
            unreachable.append(redact(url))
    if opened is None and refused:
        fail(
            f"RabbitMQ at {', '.join(refused)} refused the login: check the user and "
            "password in HOOKHUB_AMQP_URL"
        )
    if opened is None:
        fail(
            f"RabbitMQ is not reachable at {', '.join(unreachable)}: start it "
            "(`rabbitmq-server -detached`) or point HOOKHUB_AMQP_URL at it"
        )
    async with opened:
        yield opened


def run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run the coroutine on uvloop; Ctrl-C ends it quietly."""
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro_fn())
    except KeyboardInterrupt:
        return None
