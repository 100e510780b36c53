"""The event log: every event the exchange routed, kept by the broker, indexed in the store.

The broker keeps the messages: `hookhub.archive`, a stream queue bound to `hookhub.events` with
`#`, holds each event byte-for-byte with its headers for the configured retention, readable from
any position (offset). Nothing on the ingest path waits for it: the broker's routing feeds it.

- `archive`: reading the stream, from a position, a time or its end.
- `indexer`: `hookhub index`'s loop, the stream into the index in batches, off every consumer's
  path.
- `store/`: the index and the journeys' steps (`EventLog`, on SQLite or MongoDB), and a
  read-only view of what the consumers keep about an event (markers, delivery attempts).
- `journey`: what became of an event, put together when it is asked for.
- `replay`: archived events put back on consumers' work queues.
- `cli`: `hookhub events list|show|journey|replay`.
"""
