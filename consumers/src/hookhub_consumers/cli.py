"""`hookhub consume NAME` runs one consumer, `hookhub index` the event log's indexer, `hookhub
store migrate` brings the store's schema up to date (all registered with the `hookhub` command
as plugins)."""

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from hookhub import schema, specs
from hookhub.commands import (
    RUN_PANEL,
    ConsumerName,
    console,
    fail,
    known_consumer,
    load_settings,
    moment,
    run,
)
from hookhub_eventlog.indexer import run_indexer
from hookhub_eventlog.store import migrate_event_log

from hookhub_consumers.notifications.spec import SPEC as NOTIFICATIONS
from hookhub_consumers.notifications.worker import run_endpoints
from hookhub_consumers.probes import ProbesNotServed
from hookhub_consumers.runtime import run_consumers, stop_on_signals
from hookhub_consumers.store import latest_versions, migrate, recorded_versions


def consume(
    name: ConsumerName,
    probe_port: Annotated[
        int, typer.Option(envvar="HOOKHUB_PROBE_PORT", help="Port for /livez, /readyz, /metrics")
    ] = 9100,
    since: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Backfill first: process the archived events of this consumer's bindings from "
            "this time on (ISO 8601, e.g. 2026-11-01 or 2026-11-01T12:00+01:00; UTC unless "
            "given), then go on with its live queue. One process only.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run one consumer; run more processes of it to scale out (competing consumers)."""
    known_consumer(name)
    settings = load_settings()
    backfill_from = None if since is None else moment(since, "--from")
    if backfill_from is not None:
        if backfill_from > datetime.now(UTC):
            fail(f"--from '{since}' is in the future: there is nothing to backfill yet")
        if backfill_from.timestamp() < 0:  # an AMQP timestamp counts seconds from 1970
            fail(f"--from '{since}' is before 1970: give 1970-01-01 for the whole archive")
        if not settings.archive_enabled:
            fail("--from reads the archive, and HOOKHUB_ARCHIVE_ENABLED is off: nothing was kept")

    async def main() -> None:
        await migrate(settings.store_url, [specs.by_name(name)])  # a newer store stops it here
        stop = stop_on_signals()
        # The notifications consumer delivers the shorthand endpoint (HOOKHUB_NOTIFY_URL) on its
        # own queue, and beside it every registry endpoint on theirs.
        beside = [run_endpoints(settings, stop)] if name == NOTIFICATIONS.name else []
        try:
            await asyncio.gather(
                run_consumers(
                    settings,
                    [specs.by_name(name)],
                    stop,
                    probe_port=probe_port,
                    backfill_from=backfill_from,
                ),
                *beside,
            )
        except ProbesNotServed as error:
            fail(f"{error}: is another process using it? Choose one with --probe-port")

    run(main)


def index() -> None:
    """Index the event log: read the archive stream into the store, in batches (one process)."""
    settings = load_settings()

    async def main() -> None:
        await migrate_event_log(settings.store_url)  # a newer store stops it here
        await run_indexer(settings, stop_on_signals())

    run(main)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=RUN_PANEL)(consume)


def register_index(app: typer.Typer) -> None:
    app.command(rich_help_panel=RUN_PANEL)(index)


store_app = typer.Typer(help="The store's schema (HOOKHUB_STORE_URL).", no_args_is_help=True)


@store_app.command("migrate")
def store_migrate(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be applied; change nothing")
    ] = False,
) -> None:
    """Bring the store's schema to this release's: each component's numbered migrations that
    the store lacks, recorded in `schema_versions` (what every service does when it starts).
    Refuses a store a newer release made."""
    url = load_settings().store_url
    before = run(lambda: recorded_versions(url))
    latest = latest_versions(url)
    steps = schema.plan(before, {c: range(n) for c, n in latest.items()})  # NewerSchema first
    if dry_run:
        for step in steps:
            console.print(f"would apply {step.component} migration {step.version}")
        console.print(f"{len(steps)} migration(s) to apply" if steps else "up to date")
        return
    run(lambda: migrate(url))
    after = run(lambda: recorded_versions(url))
    for component in sorted(after):
        if after[component] != before.get(component, 0):
            console.print(f"{component}: {before.get(component, 0)} → {after[component]}")
    changed = [c for c in after if after[c] != before.get(c, 0)]
    console.print(f"applied migrations to {len(changed)} component(s)" if changed else "up to date")


def register_store(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
