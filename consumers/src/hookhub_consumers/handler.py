"""The handler contract: what a consumer's handler is given and what it gives back.

A handler computes; the runtime acts. It is handed the event and a `Context` (settings, the store
to read, the process's HTTP client, its consumer's name) and returns an `Outcome`: the events to
emit and how to save the state change; among the events, deadlines (`deadline`), which come back
to the same consumer when due. It raises `Retry` for a failure that may pass (`Retry(...,
delay_s=60)`: not to be tried again sooner) or `Permanent` for one that cannot: the vocabulary of
`retries`, where the whole retry policy lives, exported here with the rest of the contract.
Handlers and the runtime both import this module; neither imports the other.
"""

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from hookhub.events import Event
from hookhub.settings import Settings

from hookhub_consumers.retries import Permanent, Retry, worth_retrying
from hookhub_consumers.store import Store

__all__ = [
    "Context",
    "Handler",
    "Outcome",
    "Permanent",
    "Retry",
    "Steps",
    "deadline",
    "emitted",
    "event_json",
    "order_id_of",
    "worth_retrying",
]


@dataclass
class Outcome:
    """What handling an event decided: a record's new state (read through `ctx.records`,
    changed; none when nothing changes) and the events to emit. The runtime saves the state,
    through the repository registered for its record type, with the event's marker and the
    events (its outbox) in one atomic write, then publishes them."""

    state: Any | None = None
    emit: list[Event] = field(default_factory=list)
    # Called once the state is saved, never when it was not (a repeat, a lost race): the place
    # for an effect outside the store that must count each decision once, such as a metric.
    on_saved: Callable[[], None] | None = None


@dataclass
class Context:
    settings: Settings
    store: Store
    http: httpx.AsyncClient
    consumer: str

    @property
    def records(self) -> Any:
        """Its consumer's repository (its spec's `repositories`): the reads of its records."""
        return self.store.repository(self.consumer)


Handler = Callable[[Event, Context], Awaitable[Outcome]]
# A consumer's handler steps, one per binding of its work queue and per deadline (its spec's)
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


def order_id_of(event: Event) -> str:
    """The `order_id` of the event's data, or a permanent failure saying it has none."""
    order_id = event_json(event).get("order_id")
    if not isinstance(order_id, str) or not order_id:
        raise Permanent(f"{event.type}: data has no order_id")
    return order_id


def emitted(cause: Event, consumer: str, type: str, data: dict) -> Event:
    """A domain event `consumer` emits because of `cause` (handlers pass `ctx.consumer`)."""
    body = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return cause.follow_up(
        type=type, source=f"/consumers/{consumer}", data=body, subject=data.get("order_id")
    )


def deadline(cause: Event, consumer: str, type: str, order_id: str, after_s: float) -> Event:
    """A deadline `consumer` sets itself because of `cause`: an event of `type` about the order,
    handed back to the consumer's step for `type` once `after_s` have passed. It waits in the
    broker (`topology.deadline_queue`), so it survives restarts of every process."""
    return replace(emitted(cause, consumer, type, {"order_id": order_id}), delay_s=after_s)
