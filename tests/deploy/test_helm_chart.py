"""The Helm chart: `helm lint`, `helm template | kubernetes-validate` (strict), and what the
rendered manifests must hold: a hardened Deployment per service, HPA and PDB on the ingest path,
NetworkPolicies that admit only Kong to hub-api and the console, secrets by reference, and Kong's
config from gateway/kong.yml."""

import shutil
from pathlib import Path
from typing import Any

import pytest
from hookhub import specs
from hookhub.providers import PROVIDERS, VERIFY_TOKEN_SUFFIX
from hookhub_endpoints import config

from .chart import (
    CHART,
    Manifest,
    component,
    deployments,
    helm_template,
    is_hook,
    kubernetes_validate,
    manifests_of,
    of_kind,
    pod,
    pod_spec,
    render_all_features,
)
from .repo import KONG_YML, ROOT, kong_renderer, load_all_yaml, run_tool

# On the ingest path: each scales (HPA) and keeps a replica through a drain (PDB).
INGEST = ("hub-api", "kong", *specs.names())
SERVICES = (*INGEST, "operator")
SECRET_WORDS = ("SECRET", "TOKEN", "PASSWORD", "KEY", "AMQP_URL", "STORE_URL")

render = kong_renderer()

GET_HANDSHAKES = [n for n, p in PROVIDERS.items() if p.handshake and p.handshake.method == "GET"]


@pytest.fixture(scope="module")
def rendered_text() -> str:
    result = helm_template(CHART)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def manifests(rendered_text: str) -> list[Manifest]:
    return load_all_yaml(rendered_text)


# --- the tools -----------------------------------------------------------------------------------


def test_helm_lint_passes() -> None:
    result = run_tool("helm", "lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


def test_helm_lint_fails_on_a_broken_template(tmp_path: Path) -> None:
    broken = tmp_path / "hookhub"
    shutil.copytree(CHART, broken)  # symlinked files are copied as files
    template = broken / "templates" / "hub-api.yaml"
    template.write_text(template.read_text().replace("{{- end }}", "", 1))
    result = run_tool("helm", "lint", "--strict", str(broken))
    assert result.returncode != 0
    assert "hub-api.yaml" in result.stdout + result.stderr


def test_rendered_manifests_pass_kubernetes_validate_strictly(
    rendered_text: str, tmp_path: Path
) -> None:
    path = tmp_path / "manifests.yaml"
    path.write_text(rendered_text)
    result = kubernetes_validate(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_validate_rejects_an_unknown_field(rendered_text: str, tmp_path: Path) -> None:
    path = tmp_path / "manifests.yaml"
    path.write_text(rendered_text.replace("readinessProbe:", "readinessProbes:", 1))
    result = kubernetes_validate(path)
    assert result.returncode != 0
    assert "readinessProbes" in result.stdout + result.stderr


# --- workloads -----------------------------------------------------------------------------------


def test_every_service_has_a_deployment(manifests: list[Manifest]) -> None:
    assert sorted(deployments(manifests)) == sorted(SERVICES)


def test_each_consumer_runs_its_own_consumer(manifests: list[Manifest]) -> None:
    for consumer in specs.names():
        (container,) = pod(deployments(manifests)[consumer])["containers"]
        assert container["args"] == ["consume", consumer]


def hardening_problems(deployment: Manifest) -> list[str]:
    name = component(deployment)
    spec = pod(deployment)
    problems = []
    if (
        not spec.get("securityContext", {}).get("runAsNonRoot")
        or spec["securityContext"].get("runAsUser") == 0
    ):
        problems.append(f"{name}: pod may run as root")
    for container in spec["containers"] + spec.get("initContainers", []):
        where = f"{name}/{container['name']}"
        security = container.get("securityContext", {})
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: privilege escalation allowed")
        if not security.get("readOnlyRootFilesystem"):
            problems.append(f"{where}: writable root file system")
        resources = container.get("resources", {})
        if not resources.get("requests") or not resources.get("limits", {}).get("memory"):
            problems.append(f"{where}: no resource requests and memory limit")
    for container in spec["containers"]:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe not in container:
                problems.append(f"{name}/{container['name']}: no {probe}")
    return problems


def test_every_deployment_has_probes_resources_and_runs_hardened(manifests: list[Manifest]) -> None:
    assert [p for d in deployments(manifests).values() for p in hardening_problems(d)] == []


def test_a_deployment_without_probes_or_as_root_is_caught(manifests: list[Manifest]) -> None:
    hub_api = deployments(manifests)["hub-api"]
    broken = {**hub_api, "spec": {**hub_api["spec"], "template": {**hub_api["spec"]["template"]}}}
    spec = broken["spec"]["template"]["spec"] = dict(pod(hub_api))
    spec["securityContext"] = {"runAsUser": 0}
    spec["containers"] = [
        {k: v for k, v in c.items() if k != "readinessProbe"} for c in spec["containers"]
    ]
    assert set(hardening_problems(broken)) >= {
        "hub-api: pod may run as root",
        "hub-api/hub-api: no readinessProbe",
    }


def test_every_ingest_deployment_has_an_autoscaler_and_a_disruption_budget(
    manifests: list[Manifest],
) -> None:
    scaled = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in of_kind(manifests, "HorizontalPodAutoscaler").values()
    }
    budgeted = {
        p["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        for p in of_kind(manifests, "PodDisruptionBudget").values()
    }
    deployment = {component(d): name for name, d in of_kind(manifests, "Deployment").items()}
    assert scaled == {deployment[c] for c in INGEST}
    assert budgeted == set(INGEST)


# --- the edge ------------------------------------------------------------------------------------


def admitted_to(manifests: list[Manifest], target: str = "hub-api") -> list[dict[str, Any]]:
    """Every peer some NetworkPolicy admits to the target component's pods."""
    peers = []
    for policy in of_kind(manifests, "NetworkPolicy").values():
        selected = policy["spec"]["podSelector"].get("matchLabels", {})
        if selected.get("app.kubernetes.io/component") == target:
            assert "Ingress" in policy["spec"]["policyTypes"]
            for rule in policy["spec"].get("ingress", []):
                peers += rule.get("from", [{"anything": True}])
    return peers


@pytest.mark.parametrize("target", ["hub-api", "operator"])
def test_only_kong_may_reach_hub_api_and_the_console(
    manifests: list[Manifest], target: str
) -> None:
    peers = admitted_to(manifests, target)
    assert peers and all(
        set(peer) == {"podSelector"}
        and peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "kong"
        for peer in peers
    )


def test_a_policy_admitting_everyone_is_caught(manifests: list[Manifest]) -> None:
    policy = of_kind(manifests, "NetworkPolicy")["hookhub-hub-api"]
    open_policy = {**policy, "spec": {**policy["spec"], "ingress": [{"ports": [{"port": 8000}]}]}}
    assert {"anything": True} in admitted_to([open_policy])


def test_the_console_can_be_left_out() -> None:
    result = helm_template(CHART, "--set", "operator.enabled=false")
    assert result.returncode == 0, result.stderr
    assert "operator" not in deployments(load_all_yaml(result.stdout))


def inlined_secrets(manifests: list[Manifest]) -> list[str]:
    problems = [f"a Secret {name} is rendered" for name in of_kind(manifests, "Secret")]
    for manifest in manifests:
        if manifest["kind"] not in ("Deployment", "Job"):
            continue
        spec = manifest["spec"]["template"]["spec"]
        for container in spec["containers"] + spec.get("initContainers", []):
            for env in container.get("env", []):
                if any(
                    word in env["name"] for word in SECRET_WORDS
                ) and "secretKeyRef" not in env.get("valueFrom", {}):
                    problems.append(
                        f"{manifest['metadata']['name']}/{container['name']}: {env['name']} inlined"
                    )
    return problems


def test_secrets_are_referenced_never_inlined(manifests: list[Manifest]) -> None:
    assert inlined_secrets(manifests) == []


def test_an_inlined_secret_is_caught(tmp_path: Path) -> None:
    result = helm_template(
        CHART, "--set", "consumers.workers.payments.env.HOOKHUB_MERCADOPAGO_ACCESS_TOKEN=abc"
    )
    assert result.returncode == 0, result.stderr
    assert any(
        "HOOKHUB_MERCADOPAGO_ACCESS_TOKEN inlined" in p
        for p in inlined_secrets(load_all_yaml(result.stdout))
    )


def env_names(container: dict[str, Any]) -> set[str]:
    return {env["name"] for env in container.get("env", [])}


def test_hub_api_reads_the_gateway_secret_and_every_providers_secret(
    manifests: list[Manifest],
) -> None:
    (container,) = pod(deployments(manifests)["hub-api"])["containers"]
    wanted = {
        "HOOKHUB_GATEWAY_SECRET",
        "HOOKHUB_AMQP_URL",
        *(f"HOOKHUB_SECRET_{p.upper()}" for p in PROVIDERS),
        *(f"HOOKHUB_SECRET_{p.upper()}{VERIFY_TOKEN_SUFFIX.upper()}" for p in GET_HANDSHAKES),
    }
    assert wanted <= env_names(container)


# --- Kong from gateway/kong.yml ------------------------------------------------------------------


def test_the_charts_kong_yml_is_gateway_kong_yml() -> None:
    # helm cannot read outside the chart: files/ links to gateway/ (a copy must stay identical)
    for name in ("kong.yml", "render.py"):
        assert (CHART / "files" / name).read_bytes() == (ROOT / "gateway" / name).read_bytes(), name


def test_kong_runs_db_less_from_the_rendered_gateway_config(manifests: list[Manifest]) -> None:
    (config_map,) = (m for m in of_kind(manifests, "ConfigMap").values() if "kong.yml" in m["data"])
    assert config_map["data"]["kong.yml"] == KONG_YML.read_text().rstrip("\n")
    kong_pod = pod(deployments(manifests)["kong"])
    (kong,) = kong_pod["containers"]
    env = {e["name"]: e.get("value") for e in kong["env"]}
    assert env["KONG_DATABASE"] == "off"
    (renderer,) = kong_pod["initContainers"]
    assert renderer["command"][-1] == env["KONG_DECLARATIVE_CONFIG"]
    # the renderer is given every variable kong.yml refers to
    assert env_names(renderer) == set(render.variables(KONG_YML.read_text()))


@pytest.mark.parametrize(
    "variable, port", [("DECK_HUB_API_HOST", 8000), ("DECK_OPERATOR_HOST", 8001)]
)
def test_kong_reaches_hub_api_and_the_console_by_their_service_names(
    manifests: list[Manifest], variable: str, port: int
) -> None:
    (renderer,) = pod(deployments(manifests)["kong"])["initContainers"]
    host = next(e["value"] for e in renderer["env"] if e["name"] == variable)
    service = of_kind(manifests, "Service")[host]
    assert [p["port"] for p in service["spec"]["ports"]] == [port]


def test_the_console_reads_the_gateway_secret_its_csrf_key_and_the_store(
    manifests: list[Manifest],
) -> None:
    (container,) = pod(deployments(manifests)["operator"])["containers"]
    assert container["args"][0] == "operator"
    wanted = {
        "HOOKHUB_GATEWAY_SECRET",
        "HOOKHUB_OPERATOR_CSRF_KEY",  # behind Kong, the console refuses to start without it
        "HOOKHUB_AMQP_URL",
        "HOOKHUB_STORE_URL",
    }
    assert wanted <= env_names(container)
    (csrf_key,) = (e for e in container["env"] if e["name"] == "HOOKHUB_OPERATOR_CSRF_KEY")
    assert csrf_key["valueFrom"]["secretKeyRef"] == {
        "name": "hookhub",
        "key": "HOOKHUB_OPERATOR_CSRF_KEY",
    }


def test_hooks_use_nothing_the_release_creates_after_them(manifests: list[Manifest]) -> None:
    """Helm runs pre-install hooks before the release's own resources exist: a hook pod naming
    the chart's ServiceAccount would never start, and the install would fail."""
    created_later = {
        (m["kind"], m["metadata"]["name"])
        for m in manifests
        if "helm.sh/hook" not in m["metadata"].get("annotations", {})
    }
    for hook in (m for m in manifests if is_hook(m) and m["kind"] in ("Job", "Pod")):
        account = pod_spec(hook).get("serviceAccountName")
        assert ("ServiceAccount", account) not in created_later, hook["metadata"]["name"]


def test_an_all_digit_image_tag_renders_as_that_tag() -> None:
    # A commit prefix can be all digits; Jenkins passes it with --set-string, a user may not.
    result = helm_template(CHART, "--set", "image.tag=123456789012")
    assert result.returncode == 0, result.stderr
    images = {
        container["image"]
        for deployment in deployments(load_all_yaml(result.stdout)).values()
        for container in pod(deployment)["containers"]
        if "hookhub-" in container["image"]
    }
    assert images and all(image.endswith(":123456789012") for image in images), images


def test_kong_runs_a_bounded_number_of_nginx_workers(manifests: list[Manifest]) -> None:
    [kong] = [c for c in pod(deployments(manifests)["kong"])["containers"] if c["name"] == "kong"]
    workers = {e["name"]: e.get("value") for e in kong["env"]}["KONG_NGINX_WORKER_PROCESSES"]
    assert workers.isdigit() and int(workers) >= 1


def test_the_endpoints_file_is_mounted_into_the_notifications_consumer_alone() -> None:
    manifests = manifests_of(render_all_features())
    configmaps = of_kind(manifests, "ConfigMap")
    [name] = [n for n in configmaps if n.endswith("-endpoints")]
    text = configmaps[name]["data"]["endpoints.yaml"]
    secret = "whsec_" + "A" * 32 + "="
    parsed = config.parse(text.replace("${BILLING_WEBHOOK_SECRET}", secret), "the chart's")
    assert [e.name for e in parsed] == ["billing"]
    for deployment_name, deployment in of_kind(manifests, "Deployment").items():
        pod = pod_spec(deployment)
        env = {e["name"]: e.get("value") for c in pod["containers"] for e in c.get("env", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        if deployment_name.endswith("-notifications"):
            assert env["HOOKHUB_ENDPOINTS_FILE"] == "/etc/hookhub/endpoints.yaml"
            assert volumes["endpoints"]["configMap"]["name"] == name
        else:
            assert "HOOKHUB_ENDPOINTS_FILE" not in env and "endpoints" not in volumes
