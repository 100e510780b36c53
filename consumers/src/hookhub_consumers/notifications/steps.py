"""notifications: delivers events to the configured HTTP endpoint as signed outbound webhooks.

Signed with the Standard Webhooks scheme (`webhook-id` = the event id on every attempt, so a
receiver can drop a repeat) and carrying the event's `x-correlation-id`; every attempt is
recorded. 5xx, 408, 429, timeouts and connection errors are retried with backoff (no sooner than
a 429's or 503's `Retry-After`); any other 4xx answer is permanent (the endpoint will not change
its mind), straight to the DLQ. `post` is the one delivery: the shorthand endpoint's step below
and every registry endpoint's worker (`worker`) call it.
"""

import base64
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import standardwebhooks
from hookhub import tracing
from hookhub.addresses import redact
from hookhub.events import Event
from hookhub.logs import log
from hookhub_endpoints.model import SHORTHAND
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


def signed_headers(
    event_id: str, body: bytes, secrets: Sequence[str], now: datetime
) -> dict[str, str]:
    """The Standard Webhooks headers, signed with each secret: during a rotation's overlap
    several `v1,` signatures, space-separated, any of which a receiver may verify."""
    signatures = [
        standardwebhooks.Webhook(secret).sign(event_id, now, body.decode()) for secret in secrets
    ]
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": " ".join(signatures),
    }


@dataclass(frozen=True, slots=True)
class Target:
    """Where one delivery goes: an endpoint's name and URL, the secrets that sign now, the
    POST's time."""

    endpoint: str
    url: str = field(repr=False)
    secrets: tuple[str, ...] = field(repr=False)
    timeout_s: float


def retry_after_s(response: httpx.Response, now: datetime) -> float | None:
    """The wait a 429 or 503 asks for in `Retry-After` (seconds, or an HTTP date); None when
    it asks none (or nonsense)."""
    value = response.headers.get("retry-after", "").strip()
    if response.status_code not in (429, 503) or not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - now).total_seconds())
    except (TypeError, ValueError):
        return None


async def post(
    event: Event,
    target: Target,
    http: httpx.AsyncClient,
    deliveries: Deliveries,
    again: bool = False,
) -> None:
    """POST the event, signed, to `target`, recording the attempt; raises `Retry` (with the
    wait a `Retry-After` asked for) or `Permanent` when the endpoint did not take it. A delivery
    an earlier attempt of which got a 2xx is not POSTed again, unless `again` (a resend)."""
    body = payload(event)
    headers = signed_headers(event.id, body, target.secrets, datetime.now(UTC))
    if event.correlation_id:  # so the receiver's logs join the trail of this event
        headers["x-correlation-id"] = event.correlation_id
    url = target.url
    # Recorded, and compared, without its password: the deliveries are read by every operator.
    shown_url = redact(url)
    # An event is its (source, id): another source's event with this id is another event.
    previous = await deliveries.attempts(event.id, event.source)
    if not again and any(d.delivered and d.is_to(target.endpoint, shown_url) for d in previous):
        # Delivered, but what came after (the ack) failed: a redelivery must not POST again.
        return
    # Recorded before the POST, so a store that refuses writes stops us before the receiver
    # sees anything: each retry would otherwise POST again. An attempt left without an outcome
    # (a crash during the POST) may have arrived: the next attempt sends it again, same id.
    delivery = Delivery(
        event.id,
        event.type,
        shown_url,
        attempt=len(previous) + 1,
        source=event.source,
        endpoint=target.endpoint,
    )
    await deliveries.record(delivery)
    started = time.perf_counter()
    try:
        # A client span whose traceparent the receiver gets, so its own trace joins ours.
        with tracing.requesting("POST", url, headers) as span:
            response = await http.post(url, content=body, headers=headers, timeout=target.timeout_s)
            tracing.responded(span, response.status_code)
    except httpx.HTTPError as exc:
        DELIVERY_SECONDS.labels("failed").observe(time.perf_counter() - started)
        delivery.error = f"{type(exc).__name__}: {exc}".replace(url, shown_url)
        delivery.latency_ms = (time.perf_counter() - started) * 1000
        await deliveries.record(delivery)
        raise Retry(f"notification endpoint unreachable: {delivery.error}") from None
    outcome = "delivered" if response.is_success else "failed"
    DELIVERY_SECONDS.labels(outcome).observe(time.perf_counter() - started)
    delivery.status_code = response.status_code
    delivery.delivered = response.is_success
    delivery.latency_ms = (time.perf_counter() - started) * 1000
    if not response.is_success:
        delivery.error = response.text[:500]
    await deliveries.record(delivery)
    if worth_retrying(response.status_code):
        wait_s = retry_after_s(response, datetime.now(UTC))
        raise Retry(f"notification endpoint answered {response.status_code}", delay_s=wait_s)
    if not response.is_success:
        raise Permanent(
            f"notification endpoint answered {response.status_code}: {response.text[:200]}"
        )


async def deliver(event: Event, ctx: Context) -> Outcome:
    """POST the event, signed, to HOOKHUB_NOTIFY_URL (the shorthand endpoint), recording the
    attempt."""
    url = ctx.settings.notify_url
    if not url:
        log.info("notification.skipped", reason="HOOKHUB_NOTIFY_URL is not set")
        return Outcome()
    if ctx.settings.notify_secret is None:
        raise Retry("HOOKHUB_NOTIFY_SECRET is not set: refusing to send unsigned notifications")
    secret = ctx.settings.notify_secret.get_secret_value()
    target = Target(SHORTHAND, url, (secret,), ctx.settings.notify_timeout_s)
    await post(event, target, ctx.http, ctx.records)
    return Outcome()


# What gets delivered: every event the notifications queue binds (its spec's), each the same way.
STEPS: Steps = dict.fromkeys(SPEC.bindings, deliver)
