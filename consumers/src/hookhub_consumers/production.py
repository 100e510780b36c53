"""production: the workshop's tickets, driven by payments and the workshop itself.

payment.approved     → ticket queued      → production.queued
production.finished  → ticket ready       → order.ready
payment.refunded     → ticket cancelled   → production.cancelled   (the saga's compensation)
"""

from dataclasses import replace
from datetime import UTC, datetime

from hookhub.events import Event

from hookhub_consumers.contract import Context, Outcome, Steps, emitted, event_json
from hookhub_consumers.records import Ticket, TicketStatus
from hookhub_consumers.retries import Permanent, Retry

# event type → (ticket statuses it applies to, the status it leads to, the event it emits).
# A ticket that does not exist yet counts as status None.
TRANSITIONS: dict[str, tuple[set[TicketStatus | None], TicketStatus, str]] = {
    "payment.approved": ({None}, "queued", "production.queued"),
    "production.finished": ({"queued"}, "ready", "order.ready"),
    "payment.refunded": ({None, "queued", "ready"}, "cancelled", "production.cancelled"),
}


async def advance_ticket(event: Event, ctx: Context) -> Outcome:
    """Move the order's ticket one step, as `TRANSITIONS` says for this event type."""
    order_id = event_json(event).get("order_id")
    if not isinstance(order_id, str) or not order_id:
        raise Permanent(f"{event.type}: data has no order_id")
    applies_to, new_status, emits = TRANSITIONS[event.type]
    ticket = await ctx.store.get_ticket(order_id)
    current = ticket.status if ticket else None
    if current not in applies_to:
        if event.type == "production.finished" and current is None:
            # The approval may still be on its way through the payments consumer.
            raise Retry(f"no ticket for order {order_id} yet")
        return Outcome()  # repeated or stale: the ticket is already past this step
    changed = (
        replace(ticket, status=new_status, updated_at=datetime.now(UTC))
        if ticket
        else Ticket(order_id, status=new_status)
    )
    data = {"order_id": order_id}
    if new_status == "cancelled":
        data["reason"] = "payment refunded"
    return Outcome(state=changed, emit=[emitted(event, ctx.consumer, emits, data)])


# One step per binding of the production queue (topology.CONSUMER_BINDINGS, checked by a test).
STEPS: Steps = dict.fromkeys(TRANSITIONS, advance_ticket)
