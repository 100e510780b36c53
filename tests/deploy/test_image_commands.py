"""Each image's `hookhub` has the commands of the packages it installs, and only those.

No Docker engine runs here, so the build stage is replayed: the files each Dockerfile copies
into its build stage, then the same `uv sync --locked --no-dev --no-editable --package ...` into
a fresh environment, whose `hookhub --help` is read.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .repo import ROOT
from .test_docker_images import IMAGES, package_of, parse

UV = shutil.which("uv") or str(ROOT / ".tools" / "uv" / "bin" / "uv")
OPERATOR_COMMANDS = {"status", "publish", "topology", "dlq"}
# The consumers bring the indexer and the event log's commands; the operator image has the
# consumers' package too (the event log is theirs).
CONSUMER_COMMANDS = {"consume", "index", "events"}
RUNS = {
    "hub-api": {"api"},
    "consumers": CONSUMER_COMMANDS,
    "operator": {"operator", *CONSUMER_COMMANDS},
}


def build_stage_environment(service: str, workdir: Path) -> Path:
    """The build stage's files and virtual environment, as the Dockerfile makes them."""
    build = parse((ROOT / IMAGES[service]).read_text())[-2]
    for args in build.all("COPY"):
        if args.startswith("--from="):
            continue
        *sources, destination = args.split()
        for source in sources:
            into_folder = destination.endswith("/") or len(sources) > 1
            target = workdir / destination / (Path(source).name if into_folder else "")
            if (ROOT / source).is_dir():
                # .dockerignore leaves tests and caches out of the build context
                ignored = shutil.ignore_patterns("tests", "__pycache__")
                shutil.copytree(ROOT / source, target, ignore=ignored, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, target)
    venv = workdir / ".venv"
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    package = package_of(service)
    subprocess.run(
        [UV, "sync", "--locked", "--no-dev", "--no-editable", "--package", package, "-q"],
        cwd=workdir,
        env=env,
        check=True,
        timeout=300,
    )
    return venv


def commands(help_text: str) -> set[str]:
    return set(re.findall(r"^│ (\w+)\s", help_text, re.MULTILINE))


@pytest.mark.parametrize("service", IMAGES)
def test_an_image_runs_its_own_service_and_the_operator_commands(service, tmp_path):
    venv = build_stage_environment(service, tmp_path)
    result = subprocess.run(
        [venv / "bin" / "hookhub", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100", "TERM": "dumb"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert commands(result.stdout) == OPERATOR_COMMANDS | RUNS[service]
    assert "warning" not in result.stderr
