"""The event log's storage: one interface (`base.EventLog`), two adapters, one factory.

SQLite (`sqlite:///path`) and MongoDB (`mongodb://...`) implement `EventLog`, in the file or
database the consumers' store uses too; `open_event_log` picks one by the URL. The adapters import
`base`, never this package's `__init__`.
"""

from hookhub_eventlog.store.base import Attempt, EventLog, EventQuery, LoggedEvent, Step

__all__ = ["Attempt", "EventLog", "EventQuery", "LoggedEvent", "Step", "open_event_log"]


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
