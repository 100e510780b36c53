"""Store schemas, numbered: each component that owns tables (or collections) in the store keeps
an ordered list of migrations, and the store records, per component, the version it was brought
to (`schema_versions`: component, version, applied_at; on MongoDB a collection of that name,
the component as _id).

Migration 1 is the baseline: the schema as it was when versions began to be recorded. A store
an older release made records nothing and gets them all; one at version n gets those after n.
A store that records a version newer than this release knows is refused (`NewerSchema`): this
release would misread what the newer one wrote. The adapters apply the plan (SQLite in the
write transaction that makes the schema, `hookhub.sqlite`); this module only decides it.
"""

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

TABLE = "schema_versions"
M = TypeVar("M")


class NewerSchema(Exception):
    """The store was written by a newer release: this one must not start on it."""

    def __init__(self, component: str, found: int, known: int) -> None:
        self.component, self.found, self.known = component, found, known
        super().__init__(
            f"{component}: store schema is version {found}, newer than this release's {known}: "
            "run the newer release, or restore the store from a backup taken before the upgrade"
        )


@dataclass(frozen=True, slots=True)
class Step(Generic[M]):
    """One migration to apply: the version it brings `component` to."""

    component: str
    version: int
    migration: M


def plan(recorded: Mapping[str, int], migrations: Mapping[str, Sequence[M]]) -> list[Step[M]]:
    """The migrations a store at the `recorded` versions (component → version; absent: none
    yet) needs, in order; NewerSchema, before anything is applied, if any component is ahead."""
    for component, steps in migrations.items():
        if (found := recorded.get(component, 0)) > len(steps):
            raise NewerSchema(component, found, len(steps))
    return [
        Step(component, version, migration)
        for component, steps in migrations.items()
        for version, migration in enumerate(steps, start=1)
        if version > recorded.get(component, 0)
    ]


def baseline(_: object) -> None:
    """Migration 1 of a component whose schema is made by its statements safe to repeat (and
    the columns older files lack): nothing more to do, only the version to record."""


async def migrate_documents(
    database: Any, migrations: Mapping[str, Sequence[Any]]
) -> list[Step[Any]]:
    """The same on a MongoDB database (PyMongo's async API): each migration is called with the
    database (a coroutine function, or `baseline`), then `schema_versions` records its version
    (the component as _id) and the time. MongoDB gives no transaction here, so two processes
    opening an old database at once may both apply a step: a migration must be safe to repeat."""
    versions = database[TABLE]
    recorded = {d["_id"]: d["version"] for d in await versions.find({}).to_list(None)}
    steps = plan(recorded, migrations)
    for step in steps:
        if inspect.isawaitable(done := step.migration(database)):
            await done
        await versions.update_one(
            {"_id": step.component},
            {"$max": {"version": step.version}, "$set": {"applied_at": datetime.now(UTC)}},
            upsert=True,
        )
    return steps
