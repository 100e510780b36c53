"""The Jenkinsfile: its stages in their order (nothing pushed before the chart is checked), the
versions it runs (the broker compose runs, the helm the checks ran) and the images it builds from
the one Dockerfile. There is no Jenkins here; the file is read as text. The event it posts at the
end: test_jenkins_report.py."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from .repo import ROOT, load_yaml, run_tool
from .test_docker_images import SERVICES, image_name

JENKINSFILE = ROOT / "Jenkinsfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
STAGES = ["Lint", "Test", "Chart checks", "Images", "Deploy"]
STAGE = re.compile(r"stage\('([^']+)'\)")
# the deployment tests that need the broker: run in Test, beside it, and left out of Chart checks
BROKER_TESTS = "tests/deploy/test_jenkins_report.py"
SIDECARS = ("rabbitmq", "mongodb")


def stages(text: str) -> dict[str, str]:
    """Each stage's name and the text up to the next stage (or the pipeline's post)."""
    found = list(STAGE.finditer(text))
    end = text.find("\n    post {", found[-1].end()) if found else -1
    return {
        match[1]: text[match.end() : found[i + 1].start() if i + 1 < len(found) else end]
        for i, match in enumerate(found)
    }


def built_images(images_stage: str) -> dict[str, str]:
    """SERVICE → image name, from the Images stage's list of pairs."""
    return dict(re.findall(r"\['([\w-]+)', '([\w-]+)'\]", images_stage))


def deploy_helm_version(deploy_stage: str) -> str | None:
    found = re.search(r"docker \{ image '[^':]*helm[^':]*:([^']+)'", deploy_stage)
    return found[1] if found else None


def pipeline_problems(text: str) -> list[str]:
    found = stages(text)
    problems = []
    if list(found) != STAGES:
        problems.append(f"stages are {list(found)}, not {STAGES}")
    test = found.get("Test", "")
    for service in SIDECARS:
        if f"docker.image(composeImage('{service}')).withRun(" not in test:
            problems.append(f"the Test stage has no {service} sidecar from docker-compose.yml")
    if re.search(r"['\"](rabbitmq|mongo):[\w.-]+['\"]", text):
        problems.append("the Jenkinsfile names a broker or database version of its own")
    if "docker exec" not in test or "rabbitmqctl" not in test or "rabbitmq-server" in test:
        problems.append("the tests' rabbitmqctl is not the broker's own (docker exec)")
    if "pytest" not in test:
        problems.append("the Test stage runs no tests")
    if BROKER_TESTS not in test:
        problems.append(f"the Test stage does not run {BROKER_TESTS} beside the broker")
    checks = found.get("Chart checks", "")
    if "tests/deploy" not in checks or f"--ignore={BROKER_TESTS}" not in checks:
        problems.append("the Chart checks stage does not run tests/deploy (without the broker's)")
    pushed_at, checked_at = text.find(".push("), text.find("stage('Chart checks')")
    if checked_at == -1 or (pushed_at != -1 and pushed_at < checked_at):
        problems.append("an image is pushed before the chart is checked")
    images = found.get("Images", "")
    if (
        built_images(images) != {s: image_name(s) for s in SERVICES}
        or "--build-arg SERVICE=" not in images
        or "-f Dockerfile ." not in images
        or ".push(" not in images
    ):
        problems.append("the Images stage does not build and push every image from the Dockerfile")
    deploy = found.get("Deploy", "")
    if deploy_helm_version(deploy) is None or "helm upgrade --install" not in deploy:
        problems.append("the Deploy stage does not run helm in a container")
    post = text[text.find("\n    post {") : text.find("def reportToHookhub()")]
    if "always" not in post or "reportToHookhub()" not in post:
        problems.append("the pipeline does not report to Hookhub whatever the result")
    return problems


def test_pipeline_has_every_stage_and_reports_at_the_end() -> None:
    assert pipeline_problems(JENKINSFILE.read_text()) == []


def swap_stages(text: str, first: str, second: str) -> str:
    body = stages(text)
    a = text.index(f"        stage('{first}')")
    b = text.index(f"        stage('{second}')")
    end_b = b + len(f"        stage('{second}')") + len(body[second])
    return text[:a] + text[b:end_b] + text[a:b] + text[end_b:]


@pytest.mark.parametrize(
    "breakage, expected",
    [
        pytest.param(
            lambda t: t.replace(".withRun(", ".run(", 1), "no rabbitmq sidecar", id="no-sidecar"
        ),
        pytest.param(
            lambda t: t.replace("stage('Images')", "stage('Pictures')"),
            "stages are",
            id="stage-renamed",
        ),
        pytest.param(
            lambda t: swap_stages(t, "Chart checks", "Images"),
            "pushed before the chart is checked",
            id="images-before-chart-checks",
        ),
        pytest.param(
            lambda t: t.replace(
                "docker.image(composeImage('rabbitmq'))", "docker.image('rabbitmq:3.10-management')"
            ),
            "names a broker or database version of its own",
            id="broker-version-of-its-own",
        ),
        pytest.param(
            lambda t: t.replace("--no-install-recommends docker.io", "rabbitmq-server"),
            "not the broker's own",
            id="debian-cli",
        ),
        pytest.param(
            lambda t: t.replace(f" --ignore={BROKER_TESTS}", ""),
            "without the broker's",
            id="broker-tests-without-a-broker",
        ),
        pytest.param(
            lambda t: t.replace("'hookhub-operator']", "'hookhub-console']"),
            "every image from the Dockerfile",
            id="image-misnamed",
        ),
        pytest.param(
            lambda t: t.replace("alpine/helm", "alpine/git"),
            "helm in a container",
            id="deploy-uncontainerised",
        ),
        pytest.param(
            lambda t: t.replace("script { reportToHookhub() }", ""),
            "report to Hookhub",
            id="no-report",
        ),
    ],
)
def test_a_broken_pipeline_is_caught(breakage, expected: str) -> None:  # type: ignore[no-untyped-def]
    text = JENKINSFILE.read_text()
    broken = breakage(text)
    assert broken != text
    assert any(expected in p for p in pipeline_problems(broken)), pipeline_problems(broken)


def compose_image_of(service: str, compose_file: Path = COMPOSE_FILE) -> str:
    """What the Jenkinsfile's composeImage reads from docker-compose.yml: its own sed command,
    run here."""
    text = JENKINSFILE.read_text()
    body = text[text.index("def composeImage(") :]
    (command,) = re.findall(r'script: "(sed [^"]+)"', body)
    command = command.replace("${service}", service).replace("\\$", "$")
    result = subprocess.run(
        ["sh", "-c", command.replace("docker-compose.yml", str(compose_file))],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return result.stdout.strip()


@pytest.mark.parametrize("service", SIDECARS)
def test_the_test_sidecars_run_the_images_compose_runs(service: str) -> None:
    assert compose_image_of(service) == load_yaml(COMPOSE_FILE)["services"][service]["image"]


def test_a_new_broker_version_in_compose_is_the_one_the_tests_run_on(tmp_path: Path) -> None:
    changed = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text()
    image = load_yaml(COMPOSE_FILE)["services"]["rabbitmq"]["image"]
    changed.write_text(text.replace(f"image: {image}", "image: rabbitmq:9.9-management"))
    assert compose_image_of("rabbitmq", changed) == "rabbitmq:9.9-management"


def checks_helm_version() -> str:
    """The version of the helm tests/deploy checks the chart with (`make tools`)."""
    result = run_tool("helm", "version", "--template", "{{ .Version }}")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().removeprefix("v")


def test_deploy_runs_the_helm_the_chart_was_checked_with() -> None:
    deploy = stages(JENKINSFILE.read_text())["Deploy"]
    assert deploy_helm_version(deploy) == checks_helm_version()


def deploy_command() -> list[str]:
    """The Deploy stage's helm command, its variables given sample values."""
    deploy = stages(JENKINSFILE.read_text())["Deploy"]
    command = re.search(r"(helm upgrade --install .*?)\n\s*'''", deploy, re.S)
    assert command
    words = command[1].replace("\\\n", " ").split()
    samples = {
        '"$HOOKHUB_VALUES"': str(ROOT / "helm" / "hookhub" / "values.yaml"),
        'image.registry="$REGISTRY"': "image.registry=registry.example.com/hookhub",
        'image.tag="$IMAGE_TAG"': "image.tag=0123456789ab",
    }
    return [samples.get(word, word) for word in words]


def test_that_helm_takes_the_deploy_command_as_written(tmp_path: Path) -> None:
    # no cluster here: helm parses every flag, then stops at the unreachable cluster
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
                "users": [{"name": "u", "user": {}}],
            }
        )
    )
    _, *args = deploy_command()
    environment = {"KUBECONFIG": str(kubeconfig), "PATH": "/usr/bin:/bin"}
    result = run_tool("helm", *args, env=environment, cwd=ROOT)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "deprecated" not in output and "unknown flag" not in output, output
    assert "127.0.0.1:1" in output, output
