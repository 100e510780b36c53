"""The one Dockerfile, read as text: there is no Docker engine here to build it (CI builds it in
the Jenkinsfile's Images stage, once per service). Multi-stage, built from uv.lock with only the
service's packages, non-root, with a healthcheck; and compose builds every image from it."""

import re
import tomllib
from dataclasses import dataclass, field
from fnmatch import fnmatch

import pytest

from .repo import ROOT, load_yaml

DOCKERFILE = ROOT / "Dockerfile"
# The services an image is built for: each one's directory, its `--build-arg SERVICE=` and the
# Dockerfile stage its image ends on. An image is named for the service's package.
SERVICES = ("hub-api", "consumers", "operator")
# hub-api reads every consumer's spec (the `hookhub.consumers` entry points) to declare their
# queues, the operator to show them: their images carry the consumers' package too.
EXTRA_PACKAGES = {"hub-api": {"hookhub-consumers"}, "operator": {"hookhub-consumers"}}


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


def package_of(service: str) -> str:
    return tomllib.loads((ROOT / service / "pyproject.toml").read_text())["project"]["name"]


def image_name(service: str) -> str:
    return package_of(service)


def build_stage(text: str) -> Stage:
    return next(stage for stage in parse(text) if stage.name == "build")


def packages(text: str, service: str) -> set[str]:
    """The workspace packages the build stage installs for SERVICE (its `case` table)."""
    for args in build_stage(text).all("RUN"):
        row = re.search(rf'(?:^|\s){re.escape(service)}\)\s+echo "([^"]*)"', args)
        if row:
            return set(re.findall(r"--package (\S+)", row[1]))
    return set()


def image(text: str, service: str) -> Stage:
    """What the image built with SERVICE runs: its stage's instructions after those of the stages
    it is built on, as one stage."""
    stages = parse(text)
    by_name = {stage.name: stage for stage in stages if stage.name}
    chain: list[Stage] = []
    stage = by_name.get(service)
    while stage is not None:
        chain.insert(0, stage)
        stage = by_name.get(stage.base)
    instructions = [instruction for stage in chain for instruction in stage.instructions]
    return Stage(chain[0].base if chain else "", service, instructions)


def problems(text: str, service: str) -> list[str]:
    stages = parse(text)
    found = []
    # the stages that build, as opposed to those the image is made of (and the last, the pick)
    building = [stage for stage in stages[:-1] if stage.name not in (*SERVICES, "runtime")]
    if not building:
        found.append("not multi-stage")
        return found
    if stages[-1].base != "${SERVICE}":
        found.append("the image is not the stage named by SERVICE (`FROM ${SERVICE}` last)")
    build_steps = " ; ".join(args for stage in building for args in stage.all("RUN"))
    if not any("uv.lock" in args for stage in building for args in stage.all("COPY")):
        found.append("uv.lock is not copied into the build")
    syncs = re.findall(r"uv sync [^;&]*", build_steps)
    if not syncs or not all(
        "--locked" in s and "--no-dev" in s and "$(cat /src/packages)" in s for s in syncs
    ):
        found.append("not built with `uv sync --locked --no-dev` and the service's packages")
    wanted = {package_of(service), *EXTRA_PACKAGES.get(service, ())}
    installed = packages(text, service)
    if installed != wanted:
        found.append(f"SERVICE={service} installs {sorted(installed)}, not {sorted(wanted)}")
    if "pip install" in text:
        found.append("pip install bypasses the lock file")
    runtime = image(text, service)
    if runtime.name is None or not runtime.instructions:
        found.append(f"no stage named {service}")
        return found
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


@pytest.mark.parametrize("service", SERVICES)
def test_image_is_multi_stage_locked_non_root_and_healthchecked(service: str) -> None:
    assert problems(DOCKERFILE.read_text(), service) == []


@pytest.mark.parametrize(
    "breakage, expected",
    [
        pytest.param(lambda t: re.sub(r"(?m)^USER .*$", "", t), "runs as root", id="no-user"),
        pytest.param(
            lambda t: t.replace("USER 10001", "USER root"), "runs as root", id="root-user"
        ),
        pytest.param(lambda t: t.replace("--locked ", ""), "uv sync --locked", id="unlocked"),
        pytest.param(
            lambda t: re.sub(r"(?ms)^HEALTHCHECK.*?\]\n", "", t, count=1),
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
        pytest.param(
            lambda t: t.replace(' --package hookhub-consumers"', '"', 1),
            "installs ['hookhub-api'], not",
            id="hub-api-without-the-consumer-specs",
        ),
        pytest.param(
            lambda t: t.replace("$(cat /src/packages)", "--all-packages", 1),
            "the service's packages",
            id="every-package",
        ),
        pytest.param(
            lambda t: t.replace("FROM ${SERVICE}", "FROM hub-api"),
            "FROM ${SERVICE}",
            id="one-image-for-all",
        ),
    ],
)
def test_a_broken_dockerfile_is_caught(breakage, expected: str) -> None:  # type: ignore[no-untyped-def]
    text = DOCKERFILE.read_text()
    broken = breakage(text)
    assert broken != text
    assert any(expected in p for p in problems(broken, "hub-api"))


def test_an_unknown_service_stops_the_build_and_names_the_three() -> None:
    (table,) = [args for args in build_stage(DOCKERFILE.read_text()).all("RUN") if "case" in args]
    assert '*) echo "build with --build-arg SERVICE=hub-api, consumers or operator' in table
    assert "exit 1" in table
    assert {s for s in SERVICES if packages(DOCKERFILE.read_text(), s)} == set(SERVICES)


def test_the_per_service_dockerfiles_are_gone() -> None:
    assert [s for s in SERVICES if (ROOT / s / "Dockerfile").exists()] == []


def test_hub_api_healthcheck_asks_readyz_on_the_api_port() -> None:
    (healthcheck,) = image(DOCKERFILE.read_text(), "hub-api").all("HEALTHCHECK")
    assert "127.0.0.1:8000/readyz" in healthcheck


def test_operator_healthcheck_asks_readyz_on_its_port() -> None:
    (healthcheck,) = image(DOCKERFILE.read_text(), "operator").all("HEALTHCHECK")
    assert "127.0.0.1:8001/readyz" in healthcheck


def test_consumers_healthcheck_asks_readyz_on_the_probe_port() -> None:
    (healthcheck,) = image(DOCKERFILE.read_text(), "consumers").all("HEALTHCHECK")
    assert "/readyz" in healthcheck and "HOOKHUB_PROBE_PORT" in healthcheck


def test_the_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", ".tools"} <= ignored


def compose_builds() -> dict[str, tuple[str, str, str]]:
    """Each compose service that builds an image: (Dockerfile, SERVICE, image name)."""
    services = load_yaml(ROOT / "docker-compose.yml")["services"]
    return {
        name: (
            service["build"]["dockerfile"],
            service["build"].get("args", {}).get("SERVICE", ""),
            service["image"].split(":")[0],
        )
        for name, service in services.items()
        if "build" in service
    }


def test_compose_builds_every_image_from_the_one_dockerfile_named_for_its_service() -> None:
    builds = compose_builds()
    assert {dockerfile for dockerfile, _, _ in builds.values()} == {"Dockerfile"}
    assert {service for _, service, _ in builds.values()} == set(SERVICES)
    assert {(s, name) for _, s, name in builds.values()} == {(s, image_name(s)) for s in SERVICES}


def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves a path of the repository out of the build context."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch(prefix.rsplit("/", 1)[-1], pattern.removeprefix("**/"))
        if pattern.startswith("**/")
        else fnmatch(prefix, pattern)
        for pattern in patterns
        for prefix in prefixes
    )


@pytest.mark.parametrize("service", SERVICES)
def test_the_build_context_holds_everything_the_build_copies(service: str) -> None:
    copied = [
        source
        for args in build_stage(DOCKERFILE.read_text()).all("COPY")
        if not args.startswith("--from=")
        for source in args.replace("${SERVICE}", service).split()[:-1]
    ]
    assert copied and [path for path in copied if dockerignored(path)] == []


def test_the_context_check_reads_dockerignore_as_docker_does() -> None:
    assert dockerignored("uv.lock") is False
    assert dockerignored("consumers/tests") and dockerignored("helm/hookhub/values.yaml")
