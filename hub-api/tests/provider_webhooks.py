"""One correctly signed webhook per provider, and the event Hookhub should make of it."""

import json
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from hookhub.providers import body_hash_id

from tests.support.signing import signed_request


@dataclass(frozen=True)
class Webhook:
    """A provider's webhook as sent, and the event Hookhub should make of it."""

    provider: str
    body: bytes
    overrides: dict[str, Any]
    event_id: str
    event_type: str

    def request(self) -> dict[str, Any]:
        headers, query, body = signed_request(self.provider, self.body, **self.overrides)
        return {
            "url": f"/webhooks/{self.provider}",
            "content": body,
            "headers": headers,
            "params": query,
        }


def _odd_json(fields: str) -> bytes:
    # Key order, spacing, a raw UTF-8 character, an escaped one and a trailing newline that any
    # re-serialisation would change: the message body must be these bytes exactly.
    return (
        "{  " + fields + ',\n\t"note" : "café ☕ \\u00e9\\n",  "amount":4990.50 , "z":{ } }\r\n'
    ).encode()


def webhook(provider: str) -> Webhook:
    """A fresh, correctly signed webhook for each provider, with a new id every call."""
    uid = uuid.uuid4().hex
    if provider == "stripe":
        body = _odd_json(f'"type":"payment_intent.succeeded", "id":"evt_{uid}"')
        return Webhook(provider, body, {}, f"evt_{uid}", "stripe.payment_intent.succeeded")
    if provider == "github":
        body = _odd_json(f'"ref":"refs/heads/main","after":"{uid}"')
        return Webhook(provider, body, {"event_id": uid, "event_type": "push"}, uid, "github.push")
    if provider == "standardwebhooks":
        body = _odd_json('"type":"invoice.paid","data":{"id":"inv_1"}')
        return Webhook(
            provider,
            body,
            {"event_id": f"msg_{uid}"},
            f"msg_{uid}",
            "standardwebhooks.invoice.paid",
        )
    if provider == "mercadopago":
        notification_id = uuid.uuid4().int % 10**12  # Mercado Pago's ids are numbers
        body = _odd_json(
            f'"action":"payment.updated","id":{notification_id},"type":"payment",'
            '"data":{"id":"123456"}'
        )
        return Webhook(provider, body, {}, str(notification_id), "mercadopago.payment.updated")
    if provider == "hotmart":
        body = _odd_json(f'"event":"PURCHASE_APPROVED","id":"{uid}","data":{{"purchase":{{}}}}')
        return Webhook(provider, body, {}, uid, "hotmart.PURCHASE_APPROVED")
    if provider == "kiwify":
        body = _odd_json(
            f'"webhook_event_type":"order_approved","order_id":"o1","webhook_event_id":"{uid}"'
        )
        return Webhook(provider, body, {}, uid, "kiwify.order_approved")
    if provider == "hmac":
        body = _odd_json('"anything":"goes"')
        return Webhook(
            provider, body, {"event_id": uid, "event_type": "build.done"}, uid, "hmac.build.done"
        )
    if provider == "asaas":
        body = _odd_json(
            f'"id":"evt_{uid}&368604920","event":"PAYMENT_RECEIVED",'
            '"payment":{"object":"payment","id":"pay_080225913252","value":149.9}'
        )
        return Webhook(provider, body, {}, f"evt_{uid}&368604920", "asaas.PAYMENT_RECEIVED")
    if provider == "pagarme":
        body = _odd_json(f'"id":"hook_{uid}","type":"order.paid","data":{{"code":"1001"}}')
        return Webhook(provider, body, {}, f"hook_{uid}", "pagarme.order.paid")
    if provider == "shopify":
        body = _odd_json('"id":820982911946154508,"name":"#1001"')
        return Webhook(
            provider,
            body,
            {"event_id": uid, "event_type": "orders/create"},
            uid,
            "shopify.orders.create",
        )
    if provider == "slack":
        body = _odd_json(
            f'"type":"event_callback","event_id":"Ev{uid}",'
            '"event":{"type":"app_mention","text":"<@U0LAN0Z89> hi"}'
        )
        return Webhook(provider, body, {}, f"Ev{uid}", "slack.app_mention")
    if provider == "whatsapp":
        body = _odd_json(
            '"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":'
            f'[{{"value":{{"messages":[{{"id":"wamid.{uid}"}}]}},"field":"messages"}}]}}]'
        )
        return Webhook(provider, body, {}, body_hash_id(body), "whatsapp.messages")
    if provider == "telegram":
        update_id = uuid.uuid4().int % 10**9
        body = _odd_json(f'"update_id":{update_id},"message":{{"message_id":1,"text":"/start"}}')
        return Webhook(provider, body, {}, str(update_id), "telegram.message")
    if provider == "discord":
        body = _odd_json(f'"id":"{uuid.uuid4().int % 10**18}","type":2,"data":{{"name":"hi"}}')
        return Webhook(
            provider, body, {}, str(json.loads(body)["id"]), "discord.application_command"
        )
    if provider == "twilio":
        body = urlencode(
            {
                "MessageSid": f"SM{uid}",
                "SmsStatus": "received",
                "From": "+5511999990000",
                "Body": "Olá ☕ & até logo",
            }
        ).encode()
        return Webhook(provider, body, {"event_id": uid}, uid, "twilio.received")
    raise AssertionError(f"no test webhook for provider {provider}")
