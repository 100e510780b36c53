"""Sending deliveries to one endpoint again, by hand: one event (read back from the event log's
archive by id), or every event whose delivery failed since a time. The copy goes to the
endpoint's own queue with the event's id, so the receiver sees the same `webhook-id`; it is sent
even if an earlier attempt got a 2xx (that is what a resend asks for)."""

from datetime import datetime

from hookhub.settings import Settings


async def resend_one(
    settings: Settings, endpoint: str, event_id: str, actor: str, source: str | None = None
) -> None:
    """Queue the event `event_id` (of `source`, when ids are shared) for `endpoint` again;
    `LookupError` if the archive no longer holds it, `UnknownEndpoint` if no such endpoint."""
    raise NotImplementedError  # next commit


async def resend_failed(settings: Settings, endpoint: str, since: datetime, actor: str) -> int:
    """Queue again every event whose newest attempt to `endpoint` since `since` failed or was
    parked; returns how many."""
    raise NotImplementedError  # next commit
