"""A real local HTTP server standing in for Mercado Pago's payments API (GET /v1/payments/{id}).

Load it with payment resources (`add_payment`), make it fail (`fail_with = 500`) or slow
(`delay_s`), and point `HOOKHUB_MERCADOPAGO_API_URL` at `url`. Like Mercado Pago, it answers 401
to a request without `Authorization: Bearer <access_token>`, 404 to an unknown payment, and errors
as `{"message", "error", "status", "cause"}`.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PAYMENTS_PREFIX = "/v1/payments/"
DEFAULT_ACCESS_TOKEN = "TEST-7312962374836021-080612-5b0c9e1c3f9d4a2e8b7f6a5d4c3b2a19-448876418"
ERRORS = {
    401: ("invalid access token", "unauthorized"),
    404: ("Payment not found", "not_found"),
    500: ("Internal server error", "internal_error"),
    503: ("Service unavailable", "service_unavailable"),
}


class FakeMercadoPago:
    """Serves the payments it was given; records every request's path and Authorization header."""

    def __init__(self, access_token: str = DEFAULT_ACCESS_TOKEN) -> None:
        self.access_token = access_token
        self.payments: dict[str, dict[str, Any]] = {}
        self.fail_with: int | None = None  # answer every request with this status while set
        self.delay_s = 0.0
        self.requests: list[tuple[str, str | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                fake.requests.append((self.path, self.headers.get("authorization")))
                time.sleep(fake.delay_s)
                status, body = fake._answer(self.path, self.headers.get("authorization"))
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll interval: shutdown() waits up to one interval, once per test.
        threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True).start()

    def add_payment(self, resource: dict[str, Any]) -> str:
        """Serve `resource` at /v1/payments/{its id}; returns the id."""
        payment_id = str(resource["id"])
        self.payments[payment_id] = resource
        return payment_id

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FakeMercadoPago":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _answer(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        if authorization != f"Bearer {self.access_token}":
            return _error(401)
        if self.fail_with is not None:
            return _error(self.fail_with)
        payment = self.payments.get(path.partition("?")[0].removeprefix(PAYMENTS_PREFIX))
        if not path.startswith(PAYMENTS_PREFIX) or payment is None:
            return _error(404)
        return 200, payment


def _error(status: int) -> tuple[int, dict[str, Any]]:
    message, error = ERRORS.get(status, ("error", "error"))
    return status, {"message": message, "error": error, "status": status, "cause": []}
