"""OpenTelemetry traces: the one place that sets tracing up and makes Hookhub's spans.

Off unless the standard variables name an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT` or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and `OTEL_SDK_DISABLED` is not `true`. Off, no provider is
installed and no span code runs: `on()` is False and the helpers that take a block give a no-op
one. On, spans go in batches over OTLP/HTTP (protobuf); the SDK reads the rest of the `OTEL_*`
variables itself (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`...).

Spans follow OTel's semantic conventions: HTTP for hub-api's requests and the notifications'
deliveries, messaging (RabbitMQ) for publishing and processing. The trace crosses the broker in
the messages' W3C `traceparent`/`tracestate` headers.
"""

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any
from urllib.parse import urlsplit

import structlog
from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
PROTOCOL = "http/protobuf"  # the exporter installed; gRPC would add grpcio to every image
TRACEPARENT, TRACESTATE = "traceparent", "tracestate"
RABBITMQ = {"messaging.system": "rabbitmq"}

W3C = TraceContextTextMapPropagator()
NO_BLOCK = nullcontext()
_tracer: Tracer | None = None  # None: tracing is off

log = structlog.get_logger("hookhub")


def on() -> bool:
    return _tracer is not None


def configure(service_name: str) -> bool:
    """Set tracing up from the `OTEL_*` variables, once per process; True when it is on.

    `service_name` is the default for `service.name`; `OTEL_SERVICE_NAME` wins over it. The
    provider flushes its last batch when the process exits.
    """
    if _tracer is not None:
        return True
    if not any(os.environ.get(name) for name in ENDPOINT_VARIABLES):
        return False
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    protocol = next((os.environ[n] for n in PROTOCOL_VARIABLES if os.environ.get(n)), PROTOCOL)
    if protocol.strip().lower() != PROTOCOL:
        log.error(
            "tracing.not_started",
            reason=f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: Hookhub exports "
            f"OTLP over HTTP; unset it or set {PROTOCOL}, and point OTEL_EXPORTER_OTLP_ENDPOINT "
            "at the collector's OTLP/HTTP port (4318)",
        )
        return False
    # Imported here: a process that does not trace never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    provider = SdkTracerProvider(resource=resource)  # shuts down (flushes) at exit
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    install(provider)
    log.info("tracing.started", service=resource.attributes.get(SERVICE_NAME), protocol=PROTOCOL)
    return True


def flush() -> None:
    """Send the spans still waiting in the batch. For a process whose server re-raises its stop
    signal after a graceful shutdown (uvicorn does), so that exit handlers never run."""
    if _tracer is None:
        return
    provider = trace.get_tracer_provider()
    if callable(force_flush := getattr(provider, "force_flush", None)):
        force_flush()


def install(provider: TracerProvider | None) -> None:
    """Make spans with `provider` (None: stop tracing). `configure` calls it; tests install one
    with an in-memory exporter."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer("hookhub")


# --- the context on the wire --------------------------------------------------------------------


class _Getter:
    """Reads a trace header from HTTP headers (names lower-cased) or AMQP message headers."""

    def get(self, carrier: Mapping[str, Any], key: str) -> list[str]:
        value = carrier.get(key)
        if isinstance(value, bytes):  # AMQP header tables may hold long strings as bytes
            value = value.decode("latin-1")
        return [value] if isinstance(value, str) else []

    def keys(self, carrier: Mapping[str, Any]) -> list[str]:
        return list(carrier)


GETTER = _Getter()


def extract(headers: Mapping[str, Any] | None) -> Context:
    """The context a W3C `traceparent` (and `tracestate`) in these headers carries."""
    return W3C.extract(headers or {}, getter=GETTER)


def inject(headers: MutableMapping[str, Any]) -> None:
    """Write the current span's `traceparent` (and `tracestate`) into these headers."""
    W3C.inject(headers)


def current_headers() -> tuple[str, str | None] | None:
    """The current span's `traceparent` and `tracestate` while tracing is on and a span is
    current; what a follow-up event carries so that it continues this trace."""
    if _tracer is None or not trace.get_current_span().get_span_context().is_valid:
        return None
    headers: dict[str, str] = {}
    W3C.inject(headers)
    return headers[TRACEPARENT], headers.get(TRACESTATE)


# --- spans ----------------------------------------------------------------------------------


def serving(
    method: str, route: str, path: str, headers: Mapping[str, str]
) -> AbstractContextManager[Span]:
    """A SERVER span for an HTTP request, continuing the caller's `traceparent`. Tracing on only."""
    assert _tracer is not None
    attributes = {
        "http.request.method": method,
        "http.route": route,
        "url.path": path,
        "url.scheme": "http",
    }
    return _tracer.start_as_current_span(
        f"{method} {route}", extract(headers), SpanKind.SERVER, attributes
    )


def answered(span: Span, status: int) -> None:
    """Record an HTTP answer on its span: a 5xx is an error of the server's, a 4xx is not."""
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(StatusCode.ERROR)


@contextmanager
def publishing(
    exchange: str, routing_key: str, message_id: str, headers: MutableMapping[str, Any]
) -> Iterator[Span]:
    """A PRODUCER span around one confirmed publish, whose context replaces the one in the
    message's `headers`. Its parent is the current span, or else the context the headers carried
    (an event saved in an outbox and relayed later carries the span that caused it). Tracing on
    only."""
    assert _tracer is not None
    current = trace.get_current_span().get_span_context().is_valid
    attributes = {
        **RABBITMQ,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": exchange,
        "messaging.rabbitmq.destination.routing_key": routing_key,
        "messaging.message.id": message_id,
    }
    with _tracer.start_as_current_span(
        f"publish {exchange}", None if current else extract(headers), SpanKind.PRODUCER, attributes
    ) as span:
        headers.pop(TRACESTATE, None)  # the caller's, replaced by this span's (if it has one)
        inject(headers)
        yield span


def processing(
    consumer: str, queue: str, message: AbstractIncomingMessage, *, late: bool = False
) -> AbstractContextManager[Span | None]:
    """A CONSUMER span around handling one message, continuing the trace in its headers; or,
    `late` (a backfill reading last month's events), a trace of its own linked to that one."""
    if _tracer is None:
        return NO_BLOCK
    exchange = message.exchange or ""  # "" for the default exchange: retries, deadlines
    attributes: dict[str, str | int] = {
        **RABBITMQ,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": exchange,
        "messaging.destination.subscription.name": queue,
        "messaging.consumer.group.name": consumer,
        "messaging.rabbitmq.destination.routing_key": message.routing_key or "",
    }
    if message.message_id:
        attributes["messaging.message.id"] = message.message_id
    if message.delivery_tag is not None:
        attributes["messaging.rabbitmq.message.delivery_tag"] = message.delivery_tag
    name = f"process {exchange}" if exchange else "process"
    context = extract(message.headers)
    if not late:
        return _tracer.start_as_current_span(name, context, SpanKind.CONSUMER, attributes)
    cause = trace.get_current_span(context).get_span_context()
    links = [Link(cause)] if cause.is_valid else []
    return _tracer.start_as_current_span(
        name, Context(), SpanKind.CONSUMER, attributes, links=links
    )


def internal(name: str, **attributes: str | int) -> AbstractContextManager[Span | None]:
    """An INTERNAL span around a step (a store write), child of the current span."""
    if _tracer is None:
        return NO_BLOCK
    return _tracer.start_as_current_span(name, kind=SpanKind.INTERNAL, attributes=attributes)


@contextmanager
def requesting(method: str, url: str, headers: MutableMapping[str, str]) -> Iterator[Span | None]:
    """A CLIENT span around an outgoing HTTP request, whose `traceparent` goes into `headers`.

    `url.full` keeps only the scheme, host and port: the user info, the query and the path
    (Slack's and Discord's webhook URLs carry their token in it) become `REDACTED`."""
    if _tracer is None:
        yield None
        return
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "url.full": origin + ("/REDACTED" if parts.path.strip("/") or parts.query else "/"),
        "server.address": parts.hostname or "",
    }
    if port := parts.port or {"http": 80, "https": 443}.get(parts.scheme):
        attributes["server.port"] = port
    with _tracer.start_as_current_span(method, kind=SpanKind.CLIENT, attributes=attributes) as span:
        inject(headers)
        yield span


def responded(span: Span | None, status: int) -> None:
    """Record an HTTP client's answer: any 4xx or 5xx is an error of the request's."""
    if span is None:
        return
    span.set_attribute("http.response.status_code", status)
    if status >= 400:
        span.set_attribute("error.type", str(status))
        span.set_status(StatusCode.ERROR)


def failed(error: BaseException, outcome: str) -> None:
    """Mark the current span failed: a message retried or parked, with the exception."""
    if _tracer is None:
        return
    span = trace.get_current_span()
    span.record_exception(error)
    span.set_attribute("error.type", type(error).__qualname__)
    span.set_attribute("hookhub.outcome", outcome)
    span.set_status(Status(StatusCode.ERROR, f"{outcome}: {type(error).__name__}"))


def add_trace_ids(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> Any:
    """structlog processor: `trace_id` and `span_id` on lines logged while a span records."""
    if _tracer is not None:
        span = trace.get_current_span()
        if span.is_recording():
            context = span.get_span_context()
            event_dict["trace_id"] = format(context.trace_id, "032x")
            event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict
