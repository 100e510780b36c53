"""The notification receiver the chaos hub posts to: a real HTTP endpoint that keeps every POST
(its webhook-id, body, arrival and what it answered) for the verdict, and can answer slowly."""

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from chaos.verdict import APPROVED, Notified, notified_from


class _Server(ThreadingHTTPServer):
    # A consumer POSTs up to its prefetch at once; the default backlog of 5 would reset some.
    request_queue_size = 256
    daemon_threads = True


def is_slow(webhook_id: str, share: float) -> bool:
    """Whether this notification's first POST is answered slowly: a fixed share of ids, chosen
    by their hash so that a run is repeatable."""
    digest = hashlib.sha256(webhook_id.encode()).digest()
    return int.from_bytes(digest[:4], "big") < share * 2**32


class Receiver:
    """Answers 200 to every POST; with `slow_share`, the first POST of that share of
    webhook-ids only after `slow_s` (a receiver busy, a GC pause: the hub's timeout fires)."""

    def __init__(self, slow_share: float = 0.0, slow_s: float = 10.0) -> None:
        self.received: list[Notified] = []
        self.slow_share, self.slow_s = slow_share, slow_s
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                at = time.monotonic()
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                webhook_id = self.headers.get("webhook-id", "")
                if receiver.first_time(webhook_id) and is_slow(webhook_id, receiver.slow_share):
                    time.sleep(receiver.slow_s)
                try:
                    self.send_response(200)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    status = 200
                except OSError:  # the hub gave up waiting and closed: it never heard the 200
                    status = 0
                receiver.received.append(notified_from(webhook_id, body, status, at))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def first_time(self, webhook_id: str) -> bool:
        with self._lock:
            new = webhook_id not in self._seen
            self._seen.add(webhook_id)
            return new

    def records(self) -> list[Notified]:
        return list(self.received)  # the server's threads append meanwhile

    def approved(self) -> set[str]:
        """Orders whose payment.approved the receiver has accepted."""
        return {r.order_id for r in self.records() if r.ok and r.type == APPROVED and r.order_id}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
