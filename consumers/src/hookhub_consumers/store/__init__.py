"""The consumers' state: the runtime's store (`base.Store`: markers, outbox, group commit, atomic
saves), two adapters, one factory; each consumer's records are in a repository of its own
package, named in its spec and loaded here.

SQLite (`sqlite:///path`, the embedded default) and MongoDB (`mongodb://...`) implement `Store`;
`open_store` picks one by the URL. The adapters import `base`, never this package's `__init__`.
The event log (`hookhub_eventlog.store`) keeps its tables in the same file or database.
"""

from collections.abc import Sequence

from hookhub.specs import ConsumerSpec
from hookhub_eventlog.store import migrate_event_log

from hookhub_consumers.store.base import Change, ConcurrentUpdate, Marker, Store, load_repositories

__all__ = ["Change", "ConcurrentUpdate", "Marker", "Store", "migrate", "open_store"]


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
