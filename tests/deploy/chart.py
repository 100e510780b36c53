"""helm/hookhub rendered the ways the deployment tests check it: with its defaults, and with every
optional feature on (values-all-features.yaml, with the CRDs of KEDA and the Prometheus Operator
announced as a cluster that has them would)."""

from pathlib import Path
from typing import Any

from .repo import ROOT, load_all_yaml, run_tool

CHART = ROOT / "helm" / "hookhub"
RELEASE = "hookhub"
NAMESPACE = "hookhub"
# Kubernetes 1.35: the version of the helm/kubectl layer the tools come from
KUBERNETES_VERSION = "1.35.0"
ALL_FEATURES = Path(__file__).parent / "values-all-features.yaml"
# What a cluster with KEDA and the Prometheus Operator announces; the chart renders their kinds
# only where it does.
CRD_KINDS = (
    "keda.sh/v1alpha1/ScaledObject",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
)
CRD_FLAGS = tuple(flag for kind in CRD_KINDS for flag in ("--api-versions", kind))

Manifest = dict[str, Any]


def helm_template(chart: Path, *args: str) -> Any:
    return run_tool("helm", "template", RELEASE, str(chart), "--namespace", NAMESPACE, *args)


def render(*args: str, chart: Path = CHART) -> str:
    """The chart's manifests as text; fails the test with helm's message if it cannot render."""
    result = helm_template(chart, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def render_all_features(*args: str) -> str:
    return render("-f", str(ALL_FEATURES), *CRD_FLAGS, *args)


def manifests_of(text: str) -> list[Manifest]:
    return load_all_yaml(text)


def of_kind(manifests: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {m["metadata"]["name"]: m for m in manifests if m["kind"] == kind}


def pod_spec(manifest: Manifest) -> dict[str, Any]:
    """The pod a Deployment, a Job or a Pod runs."""
    return manifest["spec"] if manifest["kind"] == "Pod" else manifest["spec"]["template"]["spec"]


def pod_labels(manifest: Manifest) -> dict[str, str]:
    metadata = (
        manifest["metadata"]
        if manifest["kind"] == "Pod"
        else manifest["spec"]["template"]["metadata"]
    )
    return metadata["labels"]


def component(manifest: Manifest) -> str:
    return pod_labels(manifest)["app.kubernetes.io/component"]


def workloads(manifests: list[Manifest]) -> dict[str, Manifest]:
    """Every manifest that runs pods, by component: the Deployments, the topology Job and the
    `helm test` pod."""
    return {component(m): m for m in manifests if m["kind"] in ("Deployment", "Job", "Pod")}


def deployments(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {component(d): d for d in of_kind(manifests, "Deployment").values()}


def pod(deployment: Manifest) -> dict[str, Any]:
    return pod_spec(deployment)


def kubernetes_validate(path: Path) -> Any:
    return run_tool("kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, str(path))


def is_hook(manifest: Manifest) -> bool:
    return "helm.sh/hook" in manifest["metadata"].get("annotations", {})
