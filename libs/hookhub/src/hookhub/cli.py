"""`hookhub`: run the hub and operate it."""

import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import aio_pika
import aiormq
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from hookhub import dlq, events, topology
from hookhub.broker import CONNECT_ERRORS, Broker, BrokerUnavailable, redact
from hookhub.events import Event
from hookhub.observability import configure_logging, log
from hookhub.settings import Settings, get_settings

app = typer.Typer(help="Hookhub: the webhook and event integration hub.", no_args_is_help=True)
topology_app = typer.Typer(help="The RabbitMQ exchanges and queues.", no_args_is_help=True)
app.add_typer(topology_app, name="topology")
dlq_app = typer.Typer(
    help="Dead-lettered messages: list, show, replay, purge.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
console = Console()
err = Console(stderr=True)

Host = Annotated[str, typer.Option(help="Interface to listen on")]
Port = Annotated[int, typer.Option(help="Port to listen on")]


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _setting_problem(error: Any) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    variable = field if field.startswith("HOOKHUB_") else f"HOOKHUB_{field.upper()}"
    return f"{variable}: {error['msg'].removeprefix('Value error, ')}"


def _settings() -> Settings:
    try:
        settings = get_settings()
    except ValidationError as exc:  # each problem names the variable, never its value
        _fail("invalid settings: " + "; ".join(map(_setting_problem, exc.errors())), code=2)
    json_lines = settings.log_json if settings.log_json is not None else not sys.stderr.isatty()
    configure_logging(settings.log_level, json_lines)
    return settings


@asynccontextmanager
async def _connection(settings: Settings):  # type: ignore[no-untyped-def]
    try:
        connection = await aio_pika.connect(settings.amqp_url, timeout=settings.connect_timeout_s)
    except aiormq.exceptions.ProbableAuthenticationError:
        _fail(
            f"RabbitMQ at {redact(settings.amqp_url)} refused the login: check the user and "
            "password in HOOKHUB_AMQP_URL"
        )
    except CONNECT_ERRORS:
        _fail(
            f"RabbitMQ is not reachable at {redact(settings.amqp_url)}: start it "
            "(`rabbitmq-server -detached`) or point HOOKHUB_AMQP_URL at it"
        )
    async with connection:
        yield connection


def _run(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    import uvloop

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro_fn())
    except KeyboardInterrupt:
        return None


def _uvicorn_server(settings: Settings, host: str, port: int):  # type: ignore[no-untyped-def]
    import uvicorn
    from hub_api.app import create_app

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


@app.command()
def api(
    host: Host = "127.0.0.1",
    port: Port = 8000,
    allow_no_gateway: Annotated[
        bool,
        typer.Option(help="Serve without HOOKHUB_GATEWAY_SECRET (only where Kong is not in front)"),
    ] = False,
) -> None:
    """Run hub-api, the publisher, behind the gateway."""
    settings = _settings()
    if settings.gateway_secret is None:
        if not allow_no_gateway:
            _fail(
                "HOOKHUB_GATEWAY_SECRET is not set: without it anyone who reaches hub-api can "
                "pose as any caller. Set it to the secret Kong injects, or pass "
                "--allow-no-gateway if nothing but Kong can reach this port.",
                code=2,
            )
        log.warning("gateway.check_disabled", reason="--allow-no-gateway")
    server = _uvicorn_server(settings, host, port)
    _run(server.serve)


@app.command()
def dev(host: Host = "127.0.0.1", port: Port = 8000) -> None:
    """Run the API and every consumer in this process, for one machine. Ctrl-C stops cleanly."""
    settings = _settings()
    settings.gateway_secret = None  # no Kong in front in dev
    try:
        from hookhub_consumers.runtime import run_consumers
    except ImportError:  # an image with hub-api only
        run_consumers = None

    async def main() -> None:
        server = _uvicorn_server(settings, host, port)
        stop = asyncio.Event()
        consumers = (
            asyncio.create_task(run_consumers(settings, topology.CONSUMERS, stop))
            if run_consumers
            else None
        )
        console.print(f"Hookhub dev: API on http://{host}:{port} (docs at /docs), Ctrl-C stops")
        try:
            await server.serve()
        finally:
            stop.set()
            if consumers:
                await consumers

    _run(main)


ConsumerName = Annotated[str, typer.Argument(help=f"One of: {', '.join(topology.CONSUMERS)}")]


def _known_consumer(name: str) -> None:
    if name not in topology.CONSUMERS:
        _fail(f"unknown consumer '{name}'; known: {', '.join(topology.CONSUMERS)}")


@app.command()
def consume(
    name: ConsumerName,
    probe_port: Annotated[
        int, typer.Option(envvar="HOOKHUB_PROBE_PORT", help="Port for /livez, /readyz, /metrics")
    ] = 9100,
) -> None:
    """Run one consumer; run more processes of it to scale out (competing consumers)."""
    _known_consumer(name)
    settings = _settings()
    from hookhub_consumers.runtime import run_consumers, stop_on_signals

    async def main() -> None:
        await run_consumers(settings, (name,), stop_on_signals(), probe_port=probe_port)

    _run(main)


def _run_dlq(coro_fn: Callable[[], Awaitable[Any]], consumer: str) -> Any:
    """Run a dlq operation; expected failures become a message, not a traceback."""
    try:
        return _run(coro_fn)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        _fail(
            f"{topology.dead_letter_queue(consumer)} does not exist on this broker: "
            "run `hookhub topology declare`"
        )
    except dlq.ReplayFailed as exc:
        _fail(str(exc))


@dlq_app.command("list")
def dlq_list(name: ConsumerName) -> None:
    """The messages parked in a consumer's dead-letter queue, with why they failed."""
    _known_consumer(name)
    settings = _settings()

    async def main() -> list[dlq.Parked]:
        async with _connection(settings) as connection:
            return await dlq.list_parked(connection, name)

    messages = _run_dlq(main, name)
    table = Table(title=f"{topology.dead_letter_queue(name)}: {len(messages)} message(s)")
    for column in ("id", "type", "attempts", "failed at", "reason"):
        table.add_column(column, overflow="fold")
    for m in messages:
        table.add_row(m.id, m.type, str(m.attempts), m.failed_at, m.reason)
    console.print(table)


@dlq_app.command("show")
def dlq_show(name: ConsumerName, id: Annotated[str, typer.Argument(help="The event id")]) -> None:
    """One parked message: headers and body."""
    _known_consumer(name)
    settings = _settings()

    async def main() -> list[dlq.Parked]:
        async with _connection(settings) as connection:
            return await dlq.list_parked(connection, name)

    found = [m for m in _run_dlq(main, name) if m.id == id]
    if not found:
        _fail(f"no message with id '{id}' in {topology.dead_letter_queue(name)}")
    m = found[0]
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in m.headers.items()}
    console.print_json(
        json.dumps(
            {
                "id": m.id,
                "type": m.type,
                "reason": m.reason,
                "attempts": m.attempts,
                "failed_at": m.failed_at,
                "headers": headers,
                "body": m.body.decode(errors="replace"),
            },
            default=str,
        )
    )


@dlq_app.command("replay")
def dlq_replay(
    name: ConsumerName,
    id: Annotated[
        list[str] | None, typer.Option("--id", help="Replay this event id (repeatable)")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every parked message")] = False,
) -> None:
    """Put parked messages back on the consumer's work queue (the parked copy is removed only
    after the broker confirmed the new one)."""
    _known_consumer(name)
    if bool(id) == all_:
        _fail("say what to replay: --id ID (repeatable) or --all")
    settings = _settings()

    async def main() -> int:
        async with _connection(settings) as connection:
            return await dlq.replay(
                connection, name, set(id) if id else None, settings.publish_timeout_s
            )

    count = _run_dlq(main, name)
    if id and count < len(set(id)):
        _fail(
            f"replayed {count} of {len(set(id))}: "
            f"the others are not in {topology.dead_letter_queue(name)}"
        )
    console.print(f"replayed {count} message(s) to {topology.work_queue(name)}")


@dlq_app.command("purge")
def dlq_purge(
    name: ConsumerName,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Delete every parked message of a consumer. They cannot be replayed afterwards."""
    _known_consumer(name)
    if not yes and not typer.confirm(
        f"Delete every message in {topology.dead_letter_queue(name)}?"
    ):
        raise typer.Exit(1)
    settings = _settings()

    async def main() -> int:
        async with _connection(settings) as connection:
            return await dlq.purge(connection, name)

    console.print(
        f"purged {_run_dlq(main, name)} message(s) from {topology.dead_letter_queue(name)}"
    )


@topology_app.command("declare")
def topology_declare() -> None:
    """Declare exchanges and queues; safe to run again, refuses a conflicting existing one."""
    settings = _settings()

    async def main() -> list[topology.QueueSpec]:
        async with _connection(settings) as connection:
            channel = await connection.channel()
            try:
                return await topology.declare(
                    channel, settings.retry_delays_s, settings.delivery_limit
                )
            except topology.TopologyConflict as exc:
                _fail(str(exc))
                raise

    queues = _run(main)
    console.print(f"declared exchange {events.EXCHANGE} and {len(queues)} queues:")
    for spec in queues:
        console.print(f"  {spec.name}")


@app.command()
def status() -> None:
    """Each queue's depth and consumer count."""
    settings = _settings()

    async def main() -> list[tuple[str, int, int]]:
        rows = []
        async with _connection(settings) as connection:
            for spec in topology.all_queues(settings.retry_delays_s, settings.delivery_limit):
                channel = await connection.channel()
                try:
                    queue = await channel.declare_queue(spec.name, passive=True)
                except aio_pika.exceptions.ChannelNotFoundEntity:
                    rows.append((spec.name, -1, -1))
                    continue
                result = queue.declaration_result
                rows.append((spec.name, result.message_count, result.consumer_count))
                await channel.close()
        return rows

    table = Table(title=f"Hookhub queues at {redact(settings.amqp_url)}")
    table.add_column("queue")
    table.add_column("messages", justify="right")
    table.add_column("consumers", justify="right")
    for name, messages, consumers in _run(main):
        missing = messages < 0
        table.add_row(
            name,
            "[red]missing[/red]" if missing else str(messages),
            "" if missing else str(consumers),
        )
    console.print(table)


@app.command()
def publish(
    type: Annotated[
        str, typer.Argument(help="Event type, also the routing key, e.g. order.created")
    ],
    data: Annotated[str, typer.Option(help="JSON data of the event")] = "{}",
    source: Annotated[str, typer.Option(help="CloudEvents source")] = "/cli",
    id: Annotated[str | None, typer.Option(help="Event id (default: a new UUID)")] = None,
    correlation_id: Annotated[
        str | None, typer.Option(help="Correlation id (default: a new UUID)")
    ] = None,
) -> None:
    """Publish one event straight to the exchange and wait for the broker's confirm."""
    settings = _settings()
    if not events.is_valid_type(type):
        _fail(f"'{type}' is not a valid type: dot-separated words, no wildcards")
    try:
        body = json.dumps(json.loads(data), separators=(",", ":")).encode()
    except ValueError as exc:
        _fail(f"--data is not valid JSON: {exc}")
    event = Event(
        id=id or events.new_event_id(),
        source=source,
        type=type,
        data=body,
        correlation_id=correlation_id or str(uuid.uuid4()),
    )

    async def main() -> str | None:
        """The same confirmed publish as hub-api's; the reason it failed, if it did."""
        broker = Broker(settings, declare_topology=False)
        await broker.start()
        try:
            if not await broker.wait_ready(settings.connect_timeout_s):
                return f"RabbitMQ is not reachable at {redact(settings.amqp_url)}"
            await broker.publish(event)
        except BrokerUnavailable as exc:
            return f"not published: {exc}; run it again (the same --id makes it safe)"
        finally:
            await broker.close()
        return None

    if problem := _run(main):
        _fail(problem)
    console.print(json.dumps({"id": event.id, "type": event.type}))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
