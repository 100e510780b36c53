"""`hookhub`: operate the hub (`status`, `topology`, `dlq`, `publish`), and run it.

The commands that run a service belong to that service's package and are found at start-up as
plugins: a package installed beside this library names a `register(app)` function under the
entry-point group `hookhub.commands` (hub-api registers `api`, the consumers `consume`, the
workspace's dev package `dev`). An image with hub-api only therefore has no `consume` command,
and this library never imports a service.
"""

import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import Annotated, Any

import aio_pika
import typer
from rich.table import Table

from hookhub import contracts, dlq, events, migrations, schema, topology
from hookhub.broker import Broker, BrokerUnavailable, redact
from hookhub.commands import (
    ConsumerName,
    broker_connection,
    console,
    err,
    fail,
    known_consumer,
    load_settings,
    run,
)
from hookhub.events import Event

COMMAND_PLUGINS = "hookhub.commands"

app = typer.Typer(help="Hookhub: the webhook and event integration hub.", no_args_is_help=True)
topology_app = typer.Typer(help="The RabbitMQ exchanges and queues.", no_args_is_help=True)
app.add_typer(topology_app, name="topology")
dlq_app = typer.Typer(
    help="Dead-lettered messages: list, show, replay, purge.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")


def _run_dlq(coro_fn: Callable[[], Awaitable[Any]], consumer: str) -> Any:
    """Run a dlq operation; expected failures become a message, not a traceback."""
    try:
        return run(coro_fn)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        fail(
            f"{topology.dead_letter_queue(consumer)} does not exist on this broker: "
            "run `hookhub topology declare`"
        )
    except dlq.ReplayFailed as exc:
        fail(str(exc))


def _known_parking_lot(name: str) -> None:
    # An endpoint's parking lot goes by `endpoint.<its name>` (hookhub endpoints), a consumer's
    # by the consumer's name.
    if not topology.is_endpoint_queue(topology.work_queue(name)):
        known_consumer(name)


@dlq_app.command("list")
def dlq_list(name: ConsumerName) -> None:
    """The messages parked in a consumer's dead-letter queue, with why they failed."""
    _known_parking_lot(name)
    settings = load_settings()

    async def main() -> list[dlq.Parked]:
        async with broker_connection(settings) as connection:
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
    _known_parking_lot(name)
    settings = load_settings()

    async def main() -> list[dlq.Parked]:
        async with broker_connection(settings) as connection:
            return await dlq.list_parked(connection, name)

    found = [m for m in _run_dlq(main, name) if m.id == id]
    if not found:
        fail(f"no message with id '{id}' in {topology.dead_letter_queue(name)}")
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
    _known_parking_lot(name)
    if bool(id) == all_:
        fail("say what to replay: --id ID (repeatable) or --all")
    settings = load_settings()

    refused: dict[str, str] = {}

    async def main() -> list[str]:
        async with broker_connection(settings) as connection:
            return await dlq.replay(
                connection, name, set(id) if id else None, settings.publish_timeout_s, refused
            )

    count = len(_run_dlq(main, name))
    if refused:
        said = "; ".join(f"{event_id}: {reason}" for event_id, reason in refused.items())
        fail(f"replayed {count}; not replayed, still parked: {said}")
    if id and count < len(set(id)):
        fail(
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
    _known_parking_lot(name)
    if not yes and not typer.confirm(
        f"Delete every message in {topology.dead_letter_queue(name)}?"
    ):
        raise typer.Exit(1)
    settings = load_settings()

    async def main() -> int:
        async with broker_connection(settings) as connection:
            return await dlq.purge(connection, name)

    console.print(
        f"purged {_run_dlq(main, name)} message(s) from {topology.dead_letter_queue(name)}"
    )


@topology_app.command("declare")
def topology_declare() -> None:
    """Declare exchanges and queues; safe to run again, refuses a conflicting existing one."""
    settings = load_settings()

    async def main() -> list[topology.QueueSpec]:
        async with broker_connection(settings) as connection:
            channel = await connection.channel()
            try:
                return await topology.declare(
                    channel,
                    settings.retry_delays_s,
                    settings.delivery_limit,
                    topology.Archive.of(settings),
                )
            except topology.TopologyConflict as exc:
                fail(str(exc))
                raise

    queues = run(main)
    console.print(f"declared exchange {events.EXCHANGE} and {len(queues)} queues:")
    for spec in queues:
        console.print(f"  {spec.name}")


def _run_migration(coro_fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run a plan or an apply; a stop or a conflict becomes its message, not a traceback."""
    try:
        return run(coro_fn)
    except (migrations.MigrationStopped, topology.TopologyConflict) as exc:
        fail(str(exc))


@topology_app.command("plan")
def topology_plan(
    as_json: Annotated[bool, typer.Option("--json", help="The plan as JSON")] = False,
) -> None:
    """What differs between the broker and this version: queues to create, to declare again
    with other arguments (old → new), retired, bindings to add or remove. Changes nothing."""
    settings = load_settings()

    async def main() -> migrations.Plan:
        async with broker_connection(settings) as connection:
            return await migrations.plan_for(connection, settings)

    plan = _run_migration(main)
    if as_json:
        console.print_json(json.dumps(plan.as_dict(), default=str))
        return
    for line in plan.lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@topology_app.command("apply")
def topology_apply(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Carry the plan out without losing a message: a queue with new arguments is emptied into
    `<queue>.migrating`, declared again and refilled; a retired queue is emptied into its
    consumer's work queue, then removed. Counts are printed and checked; run it again to finish
    what an interruption left."""
    settings = load_settings()

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False, soft_wrap=True)

    async def main() -> migrations.Plan | None:
        async with broker_connection(settings) as connection:
            plan = await migrations.plan_for(connection, settings)
            for line in plan.lines():
                say(line)
            if plan.empty:
                return None
            if not yes and not await asyncio.to_thread(typer.confirm, "Apply this plan?"):
                raise typer.Exit(1)
            await migrations.apply(connection, settings, plan, say)
            return await migrations.plan_for(connection, settings)

    left = _run_migration(main)
    if left is None:
        return
    if not left.settled:
        fail("the broker still differs from this version: " + "; ".join(left.lines()[1:]))
    for retired in left.retire:
        err.print(f"[yellow]kept:[/yellow] {retired.refusal}", soft_wrap=True)
    console.print("done: the broker has this version's topology")


@app.command()
def status() -> None:
    """Each queue's depth and consumer count."""
    settings = load_settings()

    async def main() -> list[tuple[str, int, int]]:
        rows = []
        async with broker_connection(settings) as connection:
            queues = topology.all_queues(
                settings.retry_delays_s, settings.delivery_limit, topology.Archive.of(settings)
            )
            for spec in queues:
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
    for name, messages, consumers in run(main):
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
    settings = load_settings()
    if not events.is_valid_type(type):
        fail(f"'{type}' is not a valid type: dot-separated words, no wildcards")
    try:
        body = json.dumps(json.loads(data), separators=(",", ":")).encode()
    except ValueError as exc:
        fail(f"--data is not valid JSON: {exc}")
    if problem := contracts.violation(type, body):
        fail(problem)
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

    if problem := run(main):
        fail(problem)
    console.print(json.dumps({"id": event.id, "type": event.type}))


def register_plugins(target: typer.Typer, invoked: str | None = None) -> None:
    """Add the commands that installed packages register under `hookhub.commands`: only the
    one invoked when it is one of them (`hookhub consume` need not import FastAPI), else all."""
    plugins = sorted(entry_points(group=COMMAND_PLUGINS), key=lambda p: p.name)
    if any(plugin.name == invoked for plugin in plugins):
        plugins = [plugin for plugin in plugins if plugin.name == invoked]
    for plugin in plugins:
        try:
            plugin.load()(target)
        except Exception as error:  # one broken package must not take the operator commands
            err.print(f"[yellow]warning:[/yellow] command '{plugin.name}' not loaded: {error}")


def main() -> None:
    register_plugins(app, invoked=sys.argv[1] if len(sys.argv) > 1 else None)
    try:
        app()
    except schema.NewerSchema as error:  # whichever command opened the store: no traceback
        err.print(f"[red]error:[/red] {error}", soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    sys.exit(main())
