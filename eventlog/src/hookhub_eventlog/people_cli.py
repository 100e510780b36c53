"""`hookhub people show|unlink|forget`: one person across every provider, from the command
line. Tables for people, `--json` for scripts; found through the event log's index."""

import json
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import typer
from hookhub.commands import broker_connection, console, fail, load_settings, run
from hookhub.logs import log
from rich.table import Table

from hookhub_eventlog.parking import remove_parked
from hookhub_eventlog.people import is_person_id
from hookhub_eventlog.store import open_event_log
from hookhub_eventlog.timeline import NoSuchPerson, explained, identifier_of, person_view

app = typer.Typer(help="People: one person's events across every provider; unlink; forget.")
Key = Annotated[str, typer.Argument(help="An e-mail, a phone, cpf:..., stripe:cus_..., or p_...")]
Json = Annotated[bool, typer.Option("--json", help="JSON for scripts, not a table")]


def _as_json(value: Any) -> str:
    return json.dumps(value, default=lambda v: v.isoformat() if isinstance(v, datetime) else v)


@app.command()
def show(key: Key, as_json: Json = False) -> None:
    """A person: their identifiers and the events that linked them, their timeline across
    providers (oldest first) and their orders."""

    async def main() -> Any:
        event_log = open_event_log(load_settings().store_url)
        try:
            return await person_view(event_log, key)
        except NoSuchPerson as error:
            fail(str(error))
        finally:
            await event_log.close()

    person = run(main)
    if as_json:
        console.print_json(_as_json(asdict(person)))
        return
    console.print(f"[bold]{person.id}[/bold]: {', '.join(person.identifiers)}")
    for link in person.links:
        console.print(f"  {link.a} + {link.b}: {explained(link)}")
    table = Table(title=f"{len(person.events)} event(s); orders: {', '.join(person.orders) or '-'}")
    for column in ("time", "source", "type", "id", "order"):
        table.add_column(column, overflow="fold")
    for e in person.events:
        when = e.time.isoformat(timespec="seconds")
        table.add_row(when, e.source, e.type, e.id, e.order_id or "")
    console.print(table)


@app.command()
def unlink(
    identifier: Annotated[
        str | None, typer.Argument(help="This identifier is not this person: undo its links")
    ] = None,
    event: Annotated[
        str | None, typer.Option("--event", help="Undo every link this event made")
    ] = None,
) -> None:
    """Undo a merge: the person splits again where nothing else joins them. A link undone is
    not made again by a later event."""
    if bool(identifier) == bool(event):
        fail("say which: an IDENTIFIER, or --event EVENT_ID")

    async def main() -> list[str]:
        event_log = open_event_log(load_settings().store_url)
        try:
            if identifier:
                return await event_log.unlink(identifier=identifier_of(identifier))
            return await event_log.unlink(event_id=event or "")
        finally:
            await event_log.close()

    persons = run(main)
    if not persons:
        fail("no link to undo: nothing links it (see `hookhub people show`)")
    log.info("people.unlinked", persons=persons, event_id=event)
    console.print(f"unlinked: now {len(persons)} person(s): {', '.join(persons)}")


@app.command()
def forget(
    person_id: Annotated[str, typer.Argument(help="The person's id (p_...)")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Forget a person at their request (LGPD/GDPR): their index rows, identifiers and links
    are removed, their events recorded as forgotten, so that reads and replays of what the
    archive still keeps of them refuse until its retention drops it."""
    if not is_person_id(person_id):
        fail(f"'{person_id}' is not a person id: find it with `hookhub people show <e-mail>`")
    question = (
        f"Forget {person_id} and every event that names any of their identifiers (an event that "
        "also names someone else is forgotten for them too)?"
    )
    if not yes and not typer.confirm(question):
        raise typer.Exit(1)

    settings = load_settings()

    async def main() -> list[str]:
        event_log = open_event_log(settings.store_url)
        try:
            return [forgotten.event_id for forgotten in await event_log.forget(person_id)]
        finally:
            await event_log.close()

    event_ids = run(main)
    if not event_ids:
        fail(f"no person '{person_id}' in the event log's index")
    log.info("people.forgotten", person_id=person_id, events=len(event_ids))

    async def unpark() -> dict[str, int]:
        async with broker_connection(settings) as connection:
            return await remove_parked(connection, settings, set(event_ids))

    try:
        removed = run(unpark)
    except Exception as error:  # the index forgot them; the lots could not be reached
        log.error("people.parked_not_removed", person_id=person_id, error=type(error).__name__)
        fail(
            f"forgot {person_id}: {len(event_ids)} event(s), but their parked copies could not "
            f"be removed ({type(error).__name__}): remove them with `hookhub dlq` once the "
            "broker answers"
        )
    log.info("people.parked_removed", person_id=person_id, removed=removed)
    lots = ", ".join(f"{count} from {owner}" for owner, count in removed.items())
    parked = sum(removed.values())
    console.print(
        f"forgot {person_id}: {len(event_ids)} event(s); removed {parked} parked "
        f"cop{'y' if parked == 1 else 'ies'}{f' ({lots})' if lots else ''}; the archive drops "
        f"their messages within its retention (HOOKHUB_ARCHIVE_MAX_AGE={settings.archive_max_age})"
    )


def register(target: typer.Typer) -> None:
    target.add_typer(app, name="people")
