"""A real local HTTP endpoint standing in for a team's notification receiver."""

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    # A consumer POSTs up to its prefetch at once; the default backlog of 5 would reset some.
    request_queue_size = 256
    daemon_threads = True


class NotifyEndpoint:
    """Records every POST; answers 200 unless told otherwise for an event type."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status_for_type: dict[str, int] = {}
        self.headers_for_type: dict[str, dict[str, str]] = {}
        self.delay_for_type: dict[str, float] = {}
        self.delay_s = 0.0
        # The most POSTs it was answering at once.
        self.in_flight = self.most_in_flight = 0
        self._counting = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                endpoint.received.append(
                    Received(
                        time.monotonic(), {k.lower(): v for k, v in self.headers.items()}, body
                    )
                )
                with endpoint._counting:
                    endpoint.in_flight += 1
                    endpoint.most_in_flight = max(endpoint.most_in_flight, endpoint.in_flight)
                event_type = json.loads(body).get("type")
                time.sleep(endpoint.delay_for_type.get(event_type, endpoint.delay_s))
                with endpoint._counting:
                    endpoint.in_flight -= 1
                status = endpoint.status_for_type.get(event_type, 200)
                self.send_response(status)
                for name, value in endpoint.headers_for_type.get(event_type, {}).items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, event_type: str, order_id: str | None = None) -> list[Received]:
        return [
            r
            for r in self.received
            if r.json["type"] == event_type
            and (
                order_id is None
                or (isinstance(r.json["data"], dict) and r.json["data"].get("order_id") == order_id)
            )
        ]

    def wait_for(
        self, event_type: str, order_id: str | None = None, count: int = 1, timeout_s: float = 20
    ) -> list[Received]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.of(event_type, order_id)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(
            f"endpoint got {len(self.of(event_type, order_id))} {event_type} for {order_id}, "
            f"wanted {count}; "
            f"all: {[r.json['type'] for r in self.received]}"
        )

    def close(self) -> None:
        self.server.shutdown()
