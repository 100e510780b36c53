"""Sending deliveries to one endpoint again, by hand: one event (read back from the event log's
archive by id), or every event whose delivery failed since a time. The copy goes to the
endpoint's own queue with the event's id, so the receiver sees the same `webhook-id`; it is sent
even if an earlier attempt got a 2xx (that is what a resend asks for). Each resend is an entry
in the endpoint's audit: who resent which events."""

from datetime import datetime

import aio_pika
import aiormq
from hookhub import failures, topology
from hookhub.logs import log
from hookhub.settings import Settings
from hookhub_eventlog.archive import archived_message
from hookhub_eventlog.people import ForgottenEvent
from hookhub_eventlog.store import EventQuery, open_event_log

from hookhub_endpoints.attempts import attempts_to
from hookhub_endpoints.registry import open_registry

# On a resent copy: who asked. The delivery worker POSTs such a copy even after a 2xx.
RESEND_HEADER = f"{failures.PREFIX}resend"
AUDIT_IDS_SHOWN = 5  # of the events a resend of failed deliveries sent: the audit names these


class NotItsType(ValueError):
    """The event is of a type the endpoint does not take: resending it would deliver what the
    endpoint never subscribed to (another team's data, perhaps)."""


async def _copy_of(
    settings: Settings, connection, event_id: str, source: str | None, types: tuple[str, ...]
):
    event_log = open_event_log(settings.store_url)
    try:
        forgotten = [f for f in await event_log.forgotten(event_id) if source in (None, f.source)]
        found = await event_log.find_events(EventQuery(id=event_id, source=source, limit=2))
    finally:
        await event_log.close()
    if forgotten and not found:
        raise ForgottenEvent(forgotten[0], settings.archive_max_age)
    if not found:
        raise LookupError(f"the event log has no event '{event_id}'")
    if len(found) > 1 and source is None:
        raise LookupError(f"several sources have an event '{event_id}': say which with --source")
    if not any(topology.binding_matches(pattern, found[0].type) for pattern in types):
        raise NotItsType(
            f"event '{event_id}' is a {found[0].type}, which this endpoint does not take "
            f"(its types: {', '.join(types)}): not resent"
        )
    message = await archived_message(connection, found[0].position)
    if message is None:
        raise LookupError(f"the archive no longer holds event '{event_id}' (past its retention)")
    return message


async def _resend(
    settings: Settings,
    endpoint: str,
    types: tuple[str, ...],
    ids: list[tuple[str, str | None]],
    actor: str,
) -> int:
    queue = topology.endpoint_queue(endpoint)
    async with await aio_pika.connect(
        settings.amqp_url, timeout=settings.connect_timeout_s
    ) as connection:
        channel = await connection.channel(publisher_confirms=True)
        for event_id, source in ids:
            message = await _copy_of(settings, connection, event_id, source, types)
            copy = failures.replay_copy(message)
            copy.headers = {**(copy.headers or {}), RESEND_HEADER: actor}
            confirmed = await channel.default_exchange.publish(copy, queue, mandatory=True)
            if not isinstance(confirmed, aiormq.spec.Basic.Ack):
                raise LookupError(f"the broker refused the copy of '{event_id}' for {queue}")
            log.info("endpoint.resent", endpoint=endpoint, event_id=event_id, actor=actor)
    return len(ids)


async def resend_one(
    settings: Settings, endpoint: str, event_id: str, actor: str, source: str | None = None
) -> None:
    """Queue the event `event_id` (of `source`, when ids are shared) for `endpoint` again;
    `LookupError` if the archive no longer holds it, `UnknownEndpoint` if no such endpoint."""
    registry = open_registry(settings)
    try:
        types = (await registry.get(endpoint)).types
        await _resend(settings, endpoint, types, [(event_id, source)], actor)
        shown = event_id if source is None else f"{event_id} of {source}"
        await registry.note(endpoint, actor, f"resend {shown}")
    finally:
        await registry.close()


async def resend_failed(settings: Settings, endpoint: str, since: datetime, actor: str) -> int:
    """Queue again every event whose attempts to `endpoint` since `since` all failed (none got
    a 2xx); returns how many."""
    registry = open_registry(settings)
    try:
        found = await registry.get(endpoint)
        url, types = found.url, found.types
        delivered, failed = set(), {}
        for attempt in await attempts_to(settings, endpoint, url, since):
            key = (attempt.event_id, attempt.source)
            if attempt.delivered:
                delivered.add(key)
            else:
                failed[key] = True
        ids = [key for key in failed if key not in delivered]
        count = await _resend(settings, endpoint, types, ids, actor) if ids else 0
        shown = ", ".join(event_id for event_id, _ in ids[:AUDIT_IDS_SHOWN])
        more = f" and {len(ids) - AUDIT_IDS_SHOWN} more" if len(ids) > AUDIT_IDS_SHOWN else ""
        since_text = since.isoformat(timespec="seconds")
        what = f": {shown}{more}" if ids else ""
        await registry.note(endpoint, actor, f"resend {count} failed since {since_text}{what}")
        return count
    finally:
        await registry.close()
