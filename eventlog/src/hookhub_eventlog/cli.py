"""`hookhub events list|show|journey|replay`: the event log, from the command line.

Tables for people, `--json` for scripts. Found through the index in the store; bodies and
replays read back from the broker's archive.
"""

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import typer
from hookhub.commands import broker_connection, console, fail, load_settings, moment, run
from rich.progress import Progress
from rich.table import Table

from hookhub_eventlog import archive, journey, replay
from hookhub_eventlog.people import ForgottenEvent
from hookhub_eventlog.store import EventQuery, LoggedEvent, open_event_log
from hookhub_eventlog.store.base import BadPattern, SearchTooSlow

app = typer.Typer(help="The event log: find, follow and replay archived events.")

Since = Annotated[str | None, typer.Option(help="From this time on (ISO 8601, UTC if no zone)")]
Until = Annotated[str | None, typer.Option(help="Before this time (ISO 8601, UTC if no zone)")]
Json = Annotated[bool, typer.Option("--json", help="JSON for scripts, not a table")]
SourceOfId = Annotated[
    str | None,
    typer.Option(
        "--source", help="The event's source, when events from several sources share the id"
    ),
]


def _time(text: str | None, option: str) -> datetime | None:
    return None if text is None else moment(text, option)


def _query(
    id: str | None,
    type: str | None,
    provider: str | None,
    source: str | None,
    correlation_id: str | None,
    order: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    unrouted: bool = False,
) -> EventQuery:
    if provider and source:
        fail("say --provider or --source, not both")
    return EventQuery(
        id=id,
        type=type,
        source=f"/webhooks/{provider}" if provider else source,
        correlation_id=correlation_id,
        order_id=order,
        since=_time(since, "--since"),
        until=_time(until, "--until"),
        unbound_by=journey.consumer_bindings() if unrouted else None,
        limit=limit,
    )


def _one_of(shared: journey.SharedId) -> str:
    """What to say when several events share an id: each with its source, and how to choose."""
    choices = "; ".join(f"{e.source} ({e.type}, {e.time.isoformat()})" for e in shared.events)
    return f"{shared}: {choices}. Run it again with --source SOURCE"


@contextmanager
def _searching() -> Iterator[None]:
    """A search the event log refuses (a pattern it cannot match, one over its time budget)
    ends the command with the store's own words: what to narrow, never a traceback."""
    try:
        yield
    except (BadPattern, SearchTooSlow, ForgottenEvent) as error:
        fail(str(error))


async def _the_event(id: str, source: str | None) -> LoggedEvent | None:
    event_log = open_event_log(load_settings().store_url)
    try:
        with _searching():
            return await journey.the_event(event_log, id, source)
    finally:
        await event_log.close()


async def _find(query: EventQuery) -> list[LoggedEvent]:
    event_log = open_event_log(load_settings().store_url)
    try:
        with _searching():
            return await event_log.find_events(query)
    finally:
        await event_log.close()


def _as_json(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else v)


# One set of filters for list and replay.
Id = Annotated[str | None, typer.Option("--id", help="The event id")]
Type = Annotated[str | None, typer.Option(help="A type or topic pattern: stripe.#, payment.*")]
Provider = Annotated[str | None, typer.Option(help="Webhooks of this provider")]
Source = Annotated[str | None, typer.Option(help="A whole CloudEvents source")]
Correlation = Annotated[str | None, typer.Option(help="The correlation id")]
Order = Annotated[
    str | None, typer.Option(help="The order id: its own events, its payments and follow-ups")
]
Unrouted = Annotated[bool, typer.Option(help="Only events no consumer binds")]


@app.command("list")
def list_events(
    id: Id = None,
    type: Type = None,
    provider: Provider = None,
    source: Source = None,
    correlation_id: Correlation = None,
    order: Order = None,
    since: Since = None,
    until: Until = None,
    unrouted: Unrouted = False,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 50,
    as_json: Json = False,
) -> None:
    """Archived events matching every filter given, newest first."""
    query = _query(id, type, provider, source, correlation_id, order, since, until, limit, unrouted)
    found = run(lambda: _find(query))
    if as_json:
        console.print_json(_as_json([asdict(e) for e in found]))
        return
    table = Table(title=f"{len(found)} event(s)")
    for column in ("time", "type", "id", "source", "order", "correlation id"):
        table.add_column(column, overflow="fold")
    for e in found:
        when = e.time.isoformat(timespec="seconds")
        table.add_row(when, e.type, e.id, e.source, e.order_id or "", e.correlation_id or "")
    console.print(table)


@app.command()
def show(
    id: Annotated[str, typer.Argument(help="The event id")],
    source: SourceOfId = None,
    as_json: Json = False,
) -> None:
    """One archived event: its attributes, headers and body, as the broker keeps them. When
    events from several sources share the id, it lists them: choose one with --source."""
    settings = load_settings()

    async def main() -> dict[str, Any] | None:
        try:
            found = await _the_event(id, source)
        except journey.SharedId as shared:
            fail(_one_of(shared))
        if found is None:
            return None
        async with broker_connection(settings) as connection:
            message = await archive.archived_message(connection, found.position)
        shown: dict[str, Any] = asdict(found)
        if message is None:
            shown["body"] = None
            shown["note"] = "no longer in the archive (retention)"
        else:
            headers = {
                k: v.decode() if isinstance(v, bytes) else v for k, v in message.headers.items()
            }
            shown["headers"] = headers
            shown["content_type"] = message.content_type
            shown["body"] = message.body.decode(errors="replace")
        return shown

    shown = run(main)
    if shown is None:
        fail(journey.not_in_the_event_log(id, source))
    console.print_json(_as_json(shown))


@app.command("journey")
def show_journey(
    id: Annotated[str, typer.Argument(help="The event id")],
    source: SourceOfId = None,
    as_json: Json = False,
) -> None:
    """What became of an event: accepted, each consumer's outcome, retries, parking, replays,
    the follow-ups it caused and its notification deliveries. When events from several sources
    share the id, it lists them: choose one with --source. An event outside the archive
    (accepted before it was enabled, or past its retention) shows what the store recorded."""
    settings = load_settings()

    async def main() -> journey.Journey | None:
        event_log = open_event_log(settings.store_url)
        try:
            with _searching():
                return await journey.journey(event_log, id, source)
        except journey.SharedId as shared:
            fail(_one_of(shared))
        finally:
            await event_log.close()

    found = run(main)
    if found is None:
        fail(journey.not_in_the_event_log(id, source))
    lines = found.timeline()
    if as_json:
        timeline = [{"at": a, "where": w, "what": what, "detail": d} for a, w, what, d in lines]
        if found.note is None:
            console.print_json(_as_json(timeline))
        else:  # a list alone would hide that the event itself is not there
            console.print_json(_as_json({"id": id, "note": found.note, "timeline": timeline}))
        return
    title = found.event_id if found.event is None else f"{found.event.type} {found.event.id}"
    table = Table(title=title, caption=found.note)
    for column in ("at", "where", "what", "detail"):
        table.add_column(column, overflow="fold")
    for at, where, what, detail in lines:
        table.add_row(at.isoformat(timespec="milliseconds"), where, what, detail)
    console.print(table)


@app.command("replay")
def replay_events(
    id: Id = None,
    type: Type = None,
    provider: Provider = None,
    source: Source = None,
    correlation_id: Correlation = None,
    order: Order = None,
    since: Since = None,
    until: Until = None,
    to: Annotated[str | None, typer.Option(help="Replay to this consumer only")] = None,
    all_consumers: Annotated[
        bool, typer.Option("--all-consumers", help="Replay to every consumer that binds each")
    ] = False,
    reprocess: Annotated[
        bool,
        typer.Option(help="Process them again even where already processed (a fixed handler)"),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, replay nothing")] = False,
    rate: Annotated[float | None, typer.Option(help="At most this many copies a second")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
    limit: Annotated[int, typer.Option(help="At most this many events")] = 100_000,
) -> None:
    """Put archived events back on consumers' work queues, oldest first, with their ids: a
    consumer drops what it already processed, unless --reprocess."""
    if bool(to) == all_consumers:
        fail("say where to: --to CONSUMER or --all-consumers")
    settings = load_settings()
    query = _query(id, type, provider, source, correlation_id, order, since, until, limit)
    found = sorted(run(lambda: _find(query)), key=lambda e: e.position)
    if id and not found:  # a forgotten event is refused by name, not counted as none
        run(lambda: _the_event(id, query.source))
    targets = Counter(c for e in found for c in replay.consumers_for(e.type, to))
    console.print(
        f"{len(found)} event(s) selected; copies per consumer: "
        + (", ".join(f"{c} {n}" for c, n in sorted(targets.items())) or "none")
    )
    if dry_run or not found:
        return
    if not yes and not typer.confirm(f"Replay {sum(targets.values())} copies?"):
        raise typer.Exit(1)
    reprocessing = str(uuid.uuid4())[:8] if reprocess else None

    async def main() -> replay.ReplayResult:
        async with broker_connection(settings) as connection:
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("replaying", total=len(found))
                return await replay.replay(
                    connection,
                    found,
                    to=to,
                    reprocess=reprocessing,
                    rate_per_s=rate,
                    on_progress=lambda n: progress.advance(task, n),
                )

    result = run(main)
    console.print(
        f"replayed {result.published} copies of {result.selected} event(s)"
        + (f" (reprocessing {reprocessing})" if reprocessing else "")
        + (f"; {result.gone} no longer in the archive" if result.gone else "")
        + (f"; {result.skipped} bound by no consumer asked" if result.skipped else "")
    )
    if result.refused:
        said = "; ".join(f"{i} to {c}: {why}" for (i, c), why in result.refused.items())
        fail(f"{len(result.refused)} copies not replayed: {said}")


def register(target: typer.Typer) -> None:
    target.add_typer(app, name="events")
