"""The Dockerfiles, read as text: there is no Docker engine here to build them (CI builds them in
the Jenkinsfile's Images stage). Multi-stage, built from uv.lock, non-root, with a healthcheck."""

import re
import tomllib
from dataclasses import dataclass, field

import pytest

from .repo import ROOT

IMAGES = {
    "hub-api": "hub-api/Dockerfile",
    "consumers": "consumers/Dockerfile",
    "operator": "operator/Dockerfile",
}


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> list[Stage]:
    """Dockerfile stages with their instructions (continuations joined, comments dropped)."""
    logical = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    stages: list[Stage] = []
    for line in logical.splitlines():
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append(Stage(base, name or None))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def problems(text: str, package: str) -> list[str]:
    stages = parse(text)
    found = []
    if len(stages) < 2:
        found.append("not multi-stage")
        return found
    runtime = stages[-1]
    build_steps = " ; ".join(args for stage in stages[:-1] for args in stage.all("RUN"))
    if not any("uv.lock" in args for stage in stages[:-1] for args in stage.all("COPY")):
        found.append("uv.lock is not copied into the build")
    syncs = re.findall(r"uv sync [^;&]*", build_steps)
    if not syncs or not all(
        "--locked" in s and "--no-dev" in s and f"--package {package}" in s for s in syncs
    ):
        found.append(f"not built with `uv sync --locked --no-dev --package {package}`")
    if "pip install" in text:
        found.append("pip install bypasses the lock file")
    users = runtime.all("USER")
    if not users or users[-1].split(":")[0] in ("root", "0"):
        found.append("the runtime stage runs as root")
    if not runtime.all("HEALTHCHECK"):
        found.append("no HEALTHCHECK")
    if not any(args.startswith("--from=") and "/app/.venv" in args for args in runtime.all("COPY")):
        found.append("the runtime stage does not take the built virtualenv")
    if not runtime.all("ENTRYPOINT") or "hookhub" not in runtime.all("ENTRYPOINT")[-1]:
        found.append("the entry point is not the hookhub command")
    return found


def package_of(service: str) -> str:
    return tomllib.loads((ROOT / service / "pyproject.toml").read_text())["project"]["name"]


@pytest.mark.parametrize("service", IMAGES)
def test_image_is_multi_stage_locked_non_root_and_healthchecked(service: str) -> None:
    assert problems((ROOT / IMAGES[service]).read_text(), package_of(service)) == []


@pytest.mark.parametrize(
    "breakage, expected",
    [
        pytest.param(lambda t: re.sub(r"(?m)^USER .*$", "", t), "runs as root", id="no-user"),
        pytest.param(
            lambda t: t.replace("USER 10001", "USER root"), "runs as root", id="root-user"
        ),
        pytest.param(lambda t: t.replace("--locked ", ""), "uv sync --locked", id="unlocked"),
        pytest.param(
            lambda t: re.sub(r"(?ms)^HEALTHCHECK.*?\]\n", "", t),
            "no HEALTHCHECK",
            id="no-healthcheck",
        ),
        pytest.param(
            lambda t: t[t.index("FROM ${PYTHON_IMAGE} AS runtime") :],
            "not multi-stage",
            id="single-stage",
        ),
        pytest.param(
            lambda t: t.replace("uv sync", "pip install . ; uv sync", 1), "pip install", id="pip"
        ),
    ],
)
def test_a_broken_dockerfile_is_caught(breakage, expected: str) -> None:  # type: ignore[no-untyped-def]
    text = (ROOT / IMAGES["hub-api"]).read_text()
    broken = breakage(text)
    assert broken != text
    assert any(expected in p for p in problems(broken, package_of("hub-api")))


def test_hub_api_healthcheck_asks_readyz_on_the_api_port() -> None:
    (healthcheck,) = parse((ROOT / IMAGES["hub-api"]).read_text())[-1].all("HEALTHCHECK")
    assert "127.0.0.1:8000/readyz" in healthcheck


def test_operator_healthcheck_asks_readyz_on_its_port() -> None:
    (healthcheck,) = parse((ROOT / IMAGES["operator"]).read_text())[-1].all("HEALTHCHECK")
    assert "127.0.0.1:8001/readyz" in healthcheck


def test_consumers_healthcheck_asks_readyz_on_the_probe_port() -> None:
    runtime = parse((ROOT / IMAGES["consumers"]).read_text())[-1]
    (healthcheck,) = runtime.all("HEALTHCHECK")
    assert "/readyz" in healthcheck and "HOOKHUB_PROBE_PORT" in healthcheck


def test_the_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", ".tools"} <= ignored
