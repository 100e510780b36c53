"""The event the Jenkinsfile posts at the end, which hub-api must accept.

There is no Jenkins here; the file is read as text. The event it builds is then sent to a real
hub-api (on the real broker) the way Kong would pass it on: the one deployment test file that
needs the broker, so the Jenkinsfile runs it in its Test stage, beside the broker.
"""

import json
import re

import httpx
from hookhub import specs

from .repo import KONG_YML, load_yaml
from .test_jenkins_pipeline import JENKINSFILE


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
