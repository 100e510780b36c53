"""The event log's storage: one interface (`base.EventLog`), two adapters, one factory.

SQLite (`sqlite:///path`) and MongoDB (`mongodb://...`) implement `EventLog`, in the file or
database the consumers' store uses too; `open_event_log` picks one by the URL. The adapters import
`base`, never this package's `__init__`.
"""

from hookhub_eventlog.store.base import Attempt, EventLog, EventQuery, LoggedEvent, Step

__all__ = [
    "Attempt",
    "EventLog",
    "EventQuery",
    "LoggedEvent",
    "Step",
    "migrate_event_log",
    "open_event_log",
]


def open_event_log(url: str) -> EventLog:
    """The adapter for a store URL: `sqlite:///relative/or//absolute/path` or `mongodb://...`."""
    if url.startswith("sqlite:"):
        from hookhub_eventlog.store.sqlite import SQLiteEventLog

        return SQLiteEventLog.from_url(url)
    if url.startswith(("mongodb://", "mongodb+srv://")):
        from hookhub_eventlog.store.mongo import MongoEventLog

        return MongoEventLog.from_url(url)
    # The scheme only: the rest of the URL may hold a password.
    raise ValueError(
        f"unsupported HOOKHUB_STORE_URL scheme '{url.partition(':')[0]}': "
        "use sqlite:///path or mongodb://host/db"
    )


async def migrate_event_log(url: str) -> None:
    """Make the event log's tables and apply the migrations they lack, now: what a service
    does before it starts, so that a store a newer release made (`hookhub.schema.NewerSchema`)
    stops it at once instead of failing its requests one by one."""
    event_log = open_event_log(url)
    try:
        await event_log.open()
    finally:
        await event_log.close()
