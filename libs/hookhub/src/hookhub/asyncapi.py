"""The AsyncAPI 3.0 document of the hub, generated from the consumers' specs, the event catalogue,
the data contracts and the topology's names: what flows on which exchange and queue.

Channels are the exchange (`hookhub.events`, every type by its routing key), each consumer's work
queue and parking lot, the archive and the unrouted queue; messages are the catalogue's types,
with their data contract where one is declared (`contracts.CONTRACTS`) and the providers'
webhooks (their bodies as the provider sent them); operations say who sends and who receives.
"""

import re
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from hookhub import contracts, specs, topology
from hookhub.events import EXCHANGE, JSON
from hookhub.providers import PROVIDERS
from hookhub.specs import ConsumerSpec

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"


def message_id(event_type: str) -> str:
    """A component name for a type or binding key (AsyncAPI allows letters, digits, . _ -):
    `*` is one word (`any`), `#` any number of words (`all`)."""
    return re.sub(r"[^\w.\-]", "_", event_type.replace("*", "any").replace("#", "all"))


def _message(event_type: str, emitter: str, meaning: str) -> dict[str, Any]:
    contract = contracts.CONTRACTS.get(event_type)
    payload = (
        contract.model_json_schema(ref_template="#/components/schemas/{model}")
        if contract is not None
        else {"type": "object", "description": "the event's data, as its emitter wrote it"}
    )
    payload.pop("$defs", None)
    return {
        "name": event_type,
        "title": event_type,
        "summary": meaning,
        "contentType": JSON,
        "payload": payload,
        "correlationId": {"location": "$message.header#/correlation_id"},
        "x-emitted-by": emitter,
        "bindings": {"amqp": {"messageType": event_type, "bindingVersion": AMQP_BINDING_VERSION}},
    }


def _webhook_message(provider: str) -> dict[str, Any]:
    return {
        "name": f"{provider}.#",
        "title": f"{provider} webhooks",
        "summary": f"a webhook from {provider}, verified by hub-api; the body as {provider} sent "
        f"it, the type `{provider}.<its own type>`",
        "x-emitted-by": "hub-api",
        "payload": {},
        "bindings": {"amqp": {"bindingVersion": AMQP_BINDING_VERSION}},
    }


def _queue_channel(name: str, description: str, messages: list[str]) -> dict[str, Any]:
    return {
        "address": name,
        "description": description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {"name": name, "durable": True, "exclusive": False, "autoDelete": False},
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }


def _messages_matching(keys: tuple[str, ...], known: dict[str, Any]) -> list[str]:
    return sorted(
        name
        for name, message in known.items()
        if any(
            topology.binding_matches(key, message["name"]) or key == message["name"] for key in keys
        )
    )


def document(consumers: tuple[ConsumerSpec, ...] | None = None) -> dict[str, Any]:
    """The AsyncAPI document for the given consumers (the installed ones by default)."""
    consumers = specs.installed() if consumers is None else consumers
    catalogue = specs.catalogue(consumers)
    messages = {
        message_id(t): _message(t, emitter, meaning) for t, (emitter, meaning) in catalogue.items()
    }
    messages |= {message_id(f"{p}.#"): _webhook_message(p) for p in sorted(PROVIDERS)}
    channels: dict[str, Any] = {
        "events": {
            "address": EXCHANGE,
            "description": "every event, routed by its type (the routing key)",
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in sorted(messages)},
            "bindings": {
                "amqp": {
                    "is": "routingKey",
                    "exchange": {"name": EXCHANGE, "type": "topic", "durable": True},
                    "bindingVersion": AMQP_BINDING_VERSION,
                }
            },
        },
        "archive": _queue_channel(
            topology.ARCHIVE_QUEUE, "the event log: a stream of every event", sorted(messages)
        ),
        "unrouted": _queue_channel(
            topology.UNROUTED_QUEUE, "events no queue binds (without the archive)", []
        ),
    }
    inbound = sorted(message_id(t) for t, (by, _) in catalogue.items() if by == "internal")
    operations: dict[str, Any] = {
        "acceptEvents": {
            "action": "send",
            "channel": {"$ref": "#/channels/events"},
            "summary": "hub-api publishes what callers and providers send, once the broker "
            "confirms it",
            "messages": [
                {"$ref": f"#/channels/events/messages/{m}"}
                for m in inbound + sorted(message_id(f"{p}.#") for p in PROVIDERS)
            ],
        }
    }
    for spec in consumers:
        bound = _messages_matching(spec.bindings, messages)
        channels[spec.name] = _queue_channel(
            topology.work_queue(spec.name), spec.description or f"the {spec.name} consumer", bound
        )
        channels[f"{spec.name}Parked"] = _queue_channel(
            topology.dead_letter_queue(spec.name), f"{spec.name}'s parking lot", []
        )
        operations[f"{spec.name}Receives"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{spec.name}"},
            "messages": [{"$ref": f"#/channels/{spec.name}/messages/{m}"} for m in bound],
        }
        if spec.emits:
            operations[f"{spec.name}Emits"] = {
                "action": "send",
                "channel": {"$ref": "#/channels/events"},
                "messages": [
                    {"$ref": f"#/channels/events/messages/{message_id(t)}"}
                    for t in sorted(spec.emits)
                ],
            }
    schemas = {
        name: schema
        for contract in contracts.CONTRACTS.values()
        for name, schema in contract.model_json_schema().get("$defs", {}).items()
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "Hookhub",
            "version": _version(),
            "description": "One door for webhooks and internal events: what flows through the "
            "hub's RabbitMQ exchange and queues.",
        },
        "defaultContentType": JSON,
        "servers": {
            "rabbitmq": {
                "host": "rabbitmq:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "the team's own RabbitMQ (HOOKHUB_AMQP_URL)",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def _version() -> str:
    try:
        return version("hookhub")
    except PackageNotFoundError:  # a source tree not installed
        return "0.0.0"
