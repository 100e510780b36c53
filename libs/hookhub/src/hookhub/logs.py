"""Structured logging for every Hookhub process: JSON lines carrying event and correlation ids."""

import logging
import sys
from importlib.metadata import version

import structlog
from prometheus_client import Gauge

from hookhub.tracing import add_trace_ids

log = structlog.get_logger("hookhub")

BUILD_INFO = Gauge("hookhub_build_info", "Always 1; the running Hookhub's version", ["version"])
BUILD_INFO.labels(version("hookhub")).set(1)


def configure_logging(level: str = "INFO", json: bool = True) -> None:
    """One JSON line per record, from structlog and stdlib loggers alike, with the context vars.

    Handlers bind `event_id` and `correlation_id` with `structlog.contextvars.bound_contextvars`
    so every line logged while handling an event carries them; with tracing on, lines logged
    inside a span carry its `trace_id` and `span_id` too.

    Hookhub's own lines take structlog's direct path (render, then one write to stderr): hub-api
    logs every accepted event, and going through stdlib logging's handler and formatter machinery
    cost about a fifth of its request throughput. Records from libraries (uvicorn, aio-pika) still
    arrive through stdlib logging and are rendered by the same processors.
    """
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    shared = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Per-request access lines would double every request; hub-api logs its own with ids.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("aiormq").setLevel(logging.WARNING)
    # httpx logs every request with its full URL, which may carry credentials or tokens.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
