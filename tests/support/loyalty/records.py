"""The loyalty consumer's records: one account of points per customer, and how its steps read
them."""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from hookhub_consumers.store import Store


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Account:
    """A customer's points."""

    customer_id: str
    points: int = 0
    version: int = 0  # managed by the store: the version this copy was read at
    updated_at: datetime = field(default_factory=_now)


class Accounts(Protocol):
    """The accounts, as the loyalty steps read them (`ctx.records`); an account's changes are
    saved by the runtime, with the event's marker (`Outcome.state`)."""

    async def get(self, customer_id: str) -> Account | None: ...


def accounts(store: Store) -> Accounts:
    """The accounts in a store opened with the loyalty consumer's spec (tools and tests)."""
    return store.repository("loyalty")
