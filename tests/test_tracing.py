"""One trace across the queue: hub-api and the three consumers in this process, tracing into
memory, the real broker; events sent over HTTP as a payment provider and a storefront would.

And the same as deployed: `hookhub api` and `hookhub consume payments` as processes, exporting
over OTLP/HTTP to a collector the test runs, their log lines carrying the trace id.
"""

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from hookhub import specs
from hookhub.events import EXCHANGE
from hookhub.settings import Settings
from hookhub_consumers.runtime import run_consumers
from hub_api.cli import uvicorn_server
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import SecretStr

from tests.support.broker import fresh_vhost
from tests.support.net import free_port
from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.otlp_collector import OtlpCollector
from tests.support.processes import HubProcess, running_consumer, start_api, wait_http_ready
from tests.support.senders import create_order, new_order_id, post_stripe, stripe_event
from tests.support.settings import GATEWAY_SECRET, PROVIDER_SECRETS, hub_env
from tests.support.spans import traced
from tests.support.waiting import eventually

NOTIFY_SECRET = "whsec_" + base64.b64encode(b"notify-secret-for-the-tests").decode()
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
THROUGH_GATEWAY = {"x-hookhub-gateway-secret": GATEWAY_SECRET, "x-consumer-username": "storefront"}


@dataclass
class TracedHub:
    client: httpx.AsyncClient
    spans: InMemorySpanExporter
    endpoint: NotifyEndpoint

    def trace(self, trace_id: int) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.context.trace_id == trace_id]

    async def trace_of(self, event_id: str, until: int) -> list[ReadableSpan]:
        """The trace of the event hub-api accepted as `event_id`, once it holds `until` spans."""

        async def complete() -> list[ReadableSpan] | None:
            published = [s for s in self.spans.get_finished_spans() if _is_publish_of(s, event_id)]
            spans = self.trace(published[0].context.trace_id) if published else []
            return spans if len(spans) >= until else None

        return await eventually(complete)


@pytest.fixture(scope="module")
async def hub(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TracedHub]:
    """hub-api (on uvicorn) and every consumer, in this process and its event loop."""
    tmp = tmp_path_factory.mktemp("traced-hub")
    endpoint = NotifyEndpoint()
    with traced() as spans, fresh_vhost() as amqp_url:
        settings = Settings(
            amqp_url=amqp_url,
            gateway_secret=SecretStr(GATEWAY_SECRET),
            provider_secrets={"stripe": SecretStr(PROVIDER_SECRETS["stripe"])},
            store_url=f"sqlite:///{tmp}/hookhub.db",
            notify_url=endpoint.url,
            notify_secret=SecretStr(NOTIFY_SECRET),
            publish_timeout_s=2,
            connect_timeout_s=2,
        )
        port = free_port()
        server = uvicorn_server(settings, "127.0.0.1", port)
        serving = asyncio.create_task(server.serve())
        stop = asyncio.Event()
        consuming = asyncio.create_task(run_consumers(settings, specs.installed(), stop))
        client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=THROUGH_GATEWAY, timeout=10
        )
        try:
            await eventually(lambda: _ready(client))
            yield TracedHub(client, spans, endpoint)
        finally:
            await client.aclose()
            stop.set()
            server.should_exit = True
            await asyncio.gather(serving, consuming)
            endpoint.close()


async def _ready(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


def _is_publish_of(span: ReadableSpan, event_id: str) -> bool:
    attributes = span.attributes or {}
    return span.kind == SpanKind.PRODUCER and attributes.get("messaging.message.id") == event_id


def one(spans: Sequence[ReadableSpan], kind: SpanKind, **attributes: object) -> ReadableSpan:
    """The one span of `kind` whose attributes include these (dots spelled as __)."""
    wanted = {name.replace("__", "."): value for name, value in attributes.items()}
    found = [
        s
        for s in spans
        if s.kind == kind and all((s.attributes or {}).get(k) == v for k, v in wanted.items())
    ]
    assert len(found) == 1, (kind, wanted, [(s.name, dict(s.attributes or {})) for s in spans])
    return found[0]


def child_of(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return span.parent is not None and span.parent.span_id == parent.context.span_id


def processed_by(spans: Sequence[ReadableSpan], consumer: str, routing_key: str) -> ReadableSpan:
    return one(
        spans,
        SpanKind.CONSUMER,
        messaging__consumer__group__name=consumer,
        messaging__rabbitmq__destination__routing_key=routing_key,
    )


def saved_by(spans: Sequence[ReadableSpan], process: ReadableSpan) -> ReadableSpan:
    [save] = [s for s in spans if s.name == "store.save" and child_of(s, process)]
    return save


async def paid_order(hub: TracedHub, **headers: str) -> tuple[str, str]:
    """An order created (with these headers), then paid by a signed Stripe webhook; the ids
    hub-api answered."""
    order_id = new_order_id()
    hub.client.headers.update(headers)
    try:
        created = (await create_order(hub.client, order_id)).json()["id"]
    finally:
        for name in headers:
            del hub.client.headers[name]
    await hub.trace_of(created, until=4)  # served, published, processed, saved
    paid = await post_stripe(hub.client, stripe_event(order_id))
    return created, paid.json()["id"]


async def test_one_trace_runs_from_the_webhook_through_the_consumers_to_the_notification(hub):
    _, payment_id = await paid_order(hub)
    # server, publish, payments (process, save, publish payment.approved), production (process,
    # save, publish production.queued), notifications (process, POST, save)
    spans = await hub.trace_of(payment_id, until=11)

    server = one(spans, SpanKind.SERVER)
    assert server.parent is None and server.name == "POST /webhooks/{provider}"
    assert dict(server.attributes or {}) == {
        "http.request.method": "POST",
        "http.route": "/webhooks/{provider}",
        "url.path": "/webhooks/stripe",
        "url.scheme": "http",
        "http.response.status_code": 202,
    }
    routing_key = "stripe.payment_intent.succeeded"
    published = one(spans, SpanKind.PRODUCER, messaging__message__id=payment_id)
    assert child_of(published, server) and published.name == f"publish {EXCHANGE}"
    assert {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "send",
        "messaging.destination.name": EXCHANGE,
        "messaging.rabbitmq.destination.routing_key": routing_key,
    }.items() <= dict(published.attributes or {}).items()

    payments = processed_by(spans, "payments", routing_key)
    assert child_of(payments, published) and payments.name == f"process {EXCHANGE}"
    assert {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.destination.name": EXCHANGE,
        "messaging.destination.subscription.name": "hookhub.payments",
        "messaging.message.id": payment_id,
    }.items() <= dict(payments.attributes or {}).items()
    assert saved_by(spans, payments).kind == SpanKind.INTERNAL
    approved = one(
        spans, SpanKind.PRODUCER, messaging__rabbitmq__destination__routing_key="payment.approved"
    )
    assert child_of(approved, payments)

    production = processed_by(spans, "production", "payment.approved")
    notifications = processed_by(spans, "notifications", "payment.approved")
    assert child_of(production, approved) and child_of(notifications, approved)
    saved_by(spans, production)
    queued = one(
        spans, SpanKind.PRODUCER, messaging__rabbitmq__destination__routing_key="production.queued"
    )
    assert child_of(queued, production)

    delivery = one(spans, SpanKind.CLIENT)
    assert child_of(delivery, notifications)
    assert {
        "http.request.method": "POST",
        # The path may hold a receiver's token (Slack, Discord): only the origin is kept.
        "url.full": hub.endpoint.url.removesuffix("/hooks") + "/REDACTED",
        "server.address": "127.0.0.1",
        "http.response.status_code": 200,
    }.items() <= dict(delivery.attributes or {}).items()
    approved_id = (approved.attributes or {})["messaging.message.id"]
    [received] = [r for r in hub.endpoint.received if r.json["id"] == approved_id]
    trace_hex = f"{server.context.trace_id:032x}"
    _, trace_of_post, parent_of_post, _ = received.headers["traceparent"].split("-")
    assert (trace_of_post, parent_of_post) == (trace_hex, f"{delivery.context.span_id:016x}")

    # One trace: every span but the request's own has its parent in it.
    ids = {s.context.span_id for s in spans}
    assert all(s.parent.span_id in ids for s in spans if s is not server)


async def test_a_callers_traceparent_is_continued_by_every_span(hub):
    traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
    created, _ = await paid_order(hub, traceparent=traceparent)

    spans = hub.trace(int(CALLER_TRACE, 16))

    server = one(spans, SpanKind.SERVER)
    assert server.parent is not None and server.parent.is_remote
    assert f"{server.parent.span_id:016x}" == CALLER_SPAN
    published = one(spans, SpanKind.PRODUCER, messaging__message__id=created)
    payments = processed_by(spans, "payments", "order.created")
    assert child_of(published, server) and child_of(payments, published)
    assert child_of(saved_by(spans, payments), payments)


# --- as deployed: processes exporting over OTLP/HTTP ---------------------------------------------


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    with OtlpCollector() as collector:
        yield collector


def log_lines(process: HubProcess, event: str) -> list[dict]:
    lines = [json.loads(line) for line in process.log.splitlines() if line.startswith("{")]
    return [line for line in lines if line["event"] == event]


async def test_processes_export_their_spans_over_otlp_and_log_the_trace_id(
    collector: OtlpCollector, amqp_url: str, tmp_path: Path
):
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: export soon, not every 5 s
    }
    # hub-api holds its spans until it stops: they must be sent then, not lost with it.
    api, url = start_api(amqp_url, tmp_path, **otel | {"OTEL_BSP_SCHEDULE_DELAY": "600000"})
    try:
        wait_http_ready(f"{url}/readyz", process=api)
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/hookhub.db", **otel)
        with running_consumer("payments", env, tmp_path) as payments:
            traceparent = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
            headers = THROUGH_GATEWAY | traceparent
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
                await create_order(client, new_order_id())

            await eventually(lambda: _processed(collector))
            [processed] = log_lines(payments, "event.processed")
    finally:
        api.stop()

    [accepted] = log_lines(api, "event.accepted")
    assert accepted["trace_id"] == processed["trace_id"] == CALLER_TRACE
    assert accepted["span_id"] != processed["span_id"]
    assert collector.spans_of("hookhub-api", CALLER_TRACE)
    assert collector.spans_of("hookhub-payments", CALLER_TRACE)
    # The probes polled before the order are not traced: only ingest requests are.
    api_spans = [span.name for span in collector.spans["hookhub-api"]]
    assert not [name for name in api_spans if "readyz" in name], api_spans


async def _processed(collector: OtlpCollector) -> bool:
    spans = collector.spans_of("hookhub-payments", CALLER_TRACE)
    return any(span.name == f"process {EXCHANGE}" for span in spans)
