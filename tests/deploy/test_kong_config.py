"""gateway/kong.yml agrees with hub-api and the operator service, locks every route, describes
the publish policy hub-api enforces (as docs/sending-events.md does), and passes `deck validate`.

Each check returns the problems it finds; the same check runs on the real file (no problems) and
on broken copies (the problem is named), so a check that could never fail would show.
"""

import copy
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hookhub.gateway import GATEWAY_SECRET_HEADER
from hookhub.providers import PROVIDERS
from hookhub.publish_policy import DEFAULT as DEFAULT_PUBLISH_POLICY
from hookhub.settings import DEFAULT_MAX_BODY_BYTES, Settings
from hookhub_operator.auth import OPERATOR_GROUPS
from hub_api.app import create_app
from hub_api.headers import CORRELATION_HEADER

from .repo import KONG_YML, ROOT, kong_renderer, load_yaml, run_tool

render = kong_renderer()
Config = dict[str, Any]
PLACEHOLDER = re.compile(r'^\$\{\{ env "DECK_[A-Z0-9_]+" \}\}$')
URL_KEY_NAME = "apikey"
# Kong megabytes are MiB (Kong multiplies by 2^20)
SIZE_UNIT_BYTES = {"bytes": 1, "kilobytes": 2**10, "megabytes": 2**20}
INTERNAL_GROUP = "internal-events"
# The tag that says, on an internal caller, a type pattern the publish policy lets it publish.
PUBLISHES = "publishes:"
SENDING_EVENTS = ROOT / "docs" / "sending-events.md"
POLICY_SECTION = "### Who may publish what"

# The config fields of Kong 3.x's bundled plugins that this file may use. Debian's decK (1.4)
# checks entities but not plugin configs, so a typo here would only surface when Kong starts.
PLUGIN_FIELDS: dict[str, set[str]] = {
    # Kong 3.9's fields, less the deprecated ones (endpoint, header_type, batch_*)
    "opentelemetry": {
        "traces_endpoint",
        "logs_endpoint",
        "headers",
        "resource_attributes",
        "queue",
        "connect_timeout",
        "send_timeout",
        "read_timeout",
        "http_response_header_for_traceid",
        "sampling_rate",
        "propagation",
    },
    "key-auth": {
        "key_names",
        "key_in_header",
        "key_in_query",
        "key_in_body",
        "hide_credentials",
        "anonymous",
        "run_on_preflight",
        "realm",
    },
    "acl": {"allow", "deny", "hide_groups_header", "always_use_authenticated_groups"},
    "rate-limiting": {
        "second",
        "minute",
        "hour",
        "day",
        "month",
        "year",
        "limit_by",
        "header_name",
        "path",
        "policy",
        "fault_tolerant",
        "hide_client_headers",
        "error_code",
        "error_message",
        "sync_rate",
    },
    "request-size-limiting": {"allowed_payload_size", "size_unit", "require_content_length"},
    "correlation-id": {"header_name", "generator", "echo_downstream"},
    "prometheus": {
        "per_consumer",
        "status_code_metrics",
        "latency_metrics",
        "bandwidth_metrics",
        "upstream_health_metrics",
        "ai_metrics",
    },
    "request-transformer": {"http_method", "remove", "rename", "replace", "add", "append"},
}

# Fields whose Kong 3.x schema accepts only some values: Kong refuses to start on anything else.
PLUGIN_CHOICES: dict[tuple[str, str], set[Any]] = {
    ("correlation-id", "generator"): {"uuid", "uuid#counter", "tracker"},
    ("rate-limiting", "policy"): {"local", "cluster", "redis"},
    ("rate-limiting", "limit_by"): {
        "consumer",
        "consumer-group",
        "credential",
        "ip",
        "service",
        "header",
        "path",
    },
    ("request-size-limiting", "size_unit"): {"megabytes", "kilobytes", "bytes"},
}


def routes(config: Config, service: str | None = None) -> list[dict[str, Any]]:
    """Every route, or those of one service."""
    return [
        route
        for s in config.get("services", [])
        if service is None or s.get("name") == service
        for route in s.get("routes", [])
    ]


def route_paths(route: dict[str, Any]) -> list[str]:
    """The exact paths a route matches: Kong regex paths are written `~/exact$`."""
    return [p[1:].rstrip("$") if p.startswith("~") else p for p in route.get("paths", [])]


def plugins_of(config: Config, route: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The plugins that run on a route: global, then its service's, then its own (Kong's order)."""
    service = next(s for s in config["services"] if route in s.get("routes", []))
    effective: dict[str, dict[str, Any]] = {}
    for plugin in [
        *config.get("plugins", []),
        *service.get("plugins", []),
        *route.get("plugins", []),
    ]:
        effective[plugin["name"]] = plugin.get("config") or {}
    return effective


def webhook_routes(config: Config) -> dict[str, dict[str, Any]]:
    return {
        path.removeprefix("/webhooks/"): route
        for route in routes(config)
        for path in route_paths(route)
        if path.startswith("/webhooks/")
    }


def events_route(config: Config) -> dict[str, Any] | None:
    return next((r for r in routes(config) if "/events" in route_paths(r)), None)


def operator_route(config: Config) -> dict[str, Any] | None:
    return next(iter(routes(config, "operator")), None)


# --- the checks -------------------------------------------------------------------------------


def providers_and_routes_agree(config: Config) -> list[str]:
    routed = set(webhook_routes(config))
    return [f"provider {p} has no /webhooks/{p} route" for p in sorted(set(PROVIDERS) - routed)] + [
        f"route /webhooks/{p} is not a provider hub-api knows"
        for p in sorted(routed - set(PROVIDERS))
    ]


def events_route_exists(config: Config) -> list[str]:
    return [] if events_route(config) else ["no /events route"]


def served_operations() -> set[tuple[str, str]]:
    """(METHOD, path) hub-api serves, `{provider}` expanded to the providers its OpenAPI document
    lists for that operation (a GET handshake only for the providers that have one)."""
    served: set[tuple[str, str]] = set()
    for path, operations in create_app(Settings()).openapi()["paths"].items():
        for method, operation in operations.items():
            providers = next(
                (
                    p["schema"]["enum"]
                    for p in operation.get("parameters", [])
                    if p["name"] == "provider" and p["in"] == "path"
                ),
                [],
            )
            expanded = (
                [path.replace("{provider}", p) for p in providers]
                if "{provider}" in path
                else [path]
            )
            served |= {(method.upper(), p) for p in expanded}
    return served


def routes_agree_with_openapi(config: Config) -> list[str]:
    """Every route's method is one hub-api serves; every POST and handshake GET it serves is
    routed."""
    served = served_operations()
    routed = {
        (m, p)
        for r in routes(config, "hub-api")
        for m in r.get("methods", [])
        for p in route_paths(r)
    }
    ingest = {(m, p) for m, p in served - routed if m == "POST" or p.startswith("/webhooks/")}
    return [
        f"{m} {p} is routed but hub-api does not serve it" for m, p in sorted(routed - served)
    ] + [f"hub-api serves {m} {p} but Kong does not route it" for m, p in sorted(ingest)]


def probes_not_routed(config: Config) -> list[str]:
    probes = [
        path
        for path, operations in create_app(Settings()).openapi()["paths"].items()
        if any("probes" in op.get("tags", []) for op in operations.values())
    ]
    problems = []
    for route in routes(config):
        for raw in route.get("paths", []):
            # a regex path matches by re.match, a plain one by prefix
            matches = (
                (lambda p, raw=raw: re.match(raw[1:], p))
                if raw.startswith("~")
                else (lambda p, raw=raw: p.startswith(raw))
            )
            problems += [
                f"route {route['name']} exposes {probe}" for probe in probes if matches(probe)
            ]
    if not probes:
        problems.append("hub-api's OpenAPI has no probes tagged 'probes' to check")
    return problems


def every_route_authenticates(config: Config) -> list[str]:
    problems = []
    for route in routes(config):
        plugins = plugins_of(config, route)
        for needed in ("key-auth", "acl"):
            if needed not in plugins:
                problems.append(f"route {route.get('name')} has no {needed}")
        key_auth = plugins.get("key-auth", {})
        if key_auth and not key_auth.get("hide_credentials") and not signs_url(config, route):
            problems.append(f"route {route.get('name')}: key-auth passes the key on to hub-api")
        if key_auth and key_auth.get("key_names") != [URL_KEY_NAME]:
            problems.append(f"route {route.get('name')}: key_names is not [{URL_KEY_NAME}]")
    return problems


def signs_url(config: Config, route: dict[str, Any]) -> bool:
    provider = next((p for p, r in webhook_routes(config).items() if r is route), None)
    return provider in PROVIDERS and PROVIDERS[provider].signs_url


def url_signing_providers_get_their_url_whole(config: Config) -> list[str]:
    """A provider that signs the URL (Twilio) needs the key and the Host that were in it."""
    problems = []
    for name, route in webhook_routes(config).items():
        if name in PROVIDERS and PROVIDERS[name].signs_url:
            if plugins_of(config, route).get("key-auth", {}).get("hide_credentials") is not False:
                problems.append(f"{name} signs its URL: key-auth must not hide the key from it")
            if route.get("preserve_host") is not True:
                problems.append(f"{name} signs its URL: the route must preserve the Host")
    return problems


def key_location_fits_the_provider(config: Config) -> list[str]:
    """URL-only providers carry the key in the query string; everyone else in a header only."""
    problems = []
    routed = dict(webhook_routes(config))
    if route := events_route(config):
        routed["/events"] = route
    for name, route in routed.items():
        in_query = PROVIDERS[name].key_in_query if name in PROVIDERS else False
        key_auth = plugins_of(config, route).get("key-auth", {})
        wanted = {"key_in_query": in_query, "key_in_header": not in_query, "key_in_body": False}
        for field, value in wanted.items():
            if key_auth.get(field) is not value:
                problems.append(f"{name}: key-auth {field} should be {value}")
    return problems


def each_key_opens_only_its_own_route(config: Config) -> list[str]:
    groups = {
        c["username"]: {a["group"] for a in c.get("acls", [])} for c in config.get("consumers", [])
    }
    opened: dict[str, set[str]] = {name: set() for name in groups}
    for route in routes(config):
        allow = set(plugins_of(config, route).get("acl", {}).get("allow", []))
        for name, member_of in groups.items():
            if member_of & allow:
                opened[name].add(route["name"])
    problems = []
    for name, route_names in opened.items():
        if name in PROVIDERS:
            expected = {webhook_routes(config).get(name, {}).get("name")}
        elif groups[name] & set(OPERATOR_GROUPS):
            expected = {(operator_route(config) or {}).get("name")}
        else:
            expected = {(events_route(config) or {}).get("name")}
        if route_names != expected:
            problems.append(
                f"consumer {name} opens {sorted(route_names)}, not {sorted(map(str, expected))}"
            )
    problems += [f"provider {p} has no consumer of its own" for p in PROVIDERS if p not in groups]
    return problems


def edge_plugins_cover_every_route(config: Config) -> list[str]:
    problems = []
    for route in routes(config):
        plugins = plugins_of(config, route)
        for needed in ("rate-limiting", "request-size-limiting", "correlation-id", "prometheus"):
            if needed not in plugins:
                problems.append(f"route {route.get('name')} has no {needed}")
        size = plugins.get("request-size-limiting")
        if size:
            limit = (
                size.get("allowed_payload_size", 128)
                * SIZE_UNIT_BYTES[size.get("size_unit", "megabytes")]
            )
            if limit > DEFAULT_MAX_BODY_BYTES:
                problems.append(
                    f"route {route.get('name')}: Kong admits {limit} bytes, "
                    f"hub-api {DEFAULT_MAX_BODY_BYTES}"
                )
        correlation = plugins.get("correlation-id")
        if correlation and (
            correlation.get("header_name", "").lower() != CORRELATION_HEADER
            or not correlation.get("echo_downstream")
        ):
            problems.append(
                f"route {route.get('name')}: correlation-id is not {CORRELATION_HEADER}, echoed"
            )
    return problems


def gateway_secret_injected_and_client_copy_stripped(config: Config) -> list[str]:
    problems = []
    for route in routes(config):
        transformer = plugins_of(config, route).get("request-transformer", {})
        removed = [h.lower() for h in transformer.get("remove", {}).get("headers", [])]
        added = {
            h.split(":", 1)[0].lower(): h.split(":", 1)[1]
            for h in transformer.get("add", {}).get("headers", [])
        }
        if GATEWAY_SECRET_HEADER not in removed:
            problems.append(
                f"route {route.get('name')}: a client-sent {GATEWAY_SECRET_HEADER} is not removed"
            )
        if GATEWAY_SECRET_HEADER not in added:
            problems.append(f"route {route.get('name')}: {GATEWAY_SECRET_HEADER} is not injected")
    return problems


def no_secret_in_clear(config: Config) -> list[str]:
    values = [
        (f"key of consumer {c['username']}", cred.get("key", ""))
        for c in config.get("consumers", [])
        for cred in c.get("keyauth_credentials", [])
    ]
    for route in routes(config):
        for header in (
            plugins_of(config, route)
            .get("request-transformer", {})
            .get("add", {})
            .get("headers", [])
        ):
            name, _, value = header.partition(":")
            values.append((f"header {name} on {route['name']}", value))
    return [
        f"{what} is not a decK env placeholder"
        for what, value in values
        if not PLACEHOLDER.match(str(value))
    ]


def operator_route_opens_to_the_operator_groups(config: Config) -> list[str]:
    """The operator service's one route: a prefix whose stripped path the service serves, keys
    in a header, both operator groups and no other, their names passed on, a consumer in each."""
    route = operator_route(config)
    if route is None:
        return ["the operator service has no route"]
    problems = []
    if route.get("strip_path") is not True:
        problems.append("the operator route must strip its prefix (the service serves /)")
    plugins = plugins_of(config, route)
    acl = plugins.get("acl", {})
    if set(acl.get("allow", [])) != set(OPERATOR_GROUPS):
        problems.append(
            f"the operator route admits {acl.get('allow')}, not {list(OPERATOR_GROUPS)}"
        )
    if acl.get("hide_groups_header") is not False:
        problems.append("the operator route hides X-Consumer-Groups: the service needs them")
    key_auth = plugins.get("key-auth", {})
    if key_auth.get("key_in_query") is not False or key_auth.get("key_in_header") is not True:
        problems.append("operators send their key in a header, never in a URL")
    members = {a["group"] for c in config.get("consumers", []) for a in c.get("acls", [])}
    problems += [f"no consumer is in {group}" for group in OPERATOR_GROUPS if group not in members]
    return problems


def internal_callers(config: Config) -> dict[str, set[str]]:
    """Each consumer in the internal-events group, with the type patterns its tags say it
    publishes."""
    return {
        consumer["username"]: {
            tag.removeprefix(PUBLISHES)
            for tag in consumer.get("tags", [])
            if tag.startswith(PUBLISHES)
        }
        for consumer in config.get("consumers", [])
        if any(acl["group"] == INTERNAL_GROUP for acl in consumer.get("acls", []))
    }


def internal_callers_are_the_publish_policys(config: Config) -> list[str]:
    described = internal_callers(config)
    policy = {caller: set(patterns) for caller, patterns in DEFAULT_PUBLISH_POLICY.items()}
    problems = [
        f"internal caller {caller} has no row in the publish policy: hub-api refuses all it sends"
        for caller in described
        if caller not in policy
    ]
    problems += [
        f"internal caller {caller} publishes {sorted(patterns)} in kong.yml, "
        f"{sorted(policy[caller])} in the publish policy"
        for caller, patterns in described.items()
        if caller in policy and patterns != policy[caller]
    ]
    problems += [
        f"the publish policy names {caller}, which is no internal caller in kong.yml"
        for caller in policy
        if caller not in described
    ]
    return problems


def plugin_configs_are_known(config: Config) -> list[str]:
    everywhere = [*config.get("plugins", [])]
    for service in config.get("services", []):
        everywhere += service.get("plugins", [])
        for route in service.get("routes", []):
            everywhere += route.get("plugins", [])
    problems = []
    for plugin in everywhere:
        known = PLUGIN_FIELDS.get(plugin["name"])
        if known is None:
            problems.append(f"plugin {plugin['name']} is not one this file is checked for")
            continue
        config_ = plugin.get("config", {})
        problems += [f"{plugin['name']}: unknown field {f}" for f in sorted(set(config_) - known)]
        problems += [
            f"{name}: {field} {config_[field]!r} is not one of {sorted(choices)}"
            for (name, field), choices in PLUGIN_CHOICES.items()
            if name == plugin["name"] and field in config_ and config_[field] not in choices
        ]
    return problems


CHECKS: list[Callable[[Config], list[str]]] = [
    providers_and_routes_agree,
    events_route_exists,
    routes_agree_with_openapi,
    probes_not_routed,
    every_route_authenticates,
    url_signing_providers_get_their_url_whole,
    key_location_fits_the_provider,
    each_key_opens_only_its_own_route,
    edge_plugins_cover_every_route,
    gateway_secret_injected_and_client_copy_stripped,
    no_secret_in_clear,
    operator_route_opens_to_the_operator_groups,
    internal_callers_are_the_publish_policys,
    plugin_configs_are_known,
]


@pytest.fixture(scope="module")
def kong() -> Config:
    return load_yaml(KONG_YML)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_kong_yml_passes(kong: Config, check: Callable[[Config], list[str]]) -> None:
    assert check(kong) == []


def documented_publish_policy(text: str) -> dict[str, set[str]]:
    """The first table of docs/sending-events.md's publish policy section: caller → patterns."""
    section = text.split(POLICY_SECTION, 1)[1]
    (table,) = re.findall(r"(?m)((?:^\|.*\n)+)", section)[:1]
    rows = re.findall(r"(?m)^\| `([^`|]+)` \| ([^|]+) \|", table)
    return {caller: set(re.findall(r"`([^`]+)`", allowed)) for caller, allowed in rows}


def test_the_docs_policy_table_the_default_policy_and_kong_ymls_internal_callers_agree(
    kong: Config,
) -> None:
    documented = documented_publish_policy(SENDING_EVENTS.read_text())
    policy = {caller: set(patterns) for caller, patterns in DEFAULT_PUBLISH_POLICY.items()}

    assert documented == policy
    assert internal_callers(kong) == policy


def test_a_docs_policy_table_that_differs_is_caught() -> None:
    text = SENDING_EVENTS.read_text().replace(
        "| `jenkins` | `ci.#`, `deploy.#` |", "| `jenkins` | `#` |"
    )

    assert documented_publish_policy(text)["jenkins"] == {"#"}


# --- broken copies: each check names what is wrong --------------------------------------------


def _route(config: Config, name: str) -> dict[str, Any]:
    return next(r for r in routes(config) if r["name"] == name)


def _drop_route(name: str) -> Callable[[Config], None]:
    def mutate(config: Config) -> None:
        config["services"][0]["routes"].remove(_route(config, name))

    return mutate


def _rename_plugin(route: str, old: str, new: str) -> Callable[[Config], None]:
    def mutate(config: Config) -> None:
        next(p for p in _route(config, route)["plugins"] if p["name"] == old)["name"] = new

    return mutate


def _set(
    path: Callable[[Config], dict[str, Any]], key: str, value: Any
) -> Callable[[Config], None]:
    return lambda config: path(config).__setitem__(key, value)


def _key_auth(route: str) -> Callable[[Config], dict[str, Any]]:
    return lambda c: next(p for p in _route(c, route)["plugins"] if p["name"] == "key-auth")[
        "config"
    ]


def _acl(route: str) -> Callable[[Config], dict[str, Any]]:
    return lambda c: next(p for p in _route(c, route)["plugins"] if p["name"] == "acl")["config"]


def _route_of(name: str) -> Callable[[Config], dict[str, Any]]:
    return lambda c: _route(c, name)


def _service_plugin(name: str) -> Callable[[Config], dict[str, Any]]:
    return lambda c: next(p for p in c["services"][0]["plugins"] if p["name"] == name)["config"]


def _consumer(username: str) -> Callable[[Config], dict[str, Any]]:
    return lambda c: next(x for x in c["consumers"] if x["username"] == username)


def _add_route(path: str) -> Callable[[Config], None]:
    return lambda c: c["services"][0]["routes"].append(
        copy.deepcopy(_route(c, "events")) | {"name": "extra", "paths": [path]}
    )


BREAKAGES = [
    pytest.param(
        lambda c: _consumer("jenkins")(c)["tags"].append("publishes:order.created"),
        internal_callers_are_the_publish_policys,
        "internal caller jenkins publishes ['ci.#', 'deploy.#', 'order.created'] in kong.yml",
        id="kong-policy-wider-than-hub-apis",
    ),
    pytest.param(
        lambda c: c["consumers"].append(
            {"username": "crm", "acls": [{"group": "internal-events"}]}
        ),
        internal_callers_are_the_publish_policys,
        "internal caller crm has no row in the publish policy",
        id="internal-caller-without-a-policy",
    ),
    pytest.param(
        lambda c: c["consumers"].remove(_consumer("workshop")(c)),
        internal_callers_are_the_publish_policys,
        "the publish policy names workshop, which is no internal caller",
        id="policy-caller-not-in-kong",
    ),
    pytest.param(
        _drop_route("webhooks-stripe"),
        providers_and_routes_agree,
        "provider stripe has no",
        id="provider-without-route",
    ),
    pytest.param(
        _add_route("~/webhooks/paypal$"),
        providers_and_routes_agree,
        "paypal is not a provider",
        id="route-for-unknown-provider",
    ),
    pytest.param(
        _drop_route("events"), events_route_exists, "no /events route", id="no-events-route"
    ),
    pytest.param(
        _add_route("~/status$"),
        routes_agree_with_openapi,
        "/status is routed but hub-api",
        id="route-hub-api-lacks",
    ),
    pytest.param(
        _drop_route("webhooks-kiwify"),
        routes_agree_with_openapi,
        "/webhooks/kiwify but Kong",
        id="served-path-unrouted",
    ),
    pytest.param(
        _add_route("/"), probes_not_routed, "exposes /livez", id="prefix-route-exposes-probes"
    ),
    pytest.param(
        _add_route("~/metrics$"), probes_not_routed, "exposes /metrics", id="metrics-routed"
    ),
    pytest.param(
        _rename_plugin("webhooks-github", "key-auth", "key-authh"),
        every_route_authenticates,
        "webhooks-github has no key-auth",
        id="plugin-name-typo",
    ),
    pytest.param(
        _rename_plugin("events", "acl", "cors"),
        every_route_authenticates,
        "events has no acl",
        id="route-without-acl",
    ),
    pytest.param(
        _set(_key_auth("webhooks-hotmart"), "hide_credentials", False),
        every_route_authenticates,
        "passes the key on",
        id="key-not-hidden",
    ),
    pytest.param(
        _set(_key_auth("webhooks-twilio"), "hide_credentials", True),
        url_signing_providers_get_their_url_whole,
        "twilio signs its URL: key-auth must not hide",
        id="url-signer-without-its-key",
    ),
    pytest.param(
        lambda c: _route(c, "webhooks-twilio").pop("preserve_host"),
        url_signing_providers_get_their_url_whole,
        "the route must preserve the Host",
        id="url-signer-without-its-host",
    ),
    pytest.param(
        _set(_key_auth("webhooks-slack"), "hide_credentials", False),
        every_route_authenticates,
        "webhooks-slack: key-auth passes the key on",
        id="key-passed-to-a-provider-that-does-not-sign-its-url",
    ),
    pytest.param(
        _set(_route_of("webhooks-whatsapp"), "methods", ["POST"]),
        routes_agree_with_openapi,
        "serves GET /webhooks/whatsapp but Kong",
        id="handshake-get-unrouted",
    ),
    pytest.param(
        _set(_route_of("webhooks-stripe"), "methods", ["GET", "POST"]),
        routes_agree_with_openapi,
        "GET /webhooks/stripe is routed but hub-api",
        id="get-routed-for-a-provider-without-a-handshake",
    ),
    pytest.param(
        _set(_key_auth("webhooks-mercadopago"), "key_in_query", False),
        key_location_fits_the_provider,
        "mercadopago: key-auth key_in_query",
        id="url-only-provider-without-query-key",
    ),
    pytest.param(
        _set(_key_auth("webhooks-standardwebhooks"), "key_in_query", True),
        key_location_fits_the_provider,
        "standardwebhooks: key-auth key_in_query",
        id="header-provider-accepts-query-key",
    ),
    pytest.param(
        lambda c: _consumer("stripe")(c)["acls"].append({"group": "internal-events"}),
        each_key_opens_only_its_own_route,
        "consumer stripe opens",
        id="provider-key-opens-events",
    ),
    pytest.param(
        lambda c: c["consumers"].remove(_consumer("hotmart")(c)),
        each_key_opens_only_its_own_route,
        "hotmart has no consumer",
        id="provider-without-consumer",
    ),
    pytest.param(
        lambda c: c["services"][0]["plugins"].remove(
            {"name": "rate-limiting", "config": _service_plugin("rate-limiting")(c)}
        ),
        edge_plugins_cover_every_route,
        "has no rate-limiting",
        id="no-rate-limiting",
    ),
    pytest.param(
        lambda c: c.pop("plugins"),
        edge_plugins_cover_every_route,
        "has no prometheus",
        id="no-prometheus",
    ),
    pytest.param(
        _set(_service_plugin("request-size-limiting"), "allowed_payload_size", 8),
        edge_plugins_cover_every_route,
        "Kong admits 8388608 bytes",
        id="size-limit-above-hub-api",
    ),
    pytest.param(
        _set(_service_plugin("correlation-id"), "header_name", "Kong-Request-ID"),
        edge_plugins_cover_every_route,
        "correlation-id is not",
        id="wrong-correlation-header",
    ),
    pytest.param(
        lambda c: _service_plugin("request-transformer")(c).pop("remove"),
        gateway_secret_injected_and_client_copy_stripped,
        "is not removed",
        id="client-secret-not-stripped",
    ),
    pytest.param(
        lambda c: _service_plugin("request-transformer")(c).pop("add"),
        gateway_secret_injected_and_client_copy_stripped,
        "is not injected",
        id="secret-not-injected",
    ),
    pytest.param(
        lambda c: _consumer("jenkins")(c)["keyauth_credentials"][0].update(key="jenkins-key-123"),
        no_secret_in_clear,
        "key of consumer jenkins",
        id="key-in-clear",
    ),
    pytest.param(
        lambda c: _service_plugin("request-transformer")(c)["add"].update(
            headers=["X-Hookhub-Gateway-Secret:s3cret"]
        ),
        no_secret_in_clear,
        "header X-Hookhub-Gateway-Secret",
        id="gateway-secret-in-clear",
    ),
    pytest.param(
        lambda c: _acl("operator")(c).update(allow=["operators", "internal-events"]),
        operator_route_opens_to_the_operator_groups,
        "the operator route admits",
        id="operator-route-admits-another-group",
    ),
    pytest.param(
        _set(_acl("operator"), "hide_groups_header", True),
        operator_route_opens_to_the_operator_groups,
        "hides X-Consumer-Groups",
        id="operator-groups-hidden",
    ),
    pytest.param(
        lambda c: _consumer("operator-readonly")(c)["acls"].append({"group": "internal-events"}),
        each_key_opens_only_its_own_route,
        "consumer operator-readonly opens",
        id="operator-key-opens-events",
    ),
    pytest.param(
        lambda c: c["consumers"].remove(_consumer("operator-readonly")(c)),
        operator_route_opens_to_the_operator_groups,
        "no consumer is in operators-readonly",
        id="no-read-only-operator",
    ),
    pytest.param(
        _set(_key_auth("events"), "hide_credential", True),
        plugin_configs_are_known,
        "key-auth: unknown field hide_credential",
        id="config-field-typo",
    ),
    pytest.param(
        _set(_service_plugin("correlation-id"), "generator", "uuid#"),
        plugin_configs_are_known,
        "correlation-id: generator 'uuid#' is not one of",
        id="correlation-generator-not-a-choice",
    ),
]


@pytest.mark.parametrize("mutate, check, expected", BREAKAGES)
def test_a_broken_kong_yml_is_caught(kong: Config, mutate, check, expected: str) -> None:  # type: ignore[no-untyped-def]
    broken = copy.deepcopy(kong)
    mutate(broken)
    problems = check(broken)
    assert any(expected in p for p in problems), problems


# --- rendering for DB-less Kong, and deck validate ---------------------------------------------


def dummy_env(text: str) -> dict[str, str]:
    # distinct values: Kong (and deck) refuse two consumers with the same key
    return {name: f"dummy-{name.lower().replace('_', '-')}" for name in render.variables(text)}


def test_render_substitutes_every_placeholder() -> None:
    text = KONG_YML.read_text()
    rendered = render.render(text, dummy_env(text))
    assert "${{" not in rendered.split("_format_version", 1)[1]
    consumers = {c["username"]: c for c in yaml.safe_load(rendered)["consumers"]}
    assert consumers["stripe"]["keyauth_credentials"][0]["key"] == "dummy-deck-key-stripe"


def test_render_refuses_while_a_key_is_unset_and_names_it() -> None:
    text = KONG_YML.read_text()
    env = dummy_env(text)
    del env["DECK_KEY_KIWIFY"]
    with pytest.raises(render.RenderError, match="DECK_KEY_KIWIFY"):
        render.render(text, env)


@pytest.mark.parametrize("value", ["12345", "true", "a: b", 'quote " and # hash', "{x}"])
def test_rendered_values_stay_the_exact_strings_given(value: str) -> None:
    text = (
        "consumers:\n  - username: x\n    keyauth_credentials:\n"
        '      - key: ${{ env "DECK_KEY_X" }}\n'
    )
    rendered = yaml.safe_load(render.render(text, {"DECK_KEY_X": value}))
    assert rendered["consumers"][0]["keyauth_credentials"][0]["key"] == value


def test_render_refuses_a_placeholder_in_flow_style() -> None:
    text = 'consumers:\n  - keyauth_credentials: [{key: ${{ env "DECK_KEY_X" }}}]\n'
    with pytest.raises(render.RenderError, match="line 2"):
        render.render(text, {"DECK_KEY_X": "k"})


def test_deck_validates_the_rendered_file() -> None:
    text = KONG_YML.read_text()
    result = run_tool(
        "deck", "validate", "--state", "-", input=render.render(text, dummy_env(text))
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "breakage, error",
    [
        pytest.param(
            lambda t: t.replace("    routes:\n", "    routez:\n", 1),
            "routez",
            id="unknown-property",
        ),
        pytest.param(
            lambda t: t.replace("strip_path: false", "strip_path: nope", 1),
            "strip_path",
            id="wrong-type",
        ),
        pytest.param(
            lambda t: t.replace("name: webhooks-github", "name: webhooks-stripe"),
            "already exists",
            id="duplicate-route",
        ),
    ],
)
def test_deck_rejects_a_broken_file(breakage: Callable[[str], str], error: str) -> None:
    text = breakage(KONG_YML.read_text())
    result = run_tool(
        "deck", "validate", "--state", "-", input=render.render(text, dummy_env(text))
    )
    assert result.returncode != 0
    assert error in result.stdout + result.stderr


def test_deck_rejects_two_callers_with_the_same_key() -> None:
    text = KONG_YML.read_text()
    env = dummy_env(text) | {"DECK_KEY_HOTMART": "same", "DECK_KEY_KIWIFY": "same"}
    result = run_tool("deck", "validate", "--state", "-", input=render.render(text, env))
    assert result.returncode != 0
    assert "already exists" in result.stderr
