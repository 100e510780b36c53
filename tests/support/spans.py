"""Tracing in the test's own process, every span kept in memory."""

from collections.abc import Iterator
from contextlib import contextmanager

from hookhub import tracing
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@contextmanager
def traced() -> Iterator[InMemorySpanExporter]:
    """Tracing on in this process while the block runs, every span kept in memory as it ends."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()
