"""The chart's options, each rendered and checked for what it promises: scheduling, image digests,
name overrides, Kong's UID, tracing, KEDA on queue depth, the CRD-gated monitoring kinds, the
dashboard's ConfigMap, and the `helm test` pod, which is run here against a stand-in Kong."""

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hookhub import specs, topology

from .chart import (
    ALL_FEATURES,
    CHART,
    CRD_FLAGS,
    Manifest,
    deployments,
    kubernetes_validate,
    manifests_of,
    of_kind,
    pod,
    pod_labels,
    pod_spec,
    render,
    render_all_features,
    workloads,
)

# The kinds kubernetes-validate has no schema for: the CRDs the options render.
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "PodMonitor", "PrometheusRule"}


@pytest.fixture(scope="module")
def all_features_text() -> str:
    return render_all_features()


@pytest.fixture(scope="module")
def all_features(all_features_text: str) -> list[Manifest]:
    return manifests_of(all_features_text)


@pytest.fixture(scope="module")
def defaults() -> list[Manifest]:
    return manifests_of(render())


def test_every_option_on_passes_kubernetes_validate_strictly(
    all_features_text: str, tmp_path: Path
) -> None:
    path = tmp_path / "all-features.yaml"
    path.write_text(all_features_text)
    result = kubernetes_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    # the only kinds it could not check are the CRDs': a misspelt core apiVersion would show here
    unchecked = {
        line.split("for kind ")[1].split()[0]
        for line in (result.stdout + result.stderr).splitlines()
        if "Couldn't find schema" in line
    }
    assert unchecked == CRD_KINDS


# --- where pods run, and what they run --------------------------------------------------------


def test_scheduling_values_reach_the_pods(all_features: list[Manifest]) -> None:
    hub_api = pod(deployments(all_features)["hub-api"])
    assert hub_api["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert hub_api["tolerations"][0]["key"] == "dedicated"
    assert "podAntiAffinity" in hub_api["affinity"]
    assert pod_spec(workloads(all_features)["topology"])["nodeSelector"] == {
        "kubernetes.io/os": "linux"
    }
    console = pod(deployments(all_features)["operator"])
    assert console["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert console["tolerations"][0]["key"] == "dedicated"


def test_pods_spread_over_zones_and_nodes_among_their_own_kind(defaults: list[Manifest]) -> None:
    for name, deployment in deployments(defaults).items():
        spread = pod(deployment)["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        }
        own = deployment["spec"]["selector"]["matchLabels"]
        assert all(c["labelSelector"]["matchLabels"] == own for c in spread), name
        assert all(c["whenUnsatisfiable"] == "ScheduleAnyway" for c in spread), name


def images(manifests: list[Manifest]) -> set[str]:
    return {
        container["image"]
        for workload in workloads(manifests).values()
        for container in pod_spec(workload)["containers"]
        + pod_spec(workload).get("initContainers", [])
    }


def test_images_run_by_digest_when_one_is_given(all_features: list[Manifest]) -> None:
    assert images(all_features) == {
        "registry.example.com/hookhub/hookhub-api@sha256:" + "1" * 64,
        "registry.example.com/hookhub/hookhub-consumers@sha256:" + "2" * 64,
        "registry.example.com/hookhub/hookhub-operator@sha256:" + "4" * 64,
        "kong@sha256:" + "3" * 64,
    }


def test_images_run_by_tag_without_a_digest(defaults: list[Manifest]) -> None:
    assert images(defaults) == {
        "registry.example.com/hookhub/hookhub-api:0.1.0",
        "registry.example.com/hookhub/hookhub-consumers:0.1.0",
        "registry.example.com/hookhub/hookhub-operator:0.1.0",
        "kong:3.9",
    }


@pytest.mark.parametrize(
    "setting, prefix",
    [("nameOverride=events", "hookhub-events"), ("fullnameOverride=hh", "hh")],
)
def test_name_overrides_rename_every_resource(setting: str, prefix: str) -> None:
    manifests = manifests_of(render("--set", setting))
    names = [m["metadata"]["name"] for m in manifests]
    assert [n for n in names if n != prefix and not n.startswith(f"{prefix}-")] == []
    # and Kong still finds hub-api under its new name
    (renderer,) = pod(deployments(manifests)["kong"])["initContainers"]
    host = next(e["value"] for e in renderer["env"] if e["name"] == "DECK_HUB_API_HOST")
    assert host in of_kind(manifests, "Service")


def test_kong_does_not_run_as_its_images_uid_1000(defaults: list[Manifest]) -> None:
    for name, workload in workloads(defaults).items():
        security = pod_spec(workload)["securityContext"]
        assert security["runAsUser"] >= 10000 and security["runAsNonRoot"], name


def env_of(deployment: Manifest) -> dict[str, str | None]:
    (container,) = pod(deployment)["containers"]
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_tracing_is_off_until_an_endpoint_is_given(
    defaults: list[Manifest], all_features: list[Manifest]
) -> None:
    for name, deployment in deployments(defaults).items():
        assert not any(n.startswith("OTEL_") for n in env_of(deployment)), name
    assert env_of(deployments(defaults)["kong"])["KONG_TRACING_INSTRUMENTATIONS"] == "off"
    for name, deployment in deployments(all_features).items():
        env = env_of(deployment)
        if name == "kong":
            assert env["KONG_TRACING_INSTRUMENTATIONS"] == "request"
            assert env["KONG_TRACING_SAMPLING_RATE"] == "0.25"
        else:
            assert (
                env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability.svc:4318"
            )
            assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"


# --- KEDA and the monitoring kinds -----------------------------------------------------------


def test_keda_scales_each_consumer_on_its_work_queue(all_features: list[Manifest]) -> None:
    scaled = {
        s["spec"]["scaleTargetRef"]["name"]: s["spec"]
        for s in of_kind(all_features, "ScaledObject").values()
    }
    assert set(scaled) == {f"hookhub-events-{c}" for c in specs.names()}
    (auth,) = of_kind(all_features, "TriggerAuthentication")
    for consumer in specs.names():
        (trigger,) = scaled[f"hookhub-events-{consumer}"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == topology.work_queue(consumer)
        assert trigger["metadata"]["mode"] == "QueueLength"
        assert trigger["authenticationRef"]["name"] == auth
    # KEDA's HPA replaces the chart's: two would fight over the replica count
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in of_kind(all_features, "HorizontalPodAutoscaler").values()
    }
    assert hpas == {"hookhub-events-hub-api", "hookhub-events-kong"}
    # (the console has no autoscaler: it keeps its own replica count)
    scaled_deployments = [d for n, d in deployments(all_features).items() if n != "operator"]
    assert all("replicas" not in d["spec"] for d in scaled_deployments)
    assert deployments(all_features)["operator"]["spec"]["replicas"] == 2


def test_keda_reads_the_broker_url_from_the_secret(all_features: list[Manifest]) -> None:
    (auth,) = of_kind(all_features, "TriggerAuthentication").values()
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "host", "name": "hookhub", "key": "HOOKHUB_AMQP_URL"}
    ]


def kinds(manifests: list[Manifest]) -> set[str]:
    return {m["kind"] for m in manifests}


def test_crd_kinds_are_rendered_only_where_the_cluster_has_them() -> None:
    without_crds = manifests_of(render("-f", str(ALL_FEATURES)))
    assert not kinds(without_crds) & CRD_KINDS
    # without KEDA, the consumers keep their HPAs
    assert len(of_kind(without_crds, "HorizontalPodAutoscaler")) == 2 + len(specs.names())


def test_every_optional_feature_is_off_by_default(defaults: list[Manifest]) -> None:
    everything_announced = manifests_of(render(*CRD_FLAGS))
    assert not kinds(everything_announced) & CRD_KINDS
    assert not [m for m in defaults if m["metadata"]["name"].endswith("-dashboard")]


def test_the_pod_monitor_scrapes_each_components_metrics_port(all_features: list[Manifest]) -> None:
    (monitor,) = of_kind(all_features, "PodMonitor").values()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    ports = {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    named = {
        name: {p["name"] for c in pod(d)["containers"] for p in c.get("ports", [])}
        for name, d in deployments(all_features).items()
    }
    # each Deployment exposes exactly one of the scraped ports, and that port serves /metrics
    assert all(len(ports & names) == 1 for names in named.values()), named
    assert all(e["path"] == "/metrics" for e in monitor["spec"]["podMetricsEndpoints"])
    selector = monitor["spec"]["selector"]["matchLabels"].items()
    assert all(selector <= pod_labels(d).items() for d in deployments(all_features).values())


def test_the_dashboard_configmap_carries_the_sidecar_label_and_the_dashboard(
    all_features: list[Manifest],
) -> None:
    config_map = of_kind(all_features, "ConfigMap")["hookhub-events-dashboard"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Hookhub"}
    assert json.loads(config_map["data"]["hookhub.json"]) == json.loads(
        (CHART / "dashboards" / "hookhub.json").read_text()
    )


# --- helm test --------------------------------------------------------------------------------


class StandInKong(http.server.BaseHTTPRequestHandler):
    """Answers POST /events with the status the test gives it, and keeps what it was sent."""

    status = 202
    received: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["content-length"]))
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.received.append((self.path, headers, body))
        self.send_response(self.status)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"id": "e1", "type": "ci.smoke"}')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stand_in_kong() -> Iterator[tuple[str, type[StandInKong]]]:
    handler = type("Handler", (StandInKong,), {"received": [], "status": 202})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


def run_helm_test_pod(manifests: list[Manifest], kong_url: str) -> subprocess.CompletedProcess[str]:
    """The test pod's own command, run here with its environment (Kong's URL pointed here)."""
    (test_pod,) = of_kind(manifests, "Pod").values()
    (container,) = test_pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env.pop("KONG_URL") == "http://hookhub-kong-proxy:80"
    env |= {"KONG_URL": kong_url, "CALLER_KEY": "the-jenkins-key", "PATH": os.environ["PATH"]}
    command = [sys.executable, *container["command"][1:]]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)


def test_helm_test_posts_one_event_through_kong_and_passes_on_202(
    defaults: list[Manifest], stand_in_kong: tuple[str, type[StandInKong]]
) -> None:
    url, kong = stand_in_kong
    result = run_helm_test_pod(defaults, url)
    assert result.returncode == 0, result.stdout + result.stderr
    ((path, headers, body),) = kong.received
    assert path == "/events"
    assert headers["apikey"] == "the-jenkins-key"
    assert headers["content-type"] == "application/cloudevents+json"
    assert json.loads(body)["type"] == "ci.smoke"
    assert "202" in result.stdout


@pytest.mark.parametrize("status", [401, 503])
def test_helm_test_fails_on_anything_but_202(
    defaults: list[Manifest], stand_in_kong: tuple[str, type[StandInKong]], status: int
) -> None:
    url, kong = stand_in_kong
    kong.status = status
    result = run_helm_test_pod(defaults, url)
    assert result.returncode == 1
    assert str(status) in result.stdout


def test_helm_test_reads_its_key_from_the_secret(defaults: list[Manifest]) -> None:
    (test_pod,) = of_kind(defaults, "Pod").values()
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = test_pod["spec"]["containers"]
    key = next(e for e in container["env"] if e["name"] == "CALLER_KEY")
    assert key["valueFrom"]["secretKeyRef"] == {"name": "hookhub", "key": "DECK_KEY_JENKINS"}
