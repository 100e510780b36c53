"""The Jenkinsfile: its stages, and the event it posts at the end, which hub-api must accept.

There is no Jenkins here; the file is read as text. The event it builds is then sent to a real
hub-api (on the real broker) the way Kong would pass it on.
"""

import json
import re

import httpx
import pytest
from hookhub import specs

from .repo import KONG_YML, ROOT, load_yaml
from .test_docker_images import IMAGES

JENKINSFILE = ROOT / "Jenkinsfile"
STAGES = ["Lint", "Test", "Images", "Chart checks", "Deploy"]
STAGE = re.compile(r"stage\('([^']+)'\)")


def stages(text: str) -> dict[str, str]:
    """Each stage's name and the text up to the next stage (or the pipeline's post)."""
    found = list(STAGE.finditer(text))
    end = text.find("\n    post {", found[-1].end()) if found else -1
    return {
        match[1]: text[match.end() : found[i + 1].start() if i + 1 < len(found) else end]
        for i, match in enumerate(found)
    }


def pipeline_problems(text: str) -> list[str]:
    found = stages(text)
    problems = []
    if list(found) != STAGES:
        problems.append(f"stages are {list(found)}, not {STAGES}")
    test = found.get("Test", "")
    if not re.search(r"docker\.image\('rabbitmq:[^']+'\)\.withRun", test):
        problems.append("the Test stage has no RabbitMQ sidecar")
    if "pytest" not in test:
        problems.append("the Test stage runs no tests")
    images = found.get("Images", "")
    if not all(dockerfile in images for dockerfile in IMAGES.values()) or ".push(" not in images:
        problems.append("the Images stage does not build and push every image")
    if "tests/deploy" not in found.get("Chart checks", ""):
        problems.append("the Chart checks stage does not run tests/deploy")
    deploy = found.get("Deploy", "")
    if (
        not re.search(r"docker \{ image '[^']*helm[^']*'", deploy)
        or "helm upgrade --install" not in deploy
    ):
        problems.append("the Deploy stage does not run helm in a container")
    post = text[text.find("\n    post {") : text.find("def reportToHookhub()")]
    if "always" not in post or "reportToHookhub()" not in post:
        problems.append("the pipeline does not report to Hookhub whatever the result")
    return problems


def test_pipeline_has_every_stage_and_reports_at_the_end() -> None:
    assert pipeline_problems(JENKINSFILE.read_text()) == []


@pytest.mark.parametrize(
    "breakage, expected",
    [
        pytest.param(
            lambda t: t.replace(".withRun(", ".run(", 1), "no RabbitMQ sidecar", id="no-sidecar"
        ),
        pytest.param(
            lambda t: t.replace("stage('Images')", "stage('Pictures')"),
            "stages are",
            id="stage-renamed",
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
    assert any(expected in p for p in pipeline_problems(broken))


def reported_event() -> dict[str, object]:
    """The CloudEvent reportToHookhub builds, with sample values for Jenkins' variables."""
    text = JENKINSFILE.read_text()
    body = text[text.index("def reportToHookhub()") :]
    event_type = re.search(r"type\s*:\s*'([^']+)'", body)
    data_keys = re.findall(r"^\s+(\w+)\s*:", body[body.index("data") : body.index("])")], re.M)
    assert event_type and data_keys
    sample = {"result": "SUCCESS", "build": "42", "duration_ms": 61000}
    return {
        "specversion": "1.0",
        "id": "hookhub/main#42",
        "type": event_type[1],
        "subject": "hookhub/main",
        "datacontenttype": "application/json",
        "data": {key: sample.get(key, f"sample-{key}") for key in data_keys[1:]},
    }


def test_the_report_goes_to_events_through_kong_with_the_jenkins_key() -> None:
    body = JENKINSFILE.read_text().split("def reportToHookhub()", 1)[1]
    kong = load_yaml(KONG_YML)
    events = next(r for s in kong["services"] for r in s["routes"] if r["name"] == "events")
    key_auth = next(p for p in events["plugins"] if p["name"] == "key-auth")["config"]
    assert '"$HOOKHUB_URL/events"' in body
    assert f'-H "{key_auth["key_names"][0]}: $HOOKHUB_KEY"' in body
    assert "application/cloudevents+json" in body
    jenkins = next(c for c in kong["consumers"] if c["username"] == "jenkins")
    assert {"group": "internal-events"} in jenkins["acls"]


def test_the_report_is_routed_to_the_notifications_consumer() -> None:
    event_type = str(reported_event()["type"])
    assert event_type == "ci.pipeline.finished"
    assert "ci.#" in specs.by_name("notifications").bindings


async def test_hub_api_accepts_the_pipelines_report_and_publishes_it(
    api: httpx.AsyncClient, capture
) -> None:  # type: ignore[no-untyped-def]
    queue = await capture("ci.#")
    event = reported_event()
    response = await api.post(
        "/events",
        content=json.dumps(event),
        headers={"content-type": "application/cloudevents+json", "x-consumer-username": "jenkins"},
    )
    assert response.status_code == 202, response.text
    assert response.json() == {"id": event["id"], "type": "ci.pipeline.finished"}
    message = await queue.get()
    assert message.routing_key == "ci.pipeline.finished"
    assert message.headers["cloudEvents:source"] == "/events/jenkins"
    assert json.loads(message.body)["result"] == "SUCCESS"


async def test_a_pipeline_posting_a_reserved_type_is_refused(api: httpx.AsyncClient) -> None:
    event = reported_event() | {"type": "payment.approved"}
    response = await api.post(
        "/events",
        content=json.dumps(event),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert response.status_code == 403
    assert "reserved" in response.json()["detail"]
