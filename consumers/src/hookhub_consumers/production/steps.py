"""production: the workshop's tickets, driven by payments and the workshop itself.

payment.approved      → ticket queued (its deadline set) → production.queued
production.finished   → ticket ready                     → order.ready
payment.refunded      → ticket cancelled                 → production.cancelled   (compensation)
payment.charged_back  → ticket cancelled                 → production.cancelled   (compensation)
deadline.production   → a ticket still queued is overdue → production.overdue
"""

from dataclasses import replace
from datetime import UTC, datetime

from hookhub.events import Event

from hookhub_consumers.handler import Context, Outcome, Steps, deadline, emitted, order_id_of
from hookhub_consumers.production.records import Ticket, Tickets, TicketStatus
from hookhub_consumers.production.spec import SPEC
from hookhub_consumers.retries import Retry

# event type → (ticket statuses it applies to, the status it leads to, the event it emits).
# A ticket that does not exist yet counts as status None. A partial refund is not here: the
# customer keeps the goods, so the ticket goes on.
TRANSITIONS: dict[str, tuple[set[TicketStatus | None], TicketStatus, str]] = {
    "payment.approved": ({None}, "queued", "production.queued"),
    "production.finished": ({"queued", "overdue"}, "ready", "order.ready"),
    "payment.refunded": ({None, "queued", "overdue", "ready"}, "cancelled", "production.cancelled"),
    "payment.charged_back": (
        {None, "queued", "overdue", "ready"},
        "cancelled",
        "production.cancelled",
    ),
    "deadline.production": ({"queued"}, "overdue", "production.overdue"),
}
# Why a ticket was cancelled, as production.cancelled tells it.
CANCELLED_BECAUSE = {
    "payment.refunded": "payment refunded",
    "payment.charged_back": "payment charged back",
}
# Entering a status sets its deadline (the setting holding its delay is the spec's).
DEADLINES: dict[TicketStatus, str] = {"queued": "deadline.production"}


async def advance_ticket(event: Event, ctx: Context) -> Outcome:
    """Move the order's ticket one step, as `TRANSITIONS` says for this event type."""
    order_id = order_id_of(event)
    applies_to, new_status, emits = TRANSITIONS[event.type]
    tickets: Tickets = ctx.records
    ticket = await tickets.get(order_id)
    current = ticket.status if ticket else None
    if current not in applies_to:
        if event.type == "production.finished" and current is None:
            # The approval may still be on its way through the payments consumer.
            raise Retry(f"no ticket for order {order_id} yet")
        return Outcome()  # repeated, stale, or a deadline after the ticket moved on
    changed = (
        replace(ticket, status=new_status, updated_at=datetime.now(UTC))
        if ticket
        else Ticket(order_id, status=new_status)
    )
    data = {"order_id": order_id}
    if new_status == "cancelled":
        data["reason"] = CANCELLED_BECAUSE[event.type]
    emit = [emitted(event, ctx.consumer, emits, data)]
    if new_status in DEADLINES:
        deadline_type = DEADLINES[new_status]
        after_s = getattr(ctx.settings, SPEC.deadline_settings[deadline_type])
        emit.append(deadline(event, ctx.consumer, deadline_type, order_id, after_s))
    return Outcome(state=changed, emit=emit)


# One step per binding of the production queue and per deadline it sets (its spec's, checked when
# the consumer starts).
STEPS: Steps = dict.fromkeys(TRANSITIONS, advance_ticket)
