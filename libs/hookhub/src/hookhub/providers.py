"""The webhook providers Hookhub accepts, as one table: one row a provider.

A row says how the provider signs (its `Scheme`, by name: the verifiers, and the libraries they
need, are hub-api's, in `hub_api.signatures`), what it sends (media types), where its event id and
type are, how its key reaches Kong, and, for bots, the handshake hub-api answers itself and the
reply the platform expects. hub-api, the Kong config tests, the chart and the payments consumer all
read `PROVIDERS`.
"""

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# A GET handshake's token is its own secret, apart from the signing one (Meta's "verify token").
VERIFY_TOKEN_SUFFIX = "_verify_token"


class Scheme(StrEnum):
    """How a provider proves a webhook is its own. hub-api verifies each scheme
    (`hub_api.signatures.VERIFIERS`); the library names them only, so that no other image
    carries what verifying them needs."""

    STRIPE = "stripe"  # Stripe-Signature, checked by the stripe library
    HUB_SIGNATURE_256 = "hub-signature-256"  # GitHub and Meta: X-Hub-Signature-256
    STANDARD_WEBHOOKS = "standard-webhooks"  # webhook-* or svix-* headers
    MERCADOPAGO = "mercadopago"  # x-signature over a manifest
    HOTMART_HOTTOK = "hotmart-hottok"  # a shared token in X-Hotmart-Hottok
    KIWIFY = "kiwify"  # ?signature=, HMAC-SHA1 of the body
    ASAAS_ACCESS_TOKEN = "asaas-access-token"  # a shared token in asaas-access-token
    PAGARME = "pagarme"  # X-Hub-Signature: sha1=
    SHOPIFY = "shopify"  # X-Shopify-Hmac-Sha256
    SLACK = "slack"  # X-Slack-Signature v0
    TELEGRAM_SECRET_TOKEN = "telegram-secret-token"  # X-Telegram-Bot-Api-Secret-Token
    DISCORD = "discord"  # Ed25519 by the application's public key
    TWILIO = "twilio"  # X-Twilio-Signature over the URL and the form
    HMAC = "hmac"  # Hookhub's own: X-Hookhub-Signature


@dataclass(frozen=True, slots=True)
class Handshake:
    """A request by which the platform checks the endpoint: hub-api answers it, publishes nothing.

    It is this handshake when the locator `when` finds `equals`. The answer echoes what `echo`
    finds (the challenge), or is `body`. A GET handshake carries no signature: its `token` locator
    must find the provider's verify token (`HOOKHUB_SECRET_<PROVIDER>_VERIFY_TOKEN`)."""

    method: Literal["GET", "POST"]
    when: str
    equals: str
    echo: str = ""
    body: bytes = b""
    media_type: str = "text/plain"
    token: str = ""


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer the platform needs once its event is confirmed, where Hookhub's usual
    `202 {"id", "type"}` will not do: another status, or a body of its own (`body`, or
    `bodies[<what the locator `by` finds>]`). The event id rides in `X-Hookhub-Event-Id`."""

    status: int = 200
    media_type: str = JSON
    body: bytes | None = None  # None: Hookhub's {"id", "type"}
    by: str = ""
    bodies: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Provider:
    """One webhook provider. Locators say where the event id and type are: `header:<name>`,
    `query:<name>`, `form:<field>`, `json:<dotted.path>` (list items by index: `entry.0.id`) or
    `json-key-other-than:<key>` (the name of the body's other top-level key), alternatives
    separated by `|`; an id found nowhere is the body's hash."""

    name: str
    scheme: Scheme
    event_id: str
    event_type: str
    # Where the proof of origin travels (locators), the first being the signature itself: the
    # OpenAPI document lists these, and a request without the first is refused with 401.
    proof: tuple[str, ...] = ()
    # Kong: the provider can only be given a URL (no custom header), so its key rides in ?apikey=
    key_in_query: bool = False
    payment: bool = False  # the payments consumer reads this provider's events
    media_types: tuple[str, ...] = (JSON,)
    form_json: str = ""  # the form field holding a JSON document (GitHub's and Slack's `payload`)
    # The provider's type as it sends it → the name in Hookhub's type (Discord's numbers).
    type_names: Mapping[str, str] = field(default_factory=dict)
    handshake: Handshake | None = None
    reply: Reply | None = None
    # The signature covers the URL, Kong's key included: Kong passes the key and the Host on.
    signs_url: bool = False
    # Where its payload keeps the storefront's order id: a dotted path, alternatives separated
    # by `|` (what `value_at` reads). The payments consumer reconciles by it, the event log's
    # index finds the order's events by it; a payload without it concerns no order it can name.
    order_id_at: str = ""
    # Who its events are about (`hookhub.identities`): kind → where its payload keeps it, with
    # the same locator syntax as `order_id_at`. Kinds: email, phone (without `+`, Brazilian),
    # phone_e164_digits (a country code first, no `+`), document (CPF/CNPJ), id (the provider's
    # own customer or user id: `<provider>:<id>`) or another kind of its own id.
    identities_at: Mapping[str, str] = field(default_factory=dict)


DISCORD_INTERACTIONS = {
    "2": "application_command",
    "3": "message_component",
    "4": "autocomplete",
    "5": "modal_submit",
}
# Discord shows "interaction failed" unless it gets an interaction response within 3 s: a command
# or a modal is deferred (the consumer follows up with the interaction token), a component's
# message is left as it is, an autocomplete gets no choices.
DISCORD_DEFERRED = {
    "2": b'{"type":5}',
    "3": b'{"type":6}',
    "4": b'{"type":8,"data":{"choices":[]}}',
    "5": b'{"type":5}',
}

PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider(
            "stripe",
            Scheme.STRIPE,
            "json:id",
            "json:type",
            proof=("header:stripe-signature",),
            key_in_query=True,
            payment=True,
            # Set by the storefront on the PaymentIntent (copied to its Charges) or the Checkout
            # Session; a dispute is Stripe's own object and names only the payment.
            order_id_at="data.object.metadata.order_id",
            identities_at={
                "email": "data.object.customer_details.email|data.object.receipt_email"
                "|data.object.billing_details.email|data.object.email",
                "phone": "data.object.customer_details.phone|data.object.billing_details.phone"
                "|data.object.phone",
                "id": "data.object.customer",  # cus_...
            },
        ),
        Provider(
            "github",
            Scheme.HUB_SIGNATURE_256,
            "header:x-github-delivery",
            "header:x-github-event",
            proof=("header:x-hub-signature-256",),
            key_in_query=True,
            media_types=(JSON, FORM),  # a form is GitHub's default: payload=<the JSON>
            identities_at={
                "email": "pusher.email|head_commit.author.email",
                "id": "sender.id",
                "login": "sender.login",
            },
        ),
        Provider(
            "standardwebhooks",
            Scheme.STANDARD_WEBHOOKS,
            "header:webhook-id|header:svix-id",
            "json:type",
            proof=("header:webhook-signature", "header:webhook-timestamp", "header:webhook-id"),
        ),
        Provider(
            "mercadopago",
            Scheme.MERCADOPAGO,
            "json:id",
            "json:action|json:type",
            proof=("header:x-signature", "header:x-request-id"),
            key_in_query=True,
            payment=True,
            # In the payment fetched from GET /v1/payments/{id}: a notification carries only the
            # payment id, so the index knows a Mercado Pago payment's order by its follow-ups.
            order_id_at="external_reference",
            # The same: the fetched payment's payer; a notification names no one.
            identities_at={
                "email": "payer.email",
                "document": "payer.identification.number",
                "id": "payer.id",
            },
        ),
        Provider(
            "hotmart",
            Scheme.HOTMART_HOTTOK,
            "json:id",
            "json:event",
            proof=("header:x-hotmart-hottok",),
            key_in_query=True,
            payment=True,
            # xcod: the "external code" the seller appends to its checkout link (?xcod=...)
            order_id_at="data.purchase.origin.xcod",
            identities_at={
                "email": "data.buyer.email",
                "phone": "data.buyer.checkout_phone|data.buyer.phone",
                "document": "data.buyer.document",
                "subscriber": "data.subscription.subscriber.code",
            },
        ),
        Provider(
            "kiwify",
            Scheme.KIWIFY,
            # Not order_id: an order's approval and its later refund share it, and the refund
            # would be dropped as a duplicate. Without an event id the body's hash is the id.
            "json:webhook_event_id",
            "json:webhook_event_type|json:order_status",
            proof=("query:signature",),
            key_in_query=True,
            payment=True,
            # s1: a free sub-id the seller appends to its checkout link (?s1=...)
            order_id_at="TrackingParameters.s1",
            identities_at={
                "email": "Customer.email",
                "phone": "Customer.mobile",
                "document": "Customer.CPF|Customer.cnpj",
            },
        ),
        Provider(
            "asaas",
            Scheme.ASAAS_ACCESS_TOKEN,
            "json:id",
            "json:event",
            proof=("header:asaas-access-token",),
            key_in_query=True,
            payment=True,
            order_id_at="payment.externalReference",  # set when the storefront made the charge
            identities_at={"id": "payment.customer"},  # cus_...: Asaas names its customer only
            reply=Reply(status=200),  # Asaas counts only a 200 as delivered
        ),
        Provider(
            "pagarme",
            Scheme.PAGARME,
            "json:id",
            "json:type",
            proof=("header:x-hub-signature",),
            key_in_query=True,
            payment=True,
            # The order's code: an order event carries the order, a charge event its order.
            order_id_at="data.order.code|data.code",
            identities_at={
                "email": "data.customer.email|data.order.customer.email",
                "document": "data.customer.document|data.order.customer.document",
                "id": "data.customer.id|data.order.customer.id",
            },
            reply=Reply(status=200),
        ),
        Provider(
            "shopify",
            Scheme.SHOPIFY,
            "header:x-shopify-webhook-id",
            "header:x-shopify-topic",  # orders/create becomes shopify.orders.create
            proof=("header:x-shopify-hmac-sha256",),
            key_in_query=True,
            identities_at={
                "email": "customer.email|email",
                "phone": "customer.phone|phone",
                "id": "customer.id",
            },
        ),
        Provider(
            "slack",
            Scheme.SLACK,
            "json:event_id|json:trigger_id|form:trigger_id",
            "json:event.type|json:type|form:command",
            proof=("header:x-slack-signature", "header:x-slack-request-timestamp"),
            key_in_query=True,
            media_types=(JSON, FORM),  # Events API: JSON; interactivity and slash commands: forms
            form_json="payload",
            # A slash command's form, the Events API's event, an interaction's payload.
            identities_at={"id": "user_id|event.user|user.id"},
            handshake=Handshake("POST", "json:type", "url_verification", echo="json:challenge"),
            reply=Reply(status=200),
        ),
        Provider(
            "whatsapp",  # Meta's WhatsApp Cloud API (Instagram and Messenger sign the same way)
            Scheme.HUB_SIGNATURE_256,
            "",  # Meta gives no delivery id; a retry sends the same body, so its hash serves
            "json:entry.0.changes.0.field|json:object",
            proof=("header:x-hub-signature-256",),
            key_in_query=True,
            # wa_id: the sender's phone number, its country code first, no `+`.
            identities_at={
                "phone_e164_digits": "entry.0.changes.0.value.contacts.0.wa_id"
                "|entry.0.changes.0.value.messages.0.from"
            },
            handshake=Handshake(
                "GET",
                "query:hub.mode",
                "subscribe",
                echo="query:hub.challenge",
                token="query:hub.verify_token",
            ),
            reply=Reply(status=200),
        ),
        Provider(
            "telegram",
            Scheme.TELEGRAM_SECRET_TOKEN,
            "json:update_id",
            "json-key-other-than:update_id",  # message, callback_query, ...
            proof=("header:x-telegram-bot-api-secret-token",),
            key_in_query=True,
            # The user (a private chat's id is the user's); a contact the user shared.
            identities_at={
                "id": "message.from.id|edited_message.from.id|callback_query.from.id",
                "phone": "message.contact.phone_number",
            },
        ),
        Provider(
            "discord",
            Scheme.DISCORD,
            "json:id",
            "json:type",
            proof=("header:x-signature-ed25519", "header:x-signature-timestamp"),
            key_in_query=True,
            type_names=DISCORD_INTERACTIONS,
            identities_at={"id": "member.user.id|user.id"},  # in a server, or a DM
            handshake=Handshake("POST", "json:type", "1", body=b'{"type":1}', media_type=JSON),
            reply=Reply(status=200, by="json:type", bodies=DISCORD_DEFERRED),
        ),
        Provider(
            "twilio",
            Scheme.TWILIO,
            "header:i-twilio-idempotency-token",
            "form:MessageStatus|form:SmsStatus|form:CallStatus",
            proof=("header:x-twilio-signature",),
            key_in_query=True,
            media_types=(FORM,),
            # An empty TwiML answer: no reply message, nothing more for Twilio to do.
            reply=Reply(
                status=200,
                media_type="text/xml",
                body=b'<?xml version="1.0" encoding="UTF-8"?><Response/>',
            ),
            signs_url=True,
        ),
        Provider(
            "hmac",
            Scheme.HMAC,
            "header:x-hookhub-event-id",
            "header:x-hookhub-event-type",
            proof=("header:x-hookhub-signature", "header:x-hookhub-timestamp"),
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Received:
    """Where locators look: lower-cased headers, the query, a form body's fields and the JSON
    document (the body, or a form's `form_json` field); None where there is none."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    form: Mapping[str, str]
    payload: Any


def value_at(payload: Any, path: str) -> Any:
    """The value at a dotted path in parsed JSON (`data.object.id`, `entry.0.id` for a list's
    first item), None where it leads nowhere."""
    value = payload
    for key in path.split("."):
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


# The hub's own order events (the storefront's, through /events) carry the order id in their data.
ORDER_EVENTS_ORDER_ID_AT = {"order.created": "order_id", "order.amended": "order_id"}
WEBHOOK_SOURCE_PREFIX = "/webhooks/"  # hub-api's source for a provider's events: /webhooks/<name>


def order_id_at(source: str, type: str) -> str:
    """Where an inbound event's payload keeps the storefront's order id ("" where it keeps
    none): the order events' `order_id`, a provider's `order_id_at`."""
    if type in ORDER_EVENTS_ORDER_ID_AT:
        return ORDER_EVENTS_ORDER_ID_AT[type]
    if source.startswith(WEBHOOK_SOURCE_PREFIX):
        provider = PROVIDERS.get(source.removeprefix(WEBHOOK_SOURCE_PREFIX))
        return provider.order_id_at if provider is not None else ""
    return ""


def first_at(payload: Any, paths: str) -> Any:
    """The first value found at one of the `|`-separated dotted paths; None if none holds one."""
    for path in paths.split("|"):
        value = value_at(payload, path)
        if value not in (None, ""):
            return value
    return None


def order_id_in(paths: str, payload: Any) -> str | None:
    """The order id at `paths` (`order_id_at`) as text: a string or an integer id; else None."""
    value = first_at(payload, paths) if paths else None
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def locate(locator: str, received: Received) -> str | None:
    """The first non-empty value a locator finds."""
    for alternative in locator.split("|") if locator else ():
        where, _, path = alternative.partition(":")
        value: Any = None
        if where == "header":
            value = received.headers.get(path)
        elif where == "query":
            value = received.query.get(path)
        elif where == "form":
            value = received.form.get(path)
        elif where == "json":
            value = value_at(received.payload, path)
        elif where == "json-key-other-than" and isinstance(received.payload, dict):
            value = next((key for key in received.payload if key != path), None)
        if value not in (None, "") and not isinstance(value, dict | list | bool):
            return str(value)
    return None


def body_hash_id(body: bytes) -> str:
    """The id of an event its provider gives none: a retry of the same body keeps it."""
    return hashlib.sha256(body).hexdigest()[:32]


@functools.cache
def reads_body(provider: str) -> bool:
    """Whether a provider's webhooks must be parsed (JSON or form) to find what Hookhub needs;
    the others are published without parsing."""
    spec = PROVIDERS[provider]
    locators = [spec.event_id, spec.event_type]
    if spec.handshake is not None and spec.handshake.method == "POST":
        locators += [spec.handshake.when, spec.handshake.echo]
    if spec.reply is not None:
        locators.append(spec.reply.by)
    return any(where in loc for loc in locators for where in ("json", "form:"))
