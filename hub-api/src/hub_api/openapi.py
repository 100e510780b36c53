"""What hub-api's OpenAPI document says of each route beyond what FastAPI infers from it: request
bodies, the providers and their signature headers (from the provider table), and every answer.

The ingest routes are served without FastAPI's parameter parsing (`fast_path`), so FastAPI cannot
see these; schemathesis checks the document against the running API (test_api_openapi.py).
"""

from html import escape
from typing import Any

from fastapi.responses import PlainTextResponse
from hookhub.providers import FORM, JSON, PROVIDERS
from pydantic import BaseModel, Field

from hub_api.ingest import EVENT_MEDIA_TYPES, CloudEventIn

WEBHOOK_HANDSHAKES_GET = sorted(
    name for name, p in PROVIDERS.items() if p.handshake and p.handshake.method == "GET"
)


class Accepted(BaseModel):
    id: str = Field(description="The event id: the provider's own where it has one")
    type: str = Field(description="The CloudEvents type, which is also the routing key")


class Refusal(BaseModel):
    detail: str = Field(description="What is wrong, and what to do; nothing was published")


def _refusals(**descriptions: str) -> dict[int | str, dict[str, Any]]:
    refusal = {JSON: {"schema": Refusal.model_json_schema()}}
    return {
        int(status.removeprefix("s")): {"description": description, "content": refusal}
        for status, description in descriptions.items()
    }


def _parameter(where: str, name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": {"type": "string", **schema},
    }


def _provider_parameters() -> list[dict[str, Any]]:
    """Every header and query parameter a provider's proof or its id and type ride in."""
    found: dict[tuple[str, str], list[str]] = {}
    for name, provider in PROVIDERS.items():
        for locator in (*provider.proof, provider.event_id, provider.event_type):
            for alternative in locator.split("|") if locator else ():
                where, _, key = alternative.partition(":")
                if where in ("header", "query"):
                    found.setdefault((where, key), []).append(name)
    return [
        _parameter(where, key, "sent by " + ", ".join(names))
        for (where, key), names in sorted(found.items())
    ]


_SERVED_ANSWER = {
    "description": "a handshake answered (nothing published), or the answer the provider's "
    "platform needs once its event is confirmed (Asaas, Pagar.me, Slack, Meta: this JSON with "
    "200; Discord: an interaction response; Twilio: empty TwiML)",
    "content": {
        JSON: {"schema": {}},
        "text/plain": {"schema": {"type": "string"}},
        "text/xml": {"schema": {"type": "string"}},
    },
}

WEBHOOK_POST: dict[str, Any] = {
    "status_code": 202,
    "response_model": Accepted,
    "responses": {
        200: _SERVED_ANSWER,
        **_refusals(
            s400="a body the provider's table row must read that is not JSON or a form",
            s401="not through the gateway, or missing, wrong or stale signature (for Mercado "
            "Pago: or a body whose data.id is not the signed one)",
            s404="unknown or unconfigured provider",
            s408="the body did not arrive whole within 5 s (the connection is closed)",
            s413="body over the size limit",
            s415="not a media type this provider sends",
            s422="no event type in the webhook, or an id too long for AMQP or not visible ASCII",
            s431="traceparent, tracestate, X-Correlation-ID or Content-Type over its limit",
            s503="not confirmed by the broker: send again with the same id",
        ),
    },
    "openapi_extra": {
        "parameters": [
            _parameter("path", "provider", "the provider's name", enum=sorted(PROVIDERS)),
            *_provider_parameters(),
        ],
        "requestBody": {
            "required": True,
            "description": "the webhook as the provider sends it; published byte-for-byte",
            "content": {
                JSON: {"schema": {}},
                FORM: {"schema": {"type": "object", "additionalProperties": {"type": "string"}}},
            },
        },
    },
}

WEBHOOK_GET: dict[str, Any] = {
    "response_class": PlainTextResponse,
    "responses": {
        200: {
            "description": "the challenge, echoed: the subscription is confirmed",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **_refusals(
            s400="not a subscription handshake, or no challenge to echo",
            s401="not through the gateway",
            s403="the verify token is not the one configured",
            s404="unknown or unconfigured provider, or no verify token configured",
            s405="this provider sends no GET handshake",
        ),
    },
    "openapi_extra": {
        "parameters": [
            _parameter(
                "path",
                "provider",
                "a provider whose platform checks the URL with a GET",
                enum=WEBHOOK_HANDSHAKES_GET,
            ),
            _parameter("query", "hub.mode", "subscribe"),
            _parameter("query", "hub.verify_token", "the verify token given in the dashboard"),
            _parameter("query", "hub.challenge", "what to echo"),
        ],
    },
}

# Unconstrained here: with a structured media type the headers are ignored, whatever they hold.
_CE_HEADERS = [
    _parameter("header", "ce-specversion", "binary mode: its presence selects it; must be 1.0"),
    _parameter("header", "ce-id", "binary mode: the event id (generated when absent)"),
    _parameter(
        "header", "ce-type", "binary mode: the event type (required), as `type` in the body"
    ),
    _parameter("header", "ce-source", "binary mode: ignored, the source is the caller"),
    _parameter("header", "ce-subject", "binary mode: the event's subject"),
]

EVENTS_POST: dict[str, Any] = {
    "status_code": 202,
    "response_model": Accepted,
    "responses": _refusals(
        s401="not through the gateway, or the caller's name is not a plain Kong consumer name",
        s403="the publish policy does not let this caller publish this type (the detail names "
        "both), or the type is reserved for Hookhub's own events or a provider's",
        s408="the body did not arrive whole within 5 s (the connection is closed)",
        s413="body over the size limit",
        s415="a batch, or neither CloudEvents JSON nor ce-* headers",
        s422="not a valid CloudEvent, data that breaks its type's contract, an id that is not "
        "visible ASCII, or an attribute (subject, trace context, correlation id) over its limit",
        s503="not confirmed by the broker: send again with the same id",
    ),
    "openapi_extra": {
        "parameters": _CE_HEADERS,
        "requestBody": {
            "required": True,
            "description": "structured mode: the CloudEvent as JSON. Binary mode (ce-* headers):"
            " the data itself, of any media type",
            "content": {m: {"schema": CloudEventIn.model_json_schema()} for m in EVENT_MEDIA_TYPES},
        },
    },
}

READYZ_GET: dict[str, Any] = {"responses": {503: {"description": "broker not usable"}}}

METRICS_GET: dict[str, Any] = {
    "response_class": PlainTextResponse,
    "responses": {
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
}

# The docs page: no script, no style or font from elsewhere, nothing loaded from a CDN (which
# would run its code on this origin, and leave the page blank offline). The document itself is
# the machine-readable reference; the page is its table of contents.
DOCS_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def docs_page(document: dict[str, Any], document_url: str) -> str:
    """The API's operations as one plain HTML page, linking to the OpenAPI document."""
    rows = []
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            answers = ", ".join(str(status) for status in operation.get("responses", {}))
            rows.append(
                f"<tr><td><code>{escape(method.upper())} {escape(path)}</code></td>"
                f"<td>{escape(operation.get('summary', ''))}"
                f"<p>{escape(operation.get('description', ''))}</p></td>"
                f"<td>{escape(answers)}</td></tr>"
            )
    info = document.get("info", {})
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(info.get('title', 'API'))}</title><style>body{{font:14px system-ui,"
        "sans-serif;margin:2em;max-width:70em}td{vertical-align:top;padding:.4em;border-bottom:"
        "1px solid #ddd}p{white-space:pre-wrap;margin:.3em 0;color:#555}</style></head><body>"
        f"<h1>{escape(info.get('title', 'API'))} {escape(info.get('version', ''))}</h1>"
        f"<p>{escape(info.get('summary', ''))}</p>"
        f'<p>The whole contract: <a href="{escape(document_url)}">the OpenAPI document</a>.</p>'
        f"<table><tr><th>operation</th><th>what</th><th>answers</th></tr>{''.join(rows)}</table>"
        "</body></html>"
    )
