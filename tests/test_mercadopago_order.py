"""A Mercado Pago notification names only a payment id; the payment it stands for names the
order (#24). Through hub-api, the payments consumer fetching the payment from (a stand-in for)
Mercado Pago's API, the broker's archive and `hookhub index`: `hookhub events list --order X`
finds the notification beside the order and the payment.approved it caused."""

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.support.broker import fresh_vhost
from tests.support.fake_mercadopago import DEFAULT_ACCESS_TOKEN, FakeMercadoPago
from tests.support.net import free_port
from tests.support.processes import HubProcess, start_consumer, wait_http_ready
from tests.support.settings import GATEWAY_SECRET, hub_env
from tests.support.signing import SECRETS_ENV, signed_request


def events_of_order(env: dict[str, str], order_id: str) -> list[dict]:
    listed = subprocess.run(
        [sys.executable, "-m", "hookhub.cli", "events", "list", "--order", order_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def test_a_mercado_pago_notification_is_found_by_the_order_of_its_payment(tmp_path: Path):
    order_id, payment_id = f"ord-{uuid.uuid4().hex[:8]}", str(uuid.uuid4().int % 10**12)
    with fresh_vhost() as amqp_url, FakeMercadoPago() as mercadopago:
        env = hub_env(
            amqp_url,
            HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/hookhub.db",
            HOOKHUB_MERCADOPAGO_API_URL=mercadopago.url,
            HOOKHUB_MERCADOPAGO_ACCESS_TOKEN=DEFAULT_ACCESS_TOKEN,
            **SECRETS_ENV,
        )
        port = free_port()
        api = f"http://127.0.0.1:{port}"
        processes = [HubProcess(["api", "--port", str(port)], env, tmp_path / "api.log")]
        try:
            wait_http_ready(f"{api}/readyz", process=processes[0])
            payments, readyz = start_consumer("payments", env, tmp_path)
            processes += [payments, HubProcess(["index"], env, tmp_path / "index.log")]
            wait_http_ready(readyz, timeout_s=30, process=payments)
            gateway = {"x-hookhub-gateway-secret": GATEWAY_SECRET}
            order = {"order_id": order_id, "customer": {"id": "c1"}, "items": [],
                     "amount": 14990, "currency": "BRL"}  # fmt: skip
            created = httpx.post(
                f"{api}/events",
                json={"type": "order.created", "data": order},
                headers={
                    **gateway,
                    "content-type": "application/cloudevents+json",
                    "x-consumer-username": "storefront",
                },  # fmt: skip
                timeout=10,
            )
            assert created.status_code == 202, created.text
            mercadopago.add_payment(
                {
                    "id": int(payment_id),
                    "status": "approved",
                    "status_detail": "accredited",
                    "external_reference": order_id,
                    "transaction_amount": 149.90,
                    "currency_id": "BRL",
                }  # fmt: skip
            )
            notification = {"action": "payment.updated", "api_version": "v1",
                            "data": {"id": payment_id}, "id": int(payment_id) + 1,
                            "live_mode": False, "type": "payment"}  # fmt: skip
            headers, query, body = signed_request("mercadopago", json.dumps(notification))
            notified = httpx.post(
                f"{api}/webhooks/mercadopago",
                content=body,
                params=query,
                headers={**headers, **gateway, "x-consumer-username": "mercadopago"},
                timeout=10,
            )
            assert notified.status_code < 300, notified.text
            notification_id = notified.headers.get("x-hookhub-event-id") or notified.json()["id"]

            deadline = time.monotonic() + 30
            while True:
                found = events_of_order(env, order_id)
                types = {event["type"] for event in found}
                if "payment.approved" in types or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            for process in processes:
                process.stop()

    assert notification_id in {event["id"] for event in found}, found
    assert {"order.created", "mercadopago.payment.updated", "payment.approved"} <= types, types
