"""`hookhub endpoints add|list|show|disable|enable|remove|resend|rotate-secret|load`.

Tables for people, `--json` for scripts. Every change is made through the registry (and so
audited, as `cli:<user>`); a running hub picks it up within a few seconds.
"""

import getpass
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit

import aio_pika
import typer
from hookhub.commands import broker_connection, console, err, fail, load_settings, moment, run
from hookhub.settings import Settings
from rich.table import Table

from hookhub_endpoints import config, queues
from hookhub_endpoints import registry as endpoints
from hookhub_endpoints.model import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_OVERLAP_S,
    DEFAULT_TIMEOUT_S,
    Endpoint,
    EndpointError,
    Secret,
    UnknownEndpoint,
    new_secret,
)
from hookhub_endpoints.registry import Registry, open_registry
from hookhub_endpoints.resend import NotItsType, resend_failed, resend_one
from hookhub_endpoints.stats import endpoint_stats

app = typer.Typer(
    help="Outbound endpoints: who receives which events, signed.", no_args_is_help=True
)
T = TypeVar("T")

Json = Annotated[bool, typer.Option("--json", help="JSON for scripts, not a table")]
Name = Annotated[str, typer.Argument(help="The endpoint's name (see `hookhub endpoints list`)")]


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _with_registry(settings: Settings, work: Callable[[Registry], Awaitable[T]]) -> T:
    async def main() -> T:
        registry = open_registry(settings)
        try:
            await registry.open()
            return await work(registry)
        finally:
            await registry.close()

    try:
        return run(main)
    except (EndpointError, UnknownEndpoint, LookupError, NotItsType) as error:
        fail(str(error) if not isinstance(error, KeyError) else UnknownEndpoint.__str__(error))


def _print(value: Any, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(value))
    else:
        for key, shown in value.items():
            console.print(f"[bold]{key}[/bold]: {shown}")


async def _declare(settings: Settings, endpoint: Endpoint, previous: tuple[str, ...] = ()) -> None:
    """The endpoint's queues, now: events published from here on wait for it even before a
    delivery worker has read the registry."""
    try:
        async with broker_connection(settings) as connection:
            await queues.declare(await connection.channel(), endpoint, settings, previous)
    except (typer.Exit, aio_pika.exceptions.AMQPError) as error:
        why = "is not reachable" if isinstance(error, typer.Exit) else f"said {error}"
        err.print(
            f"[yellow]warning:[/yellow] the broker {why}: the delivery worker makes the"
            " endpoint's queue when it next reads the registry"
        )


def _default_name(url: str) -> str:
    host = urlsplit(url).hostname or "endpoint"
    return "".join(c if c.isalnum() else "-" for c in host.lower()).strip("-")[:63] or "endpoint"


@app.command()
def add(
    url: Annotated[str, typer.Option(help="Where to POST, http:// or https://")],
    types: Annotated[
        str, typer.Option(help="Event types to send, topic patterns, comma-separated: 'payment.#'")
    ],
    name: Annotated[
        str | None, typer.Option(help="Its name (default: from the URL's host)")
    ] = None,
    secret: Annotated[
        str | None, typer.Option(help="Its signing secret, whsec_...; made for you when left out")
    ] = None,
    max_in_flight: Annotated[
        int, typer.Option(help="Deliveries in flight at once, at most")
    ] = DEFAULT_MAX_IN_FLIGHT,
    rate: Annotated[
        float | None, typer.Option(help="Deliveries a second, at most (default: no limit)")
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for an answer")
    ] = DEFAULT_TIMEOUT_S,
    description: Annotated[str, typer.Option(help="What it is, for people")] = "",
    as_json: Json = False,
) -> None:
    """Add an endpoint; its secret is shown once, here, to configure the receiver with."""
    settings = load_settings()
    value = secret or new_secret()
    try:
        endpoint = Endpoint(
            name=name or _default_name(url),
            url=url,
            types=tuple(types.split(",")),
            secrets=(Secret(value),),
            rate_per_s=rate,
            max_in_flight=max_in_flight,
            timeout_s=timeout,
            description=description,
        )
    except EndpointError as error:
        fail(str(error))
    added = _with_registry(settings, lambda r: r.add(endpoint, _actor()))
    run(lambda: _declare(settings, added))
    _print({**added.shown(), "secret": value}, as_json)


@app.command("list")
def list_(as_json: Json = False) -> None:
    """Every endpoint, with its state."""
    settings = load_settings()
    found = _with_registry(settings, lambda r: r.endpoints())
    if as_json:
        console.print_json(json.dumps([e.shown() for e in found]))
        return
    table = Table("name", "state", "url", "types", "in flight", "rate/s")
    for e in found:
        shown = e.shown()
        table.add_row(
            e.name,
            e.state,
            str(shown["url"]),
            ", ".join(e.types),
            str(e.max_in_flight),
            "-" if e.rate_per_s is None else f"{e.rate_per_s:g}",
        )
    console.print(table)
    if settings.notify_url:
        console.print("and the shorthand endpoint HOOKHUB_NOTIFY_URL (queue hookhub.notifications)")


@app.command()
def show(
    name: Name,
    since: Annotated[
        str | None, typer.Option(help="Stats from this time (default: 24 h ago)")
    ] = None,
    as_json: Json = False,
) -> None:
    """One endpoint: its settings, health (success rate, latency, last error, backlog) and its
    latest changes."""
    settings = load_settings()
    start = None if since is None else moment(since, "--since")

    async def read(registry: Registry) -> dict[str, Any]:
        endpoint = await registry.get(name)
        stats = await endpoint_stats(settings, endpoint, start)
        changes = await registry.audit(name, limit=10)
        return {
            **endpoint.shown(),
            "stats": stats.shown(),
            "changes": [
                {"at": c.at.isoformat(), "actor": c.actor, "action": c.action} for c in changes
            ],
        }

    _print(_with_registry(settings, read), as_json)


@app.command()
def disable(
    name: Name,
    reason: Annotated[str, typer.Option(help="Why, for the others")] = "",
    as_json: Json = False,
) -> None:
    """Stop delivering to it; its events wait in its queue until it is enabled."""
    settings = load_settings()
    done = _with_registry(settings, lambda r: endpoints.disable(r, name, _actor(), reason))
    _print(done.shown(), as_json)


@app.command()
def enable(name: Name, as_json: Json = False) -> None:
    """Deliver to it again (also ends a circuit breaker's pause)."""
    settings = load_settings()
    done = _with_registry(settings, lambda r: endpoints.enable(r, name, _actor()))
    _print(done.shown(), as_json)


@app.command()
def remove(
    name: Name,
    yes: Annotated[bool, typer.Option("--yes", help="Also drop the events waiting for it")] = False,
    as_json: Json = False,
) -> None:
    """Remove it, with its queues (and the events waiting in them, hence --yes)."""
    if not yes:
        fail("removing an endpoint drops the events waiting for it: say --yes, or disable it")
    settings = load_settings()
    gone = _with_registry(settings, lambda r: r.remove(name, _actor()))

    async def drop() -> int:
        async with broker_connection(settings) as connection:
            return await queues.remove(await connection.channel(), name, gone.types)

    dropped = run(drop)
    _print({"removed": name, "dropped": dropped}, as_json)


@app.command("rotate-secret")
def rotate_secret(
    name: Name,
    secret: Annotated[str | None, typer.Option(help="The new secret (default: a new one)")] = None,
    overlap: Annotated[
        float, typer.Option(help="Seconds the old secret keeps signing too")
    ] = DEFAULT_OVERLAP_S,
    as_json: Json = False,
) -> None:
    """Sign with a new secret, and with the old one too for --overlap seconds (receivers switch
    in their own time). The new secret is shown once, here."""
    settings = load_settings()
    value = secret or new_secret()
    done = _with_registry(
        settings, lambda r: endpoints.rotate_secret(r, name, _actor(), value, overlap)
    )
    _print({**done.shown(), "secret": value}, as_json)


@app.command()
def resend(
    name: Name,
    event: Annotated[str | None, typer.Option(help="One event's id")] = None,
    source: Annotated[str | None, typer.Option(help="Its source, when ids are shared")] = None,
    failed_since: Annotated[
        str | None, typer.Option(help="Every event whose delivery failed since this time")
    ] = None,
    as_json: Json = False,
) -> None:
    """Send one event again (by id, from the archive), or every failed one since a time; with
    the same webhook-id, even if it was delivered."""
    if (event is None) == (failed_since is None):
        fail("say --event ID or --failed-since TIME")
    settings = load_settings()
    actor = _actor()

    async def main() -> int:
        if event is not None:
            await resend_one(settings, name, event, actor, source)
            return 1
        return await resend_failed(settings, name, moment(failed_since, "--failed-since"), actor)

    count = _with_registry(settings, lambda _: main())
    _print({"endpoint": name, "resent": count}, as_json)


@app.command()
def load(
    path: Annotated[
        str | None, typer.Argument(help="The file (default: HOOKHUB_ENDPOINTS_FILE)")
    ] = None,
    as_json: Json = False,
) -> None:
    """Make the registry what the endpoints file says (what every delivery worker does when it
    starts): endpoints added or changed, those it added before and no longer lists removed."""
    settings = load_settings()
    file = path or settings.endpoints_file
    if not file:
        fail("give the file, or set HOOKHUB_ENDPOINTS_FILE")
    try:
        wanted = config.read(file)
    except EndpointError as error:
        fail(str(error))
    changes = _with_registry(settings, lambda r: config.apply(r, wanted, file))
    _print({"file": file, "changes": changes}, as_json)


def register(target: typer.Typer) -> None:
    target.add_typer(app, name="endpoints")
