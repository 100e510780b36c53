"""Checkov (offline) on the rendered chart: with its defaults and with every optional feature on,
no check fails. What is waived is written down with its reason: for every render in checkov.yaml,
for one resource as an annotation in the chart, for the default render alone below."""

import json
from pathlib import Path

import pytest

from .chart import render, render_all_features
from .repo import run_tool

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
