"""Tracing's switch and the trace context events carry: off without the OTEL_* variables, and
when on, a follow-up continues the span it was emitted in, even from the outbox."""

import os
from collections.abc import Iterator

import pytest
from hookhub import tracing
from hookhub.broker import Broker
from hookhub.events import Event
from hookhub.settings import Settings
from opentelemetry import context, trace
from opentelemetry.sdk.trace import TracerProvider
from structlog.testing import capture_logs

from tests.support.spans import traced

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
CALLER_STATE = "vendor=opaque"


@pytest.fixture
def no_otel_variables(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    yield
    tracing.install(None)


def event(**fields: str) -> Event:
    return Event(id="e-1", source="/tests", type="tests.traced", data=b"{}", **fields)


def test_without_an_otlp_endpoint_nothing_is_set_up(no_otel_variables):
    assert tracing.configure("hookhub-tests") is False

    assert not tracing.on()
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)


def test_otel_sdk_disabled_keeps_tracing_off(no_otel_variables, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")

    assert tracing.configure("hookhub-tests") is False
    assert not tracing.on()


def test_a_grpc_protocol_is_refused_with_what_to_set_instead(no_otel_variables, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")

    with capture_logs() as logs:
        assert tracing.configure("hookhub-tests") is False

    assert not tracing.on()
    [refused] = [line for line in logs if line["event"] == "tracing.not_started"]
    assert "http/protobuf" in refused["reason"] and "4318" in refused["reason"]


async def test_tracing_off_the_message_carries_the_callers_traceparent_unchanged(
    no_otel_variables, amqp_url, capture
):
    assert tracing.configure("hookhub-tests") is False
    broker = Broker(Settings(amqp_url=amqp_url))
    await broker.start()
    try:
        assert await broker.wait_ready(5)
        queue = await capture("tests.traced")

        await broker.publish(event(traceparent=CALLER, tracestate=CALLER_STATE))

        headers = (await queue.get()).headers
        assert (headers["traceparent"], headers["tracestate"]) == (CALLER, CALLER_STATE)
    finally:
        await broker.close()


def test_tracing_off_a_follow_up_keeps_its_causes_traceparent(no_otel_variables):
    follow_up = event(traceparent=CALLER).follow_up(type="tests.next", source="tests", data=b"")

    assert follow_up.traceparent == CALLER


def test_a_follow_up_carries_the_span_it_was_emitted_in_through_the_outbox():
    with traced() as spans:
        token = context.attach(tracing.extract({"traceparent": CALLER}))  # a consumer's parent
        try:
            with tracing.internal("handling"):
                cause = event(traceparent=CALLER)
                follow_up = cause.follow_up(type="tests.next", source="tests", data=b"")
        finally:
            context.detach(token)
        [span] = spans.get_finished_spans()

    saved = Event.from_json(follow_up.to_json())  # as the outbox keeps it for the relay
    assert saved.traceparent == f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"
    assert saved.traceparent.split("-")[1] == CALLER.split("-")[1]


def test_traces_exporter_none_keeps_tracing_off(no_otel_variables, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")

    assert tracing.configure("hookhub-tests") is False
    assert not tracing.on()


async def test_a_late_message_starts_a_trace_of_its_own_linked_to_the_one_it_carries(
    amqp_url, capture
):
    # A backfill processes last month's events: continuing their traces would stretch each over
    # a month, so its spans link to them instead.
    queue = await capture("tests.traced")
    broker = Broker(Settings(amqp_url=amqp_url))
    await broker.start()
    try:
        assert await broker.wait_ready(5)
        await broker.publish(event(traceparent=CALLER))
        message = await queue.get()
    finally:
        await broker.close()
    caller_trace, caller_span = int(CALLER.split("-")[1], 16), int(CALLER.split("-")[2], 16)

    with traced() as exporter:
        with tracing.processing("tests", "hookhub.archive", message, late=True):
            pass
        with tracing.processing("tests", "hookhub.tests", message):
            pass
        late, live = exporter.get_finished_spans()

    assert late.parent is None and late.context.trace_id != caller_trace
    [link] = late.links
    assert (link.context.trace_id, link.context.span_id) == (caller_trace, caller_span)
    assert live.parent is not None and live.context.trace_id == caller_trace
    assert live.parent.span_id == caller_span
    assert not live.links
