"""The handler contract: what a consumer's handler is given and what it gives back.

A handler computes; the runtime acts. It is handed the event and a `Context` (settings, the store
to read, the process's HTTP client, its consumer's name) and returns an `Outcome`: the events to
emit and how to save the state change. It raises `retries.Retry` or `retries.Permanent` to fail.
Handlers and the runtime both import this module; neither imports the other.
"""

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import httpx
from hookhub.events import Event
from hookhub.settings import Settings

from hookhub_consumers.retries import Permanent
from hookhub_consumers.store import Marker, Store


@dataclass
class Outcome:
    """What handling an event decided: events to emit, and how to save the state change with
    the marker and the outbox (`save(store, marker, outbox)`, one atomic store write)."""

    emit: list[Event] = field(default_factory=list)
    save: Callable[[Store, Marker, Sequence[str]], Awaitable[bool]] | None = None


@dataclass
class Context:
    settings: Settings
    store: Store
    http: httpx.AsyncClient
    consumer: str


Handler = Callable[[Event, Context], Awaitable[Outcome]]
# A consumer's handler steps, one per topic binding of its work queue (`topology.CONSUMER_BINDINGS`)
Steps = Mapping[str, Handler]


def event_json(event: Event) -> dict:
    """The event's data as a JSON object, or a permanent failure saying why not."""
    try:
        data = json.loads(event.data)
    except ValueError:
        raise Permanent(f"{event.type}: data is not valid JSON") from None
    if not isinstance(data, dict):
        raise Permanent(f"{event.type}: data is not a JSON object")
    return data


def emitted(cause: Event, consumer: str, type: str, data: dict) -> Event:
    """A domain event `consumer` emits because of `cause` (handlers pass `ctx.consumer`)."""
    body = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return cause.follow_up(
        type=type, source=f"/consumers/{consumer}", data=body, subject=data.get("order_id")
    )
