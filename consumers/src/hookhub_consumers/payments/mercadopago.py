"""The one Mercado Pago call Hookhub makes: read a payment by its id.

Mercado Pago's payment notifications carry only the payment's id, so the payments consumer fetches
the payment (GET /v1/payments/{id}) to learn its status, amount and external_reference. Failures
come sorted for the runtime: `ProviderUnavailable` may pass (retry with backoff); `ProviderRejected`
and `PaymentNotFound` will not (they are `UnusablePayload`, dead-lettered at once). The access
token travels in the Authorization header and nowhere else: not in messages, logs or repr.
"""

from typing import Any
from urllib.parse import quote

import httpx

from hookhub_consumers.payments.providers import UnusablePayload
from hookhub_consumers.retries import worth_retrying

PAYMENT_PATH = "/v1/payments/{payment_id}"
DEFAULT_TIMEOUT_S = 10.0
MAX_DETAIL_CHARS = 200


class ProviderUnavailable(Exception):
    """Mercado Pago could not answer now (5xx, 408, 429, timeout, connection error): retry later."""


class ProviderRejected(UnusablePayload):
    """Mercado Pago refused the request (a 4xx); asking again the same way will not help."""


class PaymentNotFound(ProviderRejected):
    """Mercado Pago has no payment with that id for this access token (404)."""


class MercadoPagoClient:
    """Reads payments from Mercado Pago's API (or anything that answers like it at `base_url`).

    Pass a shared `http` client to reuse its connections; without one, each call opens its own.
    """

    def __init__(
        self,
        base_url: str,
        access_token: str,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if not access_token:
            raise ValueError(
                "the Mercado Pago access token is empty: set HOOKHUB_MERCADOPAGO_ACCESS_TOKEN"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._access_token = access_token
        self._http = http

    def __repr__(self) -> str:
        return f"MercadoPagoClient({self.base_url!r}, timeout_s={self.timeout_s})"

    async def get_payment(self, payment_id: str) -> dict[str, Any]:
        """The payment resource as Mercado Pago returns it."""
        url = self.base_url + PAYMENT_PATH.format(payment_id=quote(str(payment_id), safe=""))
        headers = {"Authorization": f"Bearer {self._access_token}", "Accept": "application/json"}
        try:
            if self._http is not None:
                response = await self._http.get(url, headers=headers, timeout=self.timeout_s)
            else:
                async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                    response = await http.get(url, headers=headers)
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(
                f"Mercado Pago did not answer within {self.timeout_s}s for payment {payment_id}"
            ) from exc
        except httpx.TransportError as exc:
            raise ProviderUnavailable(
                f"Mercado Pago is not reachable at {self.base_url}: {exc or type(exc).__name__}"
            ) from exc
        return _payment(response, payment_id)


def _payment(response: httpx.Response, payment_id: str) -> dict[str, Any]:
    status = response.status_code
    if status == 404:
        raise PaymentNotFound(f"Mercado Pago has no payment {payment_id} (404){_detail(response)}")
    if status in (401, 403):
        raise ProviderRejected(
            f"Mercado Pago refused the access token ({status}){_detail(response)}: "
            "check HOOKHUB_MERCADOPAGO_ACCESS_TOKEN, then replay the dead letters"
        )
    if worth_retrying(status):
        raise ProviderUnavailable(
            f"Mercado Pago answered {status} for payment {payment_id}{_detail(response)}"
        )
    if not response.is_success:
        raise ProviderRejected(
            f"Mercado Pago answered {status} for payment {payment_id}{_detail(response)}"
        )
    try:
        payment = response.json()
    except ValueError:
        payment = None
    if not isinstance(payment, dict):
        # A 200 that is not a payment comes from something in between (a proxy's error page).
        raise ProviderUnavailable(
            f"Mercado Pago answered {status} for payment {payment_id} with no JSON object"
        )
    return payment


def _detail(response: httpx.Response) -> str:
    """Mercado Pago's own words about an error (`{"message": ..., "error": ...}`), if any."""
    try:
        body = response.json()
    except ValueError:
        return ""
    message = body.get("message") if isinstance(body, dict) else None
    return f": {str(message)[:MAX_DETAIL_CHARS]}" if message else ""
