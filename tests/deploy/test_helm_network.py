"""The chart's NetworkPolicies: every pod it runs is selected by a policy for ingress and egress,
and each may reach only what its work needs (DNS, the broker, the store, Kong → hub-api and the
console) and be reached only by who must (Kong's callers, Kong, the metrics scrapers)."""

import copy
import json
from typing import Any

import pytest
from hookhub import specs

from .chart import (
    Manifest,
    manifests_of,
    of_kind,
    pod_labels,
    render,
    render_all_features,
    workloads,
)

DNS, BROKER, STORE, OTLP = {53}, {5672, 5671}, {27017}, {4318}
HTTPS_AND_HTTP = {443, 80}
# What each component may reach, by port: the chart's defaults.
EGRESS_PORTS = {
    "hub-api": DNS | BROKER,
    "payments": DNS | BROKER | STORE | {443},  # the Mercado Pago API
    "production": DNS | BROKER | STORE,
    "notifications": DNS | BROKER | STORE | HTTPS_AND_HTTP,  # the notification receivers
    "operator": DNS | BROKER | STORE,  # not hub-api: HOOKHUB_API_METRICS_URL stays unset
    "kong": DNS | {8000, 8001},
    "topology": DNS | BROKER,
    "test": DNS | {8000},
}
SCRAPER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
}


@pytest.fixture(scope="module")
def defaults() -> list[Manifest]:
    return manifests_of(render())


@pytest.fixture(scope="module")
def all_features() -> list[Manifest]:
    return manifests_of(render_all_features())


def selects(policy: Manifest, labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return wanted.items() <= labels.items()


def policies_of(manifests: list[Manifest], workload: Manifest) -> list[Manifest]:
    return [
        p for p in of_kind(manifests, "NetworkPolicy").values() if selects(p, pod_labels(workload))
    ]


def unguarded(manifests: list[Manifest]) -> list[str]:
    """Pods that no single policy restricts both ways."""
    problems = []
    for name, workload in workloads(manifests).items():
        policies = policies_of(manifests, workload)
        if len(policies) != 1:
            problems.append(f"{name}: selected by {len(policies)} policies")
        elif set(policies[0]["spec"]["policyTypes"]) != {"Ingress", "Egress"}:
            problems.append(f"{name}: policy types {policies[0]['spec']['policyTypes']}")
    return problems


@pytest.mark.parametrize("render_name", ["defaults", "all_features"])
def test_every_pod_is_selected_by_one_policy_for_ingress_and_egress(
    render_name: str, request: pytest.FixtureRequest
) -> None:
    manifests = request.getfixturevalue(render_name)
    assert set(workloads(manifests)) == {*EGRESS_PORTS}
    assert unguarded(manifests) == []


def test_a_pod_without_a_policy_is_caught(defaults: list[Manifest]) -> None:
    policy = of_kind(defaults, "NetworkPolicy")["hookhub-production"]
    without = [m for m in defaults if m is not policy]
    assert unguarded(without) == ["production: selected by 0 policies"]


def egress_ports(policy: Manifest) -> set[int]:
    return {port["port"] for rule in policy["spec"]["egress"] for port in rule.get("ports", [])}


def reached(manifests: list[Manifest]) -> dict[str, set[int]]:
    """The ports each component may open connections to."""
    return {
        name: egress_ports(policy)
        for name, workload in workloads(manifests).items()
        for policy in policies_of(manifests, workload)
    }


def test_each_component_reaches_only_what_its_work_needs(defaults: list[Manifest]) -> None:
    assert reached(defaults) == EGRESS_PORTS


def test_a_policy_opening_one_more_port_is_caught(defaults: list[Manifest]) -> None:
    opened = copy.deepcopy(defaults)
    policy = of_kind(opened, "NetworkPolicy")["hookhub-production"]
    policy["spec"]["egress"].append({"ports": [{"protocol": "TCP", "port": 22}]})
    assert reached(opened)["production"] == EGRESS_PORTS["production"] | {22}


def test_every_egress_rule_names_its_ports(defaults: list[Manifest]) -> None:
    # a rule without ports would open every port of its peers (or of every address)
    for policy in of_kind(defaults, "NetworkPolicy").values():
        assert all(rule.get("ports") for rule in policy["spec"]["egress"]), policy["metadata"]


def peer_components(rule: dict[str, Any]) -> set[str]:
    return {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in rule.get("to", rule.get("from", []))
        if "podSelector" in peer and "namespaceSelector" not in peer
    }


def test_kong_reaches_hub_api_and_the_test_pod_reaches_kong(defaults: list[Manifest]) -> None:
    policies = of_kind(defaults, "NetworkPolicy")
    kong_to = [r for r in policies["hookhub-kong"]["spec"]["egress"] if peer_components(r)]
    test_to = [r for r in policies["hookhub-test"]["spec"]["egress"] if peer_components(r)]
    assert [(peer_components(r), egress_ports({"spec": {"egress": [r]}})) for r in kong_to] == [
        ({"hub-api"}, {8000}),
        ({"operator"}, {8001}),
    ]
    assert [(peer_components(r), egress_ports({"spec": {"egress": [r]}})) for r in test_to] == [
        ({"kong"}, {8000})
    ]


def ingress(manifests: list[Manifest], name: str) -> list[dict[str, Any]]:
    return of_kind(manifests, "NetworkPolicy")[name]["spec"].get("ingress", [])


def test_by_default_nothing_but_kong_connects_to_a_hookhub_process(
    defaults: list[Manifest],
) -> None:
    for name, port in (("hub-api", 8000), ("operator", 8001)):
        assert ingress(defaults, f"hookhub-{name}") == [
            {
                "from": [{"podSelector": {"matchLabels": pod_labels_of("kong")}}],
                "ports": [{"protocol": "TCP", "port": port}],
            }
        ], name
    for consumer in specs.names():
        assert ingress(defaults, f"hookhub-{consumer}") == []
    # Kong's proxy is the public door: open to anyone, on the proxy port only
    assert ingress(defaults, "hookhub-kong") == [{"ports": [{"protocol": "TCP", "port": 8000}]}]


def pod_labels_of(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "hookhub",
        "app.kubernetes.io/instance": "hookhub",
        "app.kubernetes.io/component": component,
    }


def test_the_named_scraper_reaches_each_metrics_port_and_nothing_more() -> None:
    manifests = manifests_of(
        render("--set-json", f"networkPolicy.metricsFrom=[{json.dumps(SCRAPER)}]")
    )
    metrics_ports = {"hookhub-hub-api": 8000, "hookhub-kong": 8100, "hookhub-operator": 8001} | {
        f"hookhub-{c}": 9100 for c in specs.names()
    }
    for name, port in metrics_ports.items():
        scraped = [rule for rule in ingress(manifests, name) if rule.get("from") == [SCRAPER]]
        assert scraped == [{"from": [SCRAPER], "ports": [{"protocol": "TCP", "port": port}]}], name


def test_tracing_opens_the_collector_to_every_component(all_features: list[Manifest]) -> None:
    for name, workload in workloads(all_features).items():
        (policy,) = policies_of(all_features, workload)
        assert OTLP <= egress_ports(policy), name


def test_the_broker_and_store_peers_narrow_their_rules(all_features: list[Manifest]) -> None:
    payments = of_kind(all_features, "NetworkPolicy")["hookhub-events-payments"]
    (broker_rule,) = (
        r for r in payments["spec"]["egress"] if {"port": 5672, "protocol": "TCP"} in r["ports"]
    )
    assert broker_rule["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "rabbitmq"}}}
    ]


def test_the_topology_jobs_policy_exists_before_the_job_runs(defaults: list[Manifest]) -> None:
    """The Job is a pre-install hook: a policy created with the release would come after it."""
    policy = of_kind(defaults, "NetworkPolicy")["hookhub-topology"]
    job = of_kind(defaults, "Job")["hookhub-topology"]
    policy_hook, job_hook = policy["metadata"]["annotations"], job["metadata"]["annotations"]
    assert policy_hook["helm.sh/hook"] == job_hook["helm.sh/hook"]
    assert int(policy_hook["helm.sh/hook-weight"]) < int(job_hook.get("helm.sh/hook-weight", 0))
    test_policy = of_kind(defaults, "NetworkPolicy")["hookhub-test"]
    assert test_policy["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_without_the_console_neither_its_policy_nor_kongs_way_to_it_is_rendered() -> None:
    manifests = manifests_of(render("--set", "operator.enabled=false"))
    assert "hookhub-operator" not in of_kind(manifests, "NetworkPolicy")
    assert reached(manifests)["kong"] == DNS | {8000}


def test_network_policies_can_be_left_to_the_cluster() -> None:
    manifests = manifests_of(render("--set", "networkPolicy.enabled=false"))
    assert of_kind(manifests, "NetworkPolicy") == {}
