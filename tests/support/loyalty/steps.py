"""loyalty: points for every paid order.

payment.approved → the customer's account earns a point per whole unit paid → loyalty.points_earned
"""

from dataclasses import replace
from datetime import UTC, datetime

from hookhub.events import Event
from hookhub_consumers.handler import Context, Outcome, Steps, emitted, event_json
from hookhub_consumers.retries import Permanent

from tests.support.loyalty.records import Account, Accounts

MINOR_UNITS_PER_POINT = 100


async def earn(event: Event, ctx: Context) -> Outcome:
    """Add the payment's points to its customer's account, and say so."""
    data = event_json(event)
    customer_id = (data.get("customer") or {}).get("id")
    amount = data.get("amount")
    if not isinstance(customer_id, str) or not isinstance(amount, int):
        raise Permanent(f"{event.type}: data has no customer.id or no amount")
    accounts: Accounts = ctx.records
    account = await accounts.get(customer_id) or Account(customer_id)
    earned = amount // MINOR_UNITS_PER_POINT
    changed = replace(account, points=account.points + earned, updated_at=datetime.now(UTC))
    said = {
        "order_id": data.get("order_id"),
        "customer_id": customer_id,
        "earned": earned,
        "points": changed.points,
    }
    return Outcome(
        state=changed, emit=[emitted(event, ctx.consumer, "loyalty.points_earned", said)]
    )


# One step per binding of its work queue (and per deadline, had it any).
STEPS: Steps = {"payment.approved": earn}
