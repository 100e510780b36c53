"""The chart's own README.md and Chart.yaml: the values reference kept equal to values.yaml, the
metadata Helm shows, and the versions both state (Kubernetes, Helm, RabbitMQ) kept equal to what
the repository checks and runs."""

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .chart import ALL_FEATURES, CHART, CRD_FLAGS, render
from .repo import ROOT, load_yaml, run_tool
from .test_docker_images import SERVICES, image_name

README = CHART / "README.md"
NO_KEYS = "—"


def values_table(readme: str) -> dict[str, set[str]]:
    """The README's values reference: each top-level value and the keys it lists."""
    section = readme[readme.index("## Values") :]
    rows = re.findall(r"(?m)^\| `([^`]+)` \| ([^|]+) \|", section)
    return {
        value: set() if keys.strip() == NO_KEYS else set(re.findall(r"`([^`]+)`", keys))
        for value, keys in rows
    }


def readme_problems(readme: str, values: dict[str, Any]) -> list[str]:
    table = values_table(readme)
    problems = [f"{key} is not in the README's values table" for key in values if key not in table]
    problems += [
        f"the README documents {key}, which values.yaml has not"
        for key in table
        if key not in values
    ]
    for key, listed in table.items():
        holds = set(values[key]) if isinstance(values.get(key), dict) else set()
        if key in values and listed != holds:
            problems.append(
                f"the README lists {sorted(listed)} under {key}, values.yaml {sorted(holds)}"
            )
    return problems


def defaults() -> dict[str, Any]:
    return load_yaml(CHART / "values.yaml")


def test_every_top_level_value_is_documented_with_the_keys_it_holds() -> None:
    assert readme_problems(README.read_text(), defaults()) == []


@pytest.mark.parametrize(
    "breakage, expected",
    [
        pytest.param(
            lambda readme, values: (readme, values | {"newOption": {"enabled": False}}),
            "newOption is not in the README's values table",
            id="new-value-undocumented",
        ),
        pytest.param(
            lambda readme, values: (re.sub(r"(?m)^\| `tests` .*\n", "", readme), values),
            "tests is not in the README's values table",
            id="row-dropped",
        ),
        pytest.param(
            lambda readme, values: (readme, {k: v for k, v in values.items() if k != "tracing"}),
            "the README documents tracing",
            id="value-removed",
        ),
        pytest.param(
            lambda readme, values: (
                readme,
                values | {"settings": values["settings"] | {"batchSize": 10}},
            ),
            "under settings",
            id="new-key-undocumented",
        ),
    ],
)
def test_a_readme_out_of_step_with_values_yaml_is_caught(breakage, expected: str) -> None:  # type: ignore[no-untyped-def]
    readme, values = breakage(README.read_text(), defaults())
    assert any(expected in p for p in readme_problems(readme, values))


def chart_metadata() -> dict[str, Any]:
    return load_yaml(CHART / "Chart.yaml")


def test_chart_yaml_says_what_the_chart_is_where_it_comes_from_and_who_keeps_it() -> None:
    chart = chart_metadata()
    for field in ("description", "home", "kubeVersion", "appVersion", "version"):
        assert isinstance(chart.get(field), str) and chart[field].strip(), field
    assert chart["home"].startswith("https://")
    assert chart["sources"] and all(url.startswith("https://") for url in chart["sources"])
    assert chart["maintainers"] and all(m.get("name") for m in chart["maintainers"])
    assert {"webhooks", "rabbitmq", "kong"} <= set(chart["keywords"])


def oldest_kubernetes() -> str:
    floor = re.fullmatch(r">=\s*(\d+\.\d+)\.\d+(-0)?", chart_metadata()["kubeVersion"])
    assert floor, "kubeVersion is a lower bound, >=X.Y.Z-0"
    return floor[1]


def test_every_option_validates_on_the_oldest_kubernetes_the_chart_admits(tmp_path: Path) -> None:
    version = f"{oldest_kubernetes()}.0"
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(render("-f", str(ALL_FEATURES), *CRD_FLAGS, "--kube-version", version))
    result = run_tool("kubernetes-validate", "--strict", "-k", version, str(manifests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_older_kubernetes_is_refused_and_named() -> None:
    major, minor = oldest_kubernetes().split(".")
    older = f"{major}.{int(minor) - 1}.0"
    result = run_tool("helm", "template", "hookhub", str(CHART), "--kube-version", older)
    assert result.returncode != 0
    assert f"incompatible with Kubernetes v{older}" in result.stderr


def test_the_readme_states_the_versions_the_repository_checks_and_runs() -> None:
    readme = README.read_text()
    assert f"Kubernetes {oldest_kubernetes()} or later" in readme
    helm = run_tool("helm", "version", "--template", "{{ .Version }}").stdout.strip()
    assert f"Helm {helm.removeprefix('v').split('.')[0]} " in readme
    broker = load_yaml(ROOT / "docker-compose.yml")["services"]["rabbitmq"]["image"]
    series = re.match(r"rabbitmq:(\d+\.\d+)", broker)
    assert (
        series
        and f"RabbitMQ {series[1]}, the version the repository's `docker-compose.yml` runs"
        in readme
    )


def test_the_readme_builds_each_image_from_the_one_dockerfile_under_its_name() -> None:
    readme = README.read_text()
    (loop,) = re.findall(r"(?ms)^ *for service in .*?^ *done$", readme)
    dry = loop.replace("docker build", "echo build").replace("docker push", "echo push")
    result = subprocess.run(["bash", "-c", dry], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    builds = re.findall(
        r"^build --build-arg SERVICE=(\S+) -t \S+/(\S+):<tag> \.$", result.stdout, re.M
    )
    assert builds == [(service, image_name(service)) for service in SERVICES]
