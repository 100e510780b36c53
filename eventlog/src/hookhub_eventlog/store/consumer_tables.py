"""What the event log reads of the consumers' storage, and never writes.

An event's journey says which consumers processed it (the runtime's processed-markers) and how
its notifications went (the notifications consumer's delivery attempts). Those records are the
consumers', written with their state changes; the event log only reads them, from the same file
or database. This module is the one place for the shape both sides rely on: the consumers' store
takes these names from here, and its contract suite checks that the event log reads what it
wrote, on every adapter.

SQLite: `markers (consumer, event_key, processed_at)`; `deliveries (id, event_id, source, url,
delivered, status_code, error, at)` in a file of its own next to the store (`deliveries_file`:
an attempt's outcome is written by its own writer, never behind the other consumers' writes;
a store an older release wrote also keeps the attempts it recorded in its own `deliveries`
table, read beside the new file's), `id` growing in the order recorded, `source` the event's
(NULL on rows an older release wrote), `url` with any password redacted (`user:***@`; rows an
older release wrote may hold one: the event log redacts as it reads).

MongoDB: `markers` documents `{_id: marker_key, consumer, event_key, event_id, processed_at}`,
every marker (one saved with a state change is written in the same transaction; store migration
2 copied those older releases kept only in their record's array `applied`), indexed by
`event_key` and by `event_id`; `deliveries` documents `{event_id, source, url, delivered,
status_code, error, at}` (no `source` on an older release's). The collections that hold records
are named, as the consumers' store first writes, in `aggregates`: one document `{_id: collection
name}` each.
"""

from pathlib import Path

MARKERS = "markers"
# The payments consumer's orders: SQLite table / MongoDB collection `orders`, one row a
# document an order, keyed by its order id (`order_id`; MongoDB: `_id`), with `status`,
# `amount`, `currency`, `provider`, `payment_id`, `paid_amount`, `paid_currency`,
# `refunded_amount` and `updated_at` (hookhub_consumers.payments.records.Order). The order
# view reads them (`PAYMENT_FIELDS`); no other column is the event log's business.
ORDERS = "orders"
PAYMENT_FIELDS = (
    "status",
    "amount",
    "currency",
    "provider",
    "payment_id",
    "paid_amount",
    "paid_currency",
    "refunded_amount",
    "updated_at",
)
DELIVERIES = "deliveries"


def deliveries_file(store: Path) -> Path:
    """The SQLite file of the delivery attempts, next to the store's: `hookhub.db` →
    `hookhub-deliveries.db`."""
    return store.with_name(f"{store.stem}-{DELIVERIES}{store.suffix or '.db'}")


# MongoDB: the collection naming (by _id) the collections whose documents carry markers in
# APPLIED: the consumers' records.
AGGREGATES = "aggregates"
APPLIED = "applied"


def event_key(source: str, event_id: str) -> str:
    """The key of one event in the markers: its CloudEvents (source, id), unique per event."""
    return f"{source}#{event_id}"


# SQLite: a marker's event id, the part of its key after the source; an index on it (the store's
# migration 2) finds the markers of an event whose source is not known (one the index lacks).
MARKER_EVENT_ID = "substr(event_key, instr(event_key, '#') + 1)"


def marker_key(consumer: str, key: str) -> str:
    """A marker's key in MongoDB. Consumer names never hold "|", so it reads back unambiguously."""
    return f"{consumer}|{key}"
