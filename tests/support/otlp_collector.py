"""A real local OTLP/HTTP receiver standing in for an OpenTelemetry Collector: it takes
`POST /v1/traces` (protobuf), keeps every span by the service that sent it, and answers 200."""

import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class OtlpCollector:
    def __init__(self) -> None:
        self.spans: dict[str, list[Span]] = defaultdict(list)  # service.name → spans
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path != "/v1/traces":
                    self.send_response(404)
                else:
                    collector._keep(ExportTraceServiceRequest.FromString(body))
                    self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # What OTEL_EXPORTER_OTLP_ENDPOINT is set to; the exporter adds /v1/traces.
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _keep(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            service = attributes.get("service.name", "")
            for scope_spans in resource_spans.scope_spans:
                self.spans[service].extend(scope_spans.spans)

    def spans_of(self, service: str, trace_id: str) -> list[Span]:
        """The spans `service` sent of the trace `trace_id` (32 hex digits)."""
        return [s for s in list(self.spans[service]) if s.trace_id.hex() == trace_id]

    def __enter__(self) -> "OtlpCollector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
