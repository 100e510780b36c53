"""The consumers' state: one repository interface (`base.Store`), two adapters, one factory.

SQLite (`sqlite:///path`, the embedded default) and MongoDB (`mongodb://...`) implement `Store`;
`open_store` picks one by the URL. The adapters import `base`, never this package's `__init__`.
The event log (`hookhub_eventlog.store`) keeps its tables in the same file or database.
"""

from hookhub_consumers.store.base import Change, ConcurrentUpdate, Marker, Store

__all__ = ["Change", "ConcurrentUpdate", "Marker", "Store", "open_store"]


def open_store(url: str) -> Store:
    """The adapter for a URL: `sqlite:///relative/or//absolute/path` or `mongodb://...`."""
    if url.startswith("sqlite:"):
        from hookhub_consumers.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from hookhub_consumers.store.mongo import MongoStore

        return MongoStore.from_url(url)
    # The scheme only: the rest of the URL may hold a password.
    raise ValueError(
        f"unsupported HOOKHUB_STORE_URL scheme '{url.partition(':')[0]}': "
        "use sqlite:///path or mongodb://host/db"
    )
