"""The production consumer's records: each paid order's ticket, and how its steps read them."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from hookhub_consumers.store import Store

TicketStatus = Literal["queued", "overdue", "ready", "cancelled"]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Ticket:
    """A production ticket, kept by the production consumer."""

    order_id: str
    status: TicketStatus = "queued"
    version: int = 0  # managed by the store: the version this copy was read at
    updated_at: datetime = field(default_factory=_now)


class Tickets(Protocol):
    """The tickets, as the production steps read them (`ctx.records`); a ticket's changes are
    saved by the runtime, with the event's marker (`Outcome.state`)."""

    async def get(self, order_id: str) -> Ticket | None: ...


def tickets(store: Store) -> Tickets:
    """The tickets in a store opened with the production consumer's spec (tools and tests)."""
    return store.repository("production")
