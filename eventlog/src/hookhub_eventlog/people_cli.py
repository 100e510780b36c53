"""`hookhub people show|unlink|forget`: one person across every provider, from the command
line. Tables for people, `--json` for scripts; found through the event log's index."""

import json
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

import typer
from hookhub.commands import console, fail, load_settings, run
from hookhub.logs import log
from rich.table import Table

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
    if not yes and not typer.confirm(f"Forget {person_id} and every event of theirs?"):
        raise typer.Exit(1)

    async def main() -> int:
        event_log = open_event_log(load_settings().store_url)
        try:
            return len(await event_log.forget(person_id))
        finally:
            await event_log.close()

    count = run(main)
    if count == 0:
        fail(f"no person '{person_id}' in the event log's index")
    log.info("people.forgotten", person_id=person_id, events=count)
    max_age = load_settings().archive_max_age
    console.print(
        f"forgot {person_id}: {count} event(s); the archive drops their messages within its "
        f"retention (HOOKHUB_ARCHIVE_MAX_AGE={max_age})"
    )


def register(target: typer.Typer) -> None:
    target.add_typer(app, name="people")
