"""notifications: delivers events to the configured HTTP endpoint as signed outbound webhooks.

Signed with the Standard Webhooks scheme (`webhook-id` = the event id, so a receiver can drop a
repeat) and carrying the event's `x-correlation-id`; every attempt is recorded. 5xx, 408, 429,
timeouts and connection errors are retried with backoff; any other 4xx answer is permanent (the
endpoint will not change its mind), straight to the DLQ.
"""

import base64
import json
import time
from datetime import UTC, datetime

import httpx
import standardwebhooks
from hookhub import tracing
from hookhub.addresses import redact
from hookhub.events import Event
from hookhub.logs import log
from prometheus_client import Histogram

from hookhub_consumers.handler import Context, Outcome, Steps
from hookhub_consumers.notifications.records import Deliveries, Delivery
from hookhub_consumers.notifications.spec import SPEC
from hookhub_consumers.retries import Permanent, Retry, worth_retrying

DELIVERY_SECONDS = Histogram(
    "hookhub_notification_delivery_seconds",
    "Time to POST a notification and get the endpoint's answer, by outcome",
    ["outcome"],
)


def payload(event: Event) -> bytes:
    """The Standard Webhooks payload: type, timestamp and the event's data (JSON as JSON, text as
    a string, anything else as `data_base64`)."""
    body: dict[str, object] = {
        "type": event.type,
        "timestamp": event.time.isoformat(),
        "id": event.id,
    }
    try:
        body["data"] = json.loads(event.data)
    except ValueError:
        try:
            body["data"] = event.data.decode()
        except UnicodeDecodeError:
            body["data_base64"] = base64.b64encode(event.data).decode()
    return json.dumps(body, separators=(",", ":")).encode()


def signed_headers(event_id: str, body: bytes, secret: str, now: datetime) -> dict[str, str]:
    signature = standardwebhooks.Webhook(secret).sign(event_id, now, body.decode())
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


async def deliver(event: Event, ctx: Context) -> Outcome:
    """POST the event, signed, to the configured endpoint, recording the attempt."""
    url = ctx.settings.notify_url
    if not url:
        log.info("notification.skipped", reason="HOOKHUB_NOTIFY_URL is not set")
        return Outcome()
    if ctx.settings.notify_secret is None:
        raise Retry("HOOKHUB_NOTIFY_SECRET is not set: refusing to send unsigned notifications")
    body = payload(event)
    headers = signed_headers(
        event.id, body, ctx.settings.notify_secret.get_secret_value(), datetime.now(UTC)
    )
    if event.correlation_id:  # so the receiver's logs join the trail of this event
        headers["x-correlation-id"] = event.correlation_id
    deliveries: Deliveries = ctx.records
    # Recorded, and compared, without its password: the deliveries are read by every operator.
    shown_url = redact(url)
    # An event is its (source, id): another source's event with this id is another event.
    previous = await deliveries.attempts(event.id, event.source)
    if any(d.delivered and d.url == shown_url for d in previous):
        # Delivered, but what came after (the marker) failed: a redelivery must not POST again.
        return Outcome()
    # Recorded before the POST, so a store that refuses writes stops us before the receiver
    # sees anything: each retry would otherwise POST again. An attempt left without an outcome
    # (a crash during the POST) may have arrived: the next attempt sends it again, same id.
    delivery = Delivery(
        event.id, event.type, shown_url, attempt=len(previous) + 1, source=event.source
    )
    await deliveries.record(delivery)
    started = time.perf_counter()
    try:
        # A client span whose traceparent the receiver gets, so its own trace joins ours.
        with tracing.requesting("POST", url, headers) as span:
            response = await ctx.http.post(url, content=body, headers=headers)
            tracing.responded(span, response.status_code)
    except httpx.HTTPError as exc:
        DELIVERY_SECONDS.labels("failed").observe(time.perf_counter() - started)
        delivery.error = f"{type(exc).__name__}: {exc}".replace(url, shown_url)
        await deliveries.record(delivery)
        raise Retry(f"notification endpoint unreachable: {delivery.error}") from None
    outcome = "delivered" if response.is_success else "failed"
    DELIVERY_SECONDS.labels(outcome).observe(time.perf_counter() - started)
    delivery.status_code = response.status_code
    delivery.delivered = response.is_success
    if not response.is_success:
        delivery.error = response.text[:500]
    await deliveries.record(delivery)
    if worth_retrying(response.status_code):
        raise Retry(f"notification endpoint answered {response.status_code}")
    if not response.is_success:
        raise Permanent(
            f"notification endpoint answered {response.status_code}: {response.text[:200]}"
        )
    return Outcome()


# What gets delivered: every event the notifications queue binds (its spec's), each the same way.
STEPS: Steps = dict.fromkeys(SPEC.bindings, deliver)
