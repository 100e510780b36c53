"""Checkov (offline) on the rendered chart: with its defaults and with every optional feature on,
no check fails; and on the Dockerfile, built for each service. What is waived is written down
with its reason: for every render in checkov.yaml, for one resource as an annotation in the
chart, for the default render alone below."""

import json
import re
from pathlib import Path

import pytest

from .chart import render, render_all_features
from .repo import run_tool
from .test_docker_images import DOCKERFILE, SERVICES

CONFIG = Path(__file__).parent / "checkov.yaml"
# Waived for the default render alone. Its images go by tag: no digest exists before an image is
# built, so the defaults cannot name one. The render with every option on gives image.digest and
# kong.image.digest, and passes both checks.
DEFAULT_RENDER_WAIVERS = {
    "CKV_K8S_43": "Image should use digest",
    "CKV_K8S_15": "Image Pull Policy should be Always (a check that a digest also passes)",
}


def checkov(paths: list[Path]) -> dict[str, list[str]]:
    """The checks that failed on each file (by its name), in one run: checkov takes seconds to
    start."""
    args = ["--config-file", str(CONFIG), *(a for p in paths for a in ("-f", str(p)))]
    result = run_tool("checkov", *args, timeout=180)
    assert result.returncode in (0, 1), result.stderr  # 1: some check failed
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports), result.stdout
    failed: dict[str, list[str]] = {path.stem: [] for path in paths}
    for report in reports:
        for check in report["results"]["failed_checks"]:
            failed[Path(check["file_path"]).stem].append(
                f"{check['check_id']} {check['resource']}: {check['check_name']}"
            )
    return failed


def waived(failures: list[str], waivers: dict[str, str]) -> list[str]:
    return [f for f in failures if f.split()[0] not in waivers]


@pytest.fixture(scope="module")
def failures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    directory = tmp_path_factory.mktemp("checkov")
    defaults = render()
    renders = {
        "defaults": defaults,
        "all-features": render_all_features(),
        # the pods as UID 1000, Kong's image's own (the schema refuses it: the render is edited)
        "as-uid-1000": defaults.replace("runAsUser: 10001", "runAsUser: 1000"),
    }
    for name, text in renders.items():
        (directory / f"{name}.yaml").write_text(text)
    return checkov([directory / f"{name}.yaml" for name in renders])


def test_checkov_passes_the_default_render(failures: dict[str, list[str]]) -> None:
    assert waived(failures["defaults"], DEFAULT_RENDER_WAIVERS) == []


def test_checkov_passes_the_render_with_every_option_on(failures: dict[str, list[str]]) -> None:
    assert failures["all-features"] == []


def test_checkov_catches_a_pod_running_as_a_low_uid(failures: dict[str, list[str]]) -> None:
    assert any(f.startswith("CKV_K8S_40 ") for f in failures["as-uid-1000"]), failures


# --- the Dockerfile ------------------------------------------------------------------------------


def resolved_dockerfile(service: str) -> str:
    """The Dockerfile as BuildKit reads it for one SERVICE: Checkov does not expand build
    arguments, so their values are put in (else it takes `FROM ${UV_IMAGE}` for an untagged
    image)."""
    text = DOCKERFILE.read_text()
    arguments = dict(re.findall(r"(?m)^ARG (\w+)=(\S+)$", text)) | {"SERVICE": service}
    return re.sub(r"\$\{(\w+)\}", lambda m: arguments.get(m[1], m[0]), text)


@pytest.fixture(scope="module")
def dockerfile_failures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    directory = tmp_path_factory.mktemp("checkov-dockerfile")
    texts = {service: resolved_dockerfile(service) for service in SERVICES}
    texts["as-root"] = texts["hub-api"].replace("USER 10001", "USER root")
    args = ["--framework", "dockerfile", "--skip-download", "--compact", "--quiet", "-o", "json"]
    for name, text in texts.items():
        (directory / name).mkdir()
        (directory / name / "Dockerfile").write_text(text)
        args += ["-f", str(directory / name / "Dockerfile")]
    result = run_tool("checkov", *args, timeout=180)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    failed: dict[str, list[str]] = {name: [] for name in texts}
    for check in report["results"]["failed_checks"] if isinstance(report, dict) else []:
        failed[Path(check["file_path"]).parent.name].append(
            f"{check['check_id']}: {check['check_name']}"
        )
    return failed


@pytest.mark.parametrize("service", SERVICES)
def test_checkov_passes_the_dockerfile_for_each_service(
    dockerfile_failures: dict[str, list[str]], service: str
) -> None:
    assert dockerfile_failures[service] == []


def test_checkov_catches_an_image_running_as_root(
    dockerfile_failures: dict[str, list[str]],
) -> None:
    assert any(f.startswith("CKV_DOCKER_8") for f in dockerfile_failures["as-root"]), (
        dockerfile_failures
    )
