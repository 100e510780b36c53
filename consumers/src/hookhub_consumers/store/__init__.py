"""The consumers' state: the runtime's store (`base.Store`: markers, outbox, group commit, atomic
saves), two adapters, one factory; each consumer's records are in a repository of its own
package, named in its spec and loaded here.

SQLite (`sqlite:///path`, the embedded default) and MongoDB (`mongodb://...`) implement `Store`;
`open_store` picks one by the URL. The adapters import `base`, never this package's `__init__`.
The event log (`hookhub_eventlog.store`) keeps its tables in the same file or database.
"""

import sqlite3
from collections.abc import Sequence
from contextlib import closing

from hookhub import sqlite as sqlite_file
from hookhub.schema import TABLE
from hookhub.specs import ConsumerSpec
from hookhub_eventlog.store import migrate_event_log

from hookhub_consumers.store.base import Change, ConcurrentUpdate, Marker, Store, load_repositories

__all__ = [
    "Change",
    "ConcurrentUpdate",
    "Marker",
    "Store",
    "latest_versions",
    "migrate",
    "open_store",
    "recorded_versions",
]


def open_store(url: str, specs: Sequence[ConsumerSpec] | None = None) -> Store:
    """The adapter for a URL (`sqlite:///relative/or//absolute/path` or `mongodb://...`), with
    the repositories of the consumers of `specs` (of every installed consumer when None)."""
    if url.startswith("sqlite:"):
        from hookhub_consumers.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, load_repositories("sqlite", specs))
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from hookhub_consumers.store.mongo import MongoStore

        return MongoStore.from_url(url, load_repositories("mongodb", specs))
    # The scheme only: the rest of the URL may hold a password.
    raise ValueError(
        f"unsupported HOOKHUB_STORE_URL scheme '{url.partition(':')[0]}': "
        "use sqlite:///path or mongodb://host/db"
    )


async def migrate(url: str, specs: Sequence[ConsumerSpec] | None = None) -> None:
    """Make the store's tables (those of the consumers of `specs`, every installed one's when
    None) and the event log's, and apply the migrations they lack, now: what a consumer does
    before it starts, so that a store a newer release made (`hookhub.schema.NewerSchema`) stops
    it at once instead of failing each message it takes."""
    store = open_store(url, specs)
    try:
        await store.open()
    finally:
        await store.close()
    await migrate_event_log(url)


def latest_versions(url: str, specs: Sequence[ConsumerSpec] | None = None) -> dict[str, int]:
    """component → the schema version this release brings it to, on the URL's adapter: the
    runtime's, each consumer's of `specs` (every installed one's when None), the event log's."""
    if url.startswith("sqlite:"):
        from hookhub_eventlog.store import sqlite as event_log

        from hookhub_consumers.store.sqlite import migrations_of

        components = dict(migrations_of(load_repositories("sqlite", specs)))
    else:
        from hookhub_eventlog.store import mongo as event_log

        from hookhub_consumers.store import mongo

        classes = load_repositories("mongodb", specs)
        components = {
            mongo.COMPONENT: mongo.MIGRATIONS,
            **{name: (None, *cls.migrations) for name, cls in classes.items()},
        }
    components[event_log.COMPONENT] = event_log.MIGRATIONS
    return {component: len(steps) for component, steps in components.items()}


async def recorded_versions(url: str) -> dict[str, int]:
    """component → the schema version the store records, read without changing anything."""
    if url.startswith("sqlite:"):
        path = sqlite_file.path_of(url)
        if not path.exists():
            return {}
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            try:
                return sqlite_file.recorded_versions(db)
            except sqlite3.OperationalError:  # no schema_versions: a release from before them
                return {}
    from pymongo import AsyncMongoClient

    from hookhub_consumers.store.mongo import DEFAULT_DATABASE

    client: AsyncMongoClient = AsyncMongoClient(url)
    try:
        versions = client.get_default_database(DEFAULT_DATABASE)[TABLE]
        return {d["_id"]: d["version"] for d in await versions.find({}).to_list(None)}
    finally:
        await client.close()
