"""Each image's `hookhub` has the commands of the packages it installs, and only those.

No Docker engine runs here, so the build stage is replayed: the files the Dockerfile copies into
its build stage for a service (SERVICE in the paths), then the same `uv sync --locked --no-dev
--no-editable` with that service's packages into a fresh environment, whose `hookhub --help` is
read.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .repo import ROOT
from .test_docker_images import DOCKERFILE, SERVICES, build_stage, packages

UV = shutil.which("uv") or str(ROOT / ".tools" / "uv" / "bin" / "uv")
OPERATOR_COMMANDS = {"status", "publish", "topology", "dlq"}
# The consumers bring the indexer's, the event log's (events, people) and the endpoint
# registry's commands; the operator image has the consumers' package too (the event log is
# theirs), and so has hub-api's (the consumer specs it declares the queues from).
CONSUMER_COMMANDS = {"consume", "index", "events", "people", "store", "endpoints"}
RUNS = {
    "hub-api": {"api", *CONSUMER_COMMANDS},
    "consumers": CONSUMER_COMMANDS,
    "operator": {"operator", *CONSUMER_COMMANDS},
}


def build_stage_environment(service: str, workdir: Path) -> Path:
    """The build stage's files and virtual environment, as the Dockerfile makes them."""
    text = DOCKERFILE.read_text()
    for args in build_stage(text).all("COPY"):
        if args.startswith("--from="):
            continue
        *sources, destination = args.replace("${SERVICE}", service).split()
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
    selected = [arg for name in sorted(packages(text, service)) for arg in ("--package", name)]
    subprocess.run(
        [UV, "sync", "--locked", "--no-dev", "--no-editable", *selected, "-q"],
        cwd=workdir,
        env=env,
        check=True,
        timeout=300,
    )
    return venv


def commands(help_text: str) -> set[str]:
    return set(re.findall(r"^│ (\w+)\s", help_text, re.MULTILINE))


@pytest.mark.parametrize("service", SERVICES)
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
