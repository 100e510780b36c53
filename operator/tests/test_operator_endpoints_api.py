"""The operator's endpoints API over HTTP, on the whole hub (real broker, real delivery worker,
real receivers): a read-only operator changes nothing, every change is in the registry's audit
with the operator's name, a secret is in the answer that makes it and nowhere else, bad input is
a 422 that says why, a change must be JSON, and resending reaches the receiver again."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from operator_hub import OPERATOR, READ_ONLY, Hub, eventually, running_hub

from tests.support.notify_endpoint import NotifyEndpoint
from tests.support.senders import post_internal_event


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("operator-endpoints")) as running:
        yield running


@pytest.fixture(scope="module")
def receiver() -> Iterator[NotifyEndpoint]:
    endpoint = NotifyEndpoint()
    yield endpoint
    endpoint.close()


def call(
    hub: Hub, method: str, path: str, headers: dict[str, str] = OPERATOR, **kwargs: Any
) -> httpx.Response:
    return httpx.request(
        method, f"{hub.operator}/api/endpoints{path}", headers=headers, timeout=20, **kwargs
    )


def new_name() -> str:
    return f"ep-{uuid.uuid4().hex[:8]}"


def add(hub: Hub, url: str = "https://receiver.example.com/hooks", **fields: Any) -> dict:
    body = {"name": new_name(), "url": url, "types": ["ci.epapi.#"], **fields}
    response = call(hub, "POST", "", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_read_only_operator_reads_endpoints_but_changes_none(hub: Hub) -> None:
    made = add(hub)
    name = f"/{made['name']}"
    attempts = {
        "add": ("POST", "", {"json": {"name": new_name(), "url": "https://x.io", "types": ["a"]}}),
        "edit": ("PATCH", name, {"json": {"max_in_flight": 3}}),
        "disable": ("POST", f"{name}/disable", {"json": {}}),
        "enable": ("POST", f"{name}/enable", {"json": {}}),
        "rotate": ("POST", f"{name}/rotate-secret", {"json": {}}),
        "resend": ("POST", f"{name}/resend", {"json": {"event_id": "x"}}),
        "remove": ("DELETE", name, {}),
    }
    for what, (method, path, kwargs) in attempts.items():
        response = call(hub, method, path, READ_ONLY, **kwargs)
        assert response.status_code == 403, (what, response.text)
        assert "read-only" in response.json()["detail"]

    assert call(hub, "GET", "", READ_ONLY).status_code == 200
    shown = call(hub, "GET", name, READ_ONLY)
    assert shown.status_code == 200
    assert shown.json()["max_in_flight"] == made["max_in_flight"]
    assert shown.json()["secrets"] == made["secrets"]
    assert [c["action"] for c in shown.json()["audit"]] == ["add"]


def test_every_change_is_in_the_audit_trail_with_the_operator_who_made_it(hub: Hub) -> None:
    made = add(hub)
    name = f"/{made['name']}"
    assert call(hub, "PATCH", name, json={"rate_per_s": 5, "max_in_flight": 2}).status_code == 200
    assert call(hub, "POST", f"{name}/disable", json={"reason": "down"}).json()["state"] == (
        "disabled"
    )
    assert call(hub, "POST", f"{name}/enable", json={}).json()["state"] == "active"
    assert call(hub, "POST", f"{name}/rotate-secret", json={}).status_code == 200

    audit = call(hub, "GET", name, READ_ONLY).json()["audit"]
    assert [c["action"] for c in audit] == ["rotate-secret", "enable", "disable", "edit", "add"]
    assert {c["actor"] for c in audit} == {"operator:operator"}
    edit = audit[3]
    assert (edit["before"]["rate_per_s"], edit["after"]["rate_per_s"]) == (None, 5)
    assert edit["after"]["max_in_flight"] == 2

    gone = call(hub, "DELETE", name)
    assert gone.status_code == 200, gone.text
    assert call(hub, "GET", name).status_code == 404
    assert made["name"] not in {e["name"] for e in call(hub, "GET", "").json()}


def test_a_secret_is_shown_by_the_answer_that_makes_it_and_by_nothing_else(hub: Hub) -> None:
    made = add(hub)
    first = made["secret"]
    assert first.startswith("whsec_")
    name = made["name"]
    rotated = call(hub, "POST", f"/{name}/rotate-secret", json={"overlap_s": 60})
    assert rotated.status_code == 200
    second = rotated.json()["secret"]
    assert second.startswith("whsec_") and second != first
    assert len(rotated.json()["secrets"]) == 2  # the old one signs through the overlap

    seen = [
        call(hub, "GET", ""),
        call(hub, "GET", f"/{name}"),
        call(hub, "GET", "", READ_ONLY),
        call(hub, "PATCH", f"/{name}", json={"description": "after rotation"}),
        call(hub, "POST", f"/{name}/disable", json={}),
        hub.get("/endpoints"),
        hub.get(f"/endpoints/{name}"),
        hub.get("/api/openapi.json"),
        hub.get("/api/docs"),
    ]
    assert all(r.status_code == 200 for r in seen), [r.text for r in seen]
    documented = seen[-2].json()["paths"]
    assert {"post", "get"} <= set(documented["/api/endpoints"])
    assert "post" in documented["/api/endpoints/{name}/rotate-secret"]
    assert "PATCH /api/endpoints/{name}" in seen[-1].text
    for response in seen:
        assert first not in response.text and second not in response.text
    logs = "".join(p.read_text() for p in hub.log_dir.glob("*.log"))
    assert first not in logs and second not in logs


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"url": "ftp://files.example.com/in"}, "must be http:// or https://"),
        ({"url": "https://"}, "must be http:// or https://"),
        ({"types": ["payment.#x"]}, "type pattern 'payment.#x'"),
        ({"types": []}, "needs at least one event type"),
        ({"name": "Not A Name"}, "endpoint name 'Not A Name'"),
        ({"max_in_flight": 0}, "--max-in-flight must be between"),
    ],
)
def test_an_endpoint_that_cannot_be_is_refused_with_422_saying_why(
    hub: Hub, body: dict[str, Any], message: str
) -> None:
    wanted = {"name": new_name(), "url": "https://r.example.com/h", "types": ["a.b"], **body}
    response = call(hub, "POST", "", json=wanted)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert wanted["name"] not in {e["name"] for e in call(hub, "GET", "").json()}


def test_an_edit_that_breaks_the_endpoint_is_refused_and_changes_nothing(hub: Hub) -> None:
    made = add(hub)
    bad = call(hub, "PATCH", f"/{made['name']}", json={"types": ["ci..x"]})
    assert bad.status_code == 422
    assert "type pattern 'ci..x'" in bad.json()["detail"]
    bad = call(hub, "PATCH", f"/{made['name']}", json={"url": "mailto:ana@example.com"})
    assert bad.status_code == 422
    shown = call(hub, "GET", f"/{made['name']}").json()
    assert shown["types"] == ["ci.epapi.#"] and shown["url"] == made["url"]
    assert [c["action"] for c in shown["audit"]] == ["add"]
    assert call(hub, "GET", "", params={"type": "a..b"}).status_code == 422


def test_a_change_that_is_not_json_is_refused_as_a_forged_form_would_be(hub: Hub) -> None:
    name = new_name()
    form = {"name": name, "url": "https://r.example.com/h", "types": "a.b"}
    response = call(hub, "POST", "", data=form)  # what a form on another site can send
    assert response.status_code == 415
    assert name not in {e["name"] for e in call(hub, "GET", "").json()}
    made = add(hub)
    assert call(hub, "POST", f"/{made['name']}/disable", data={}).status_code == 415
    assert call(hub, "GET", f"/{made['name']}").json()["state"] == "active"


def test_the_list_filters_by_state_and_type(hub: Hub) -> None:
    on = add(hub, types=["payment.approved", "order.ready"])
    off = add(hub, types=["ci.filter.#"])
    call(hub, "POST", f"/{off['name']}/disable", json={})

    def names(**params: str) -> set[str]:
        response = call(hub, "GET", "", READ_ONLY, params=params)
        assert response.status_code == 200, response.text
        return {e["name"] for e in response.json()}

    assert {on["name"], off["name"]} <= names()
    assert off["name"] in names(state="disabled") and on["name"] not in names(state="disabled")
    assert on["name"] in names(type="order.ready") and off["name"] not in names(type="order.ready")
    assert off["name"] in names(type="ci.filter.build.done")  # an event type it receives
    listed = next(e for e in call(hub, "GET", "").json() if e["name"] == on["name"])
    assert listed["stats"]["backlog"] == 0  # its queue exists, empty
    assert call(hub, "GET", "", params={"state": "sleeping"}).status_code == 422


def test_a_delivery_is_shown_and_resent_and_so_is_every_failed_one_since_a_time(
    hub: Hub, receiver: NotifyEndpoint
) -> None:
    made = add(hub, url=receiver.url, types=["ci.epresend.#"])
    name = made["name"]
    delivered_id, failed_id = f"ok-{uuid.uuid4().hex[:8]}", f"ko-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC) - timedelta(seconds=5)
    assert post_internal_event(hub.api, "ci.epresend.ok", delivered_id).status_code == 202
    first = receiver.wait_for("ci.epresend.ok", timeout_s=30)[0]
    receiver.status_for_type["ci.epresend.ko"] = 400  # refused: a failed delivery
    assert post_internal_event(hub.api, "ci.epresend.ko", failed_id).status_code == 202
    receiver.wait_for("ci.epresend.ko")

    def recorded() -> dict | None:
        shown = call(hub, "GET", f"/{name}", READ_ONLY).json()
        ids = {d["event_id"]: d for d in shown["deliveries"]}
        return shown if {delivered_id, failed_id} <= set(ids) else None

    shown = eventually(recorded, what="both deliveries recorded")
    outcome = {d["event_id"]: d for d in shown["deliveries"]}
    assert outcome[delivered_id]["delivered"] and not outcome[failed_id]["delivered"]
    assert shown["stats"]["success_rate"] == 0.5
    assert shown["stats"]["last_error"]

    hub.indexed(delivered_id)
    again = call(hub, "POST", f"/{name}/resend", json={"event_id": delivered_id})
    assert again.status_code == 200, again.text
    assert again.json() == {"endpoint": name, "resent": 1}
    copies = receiver.wait_for("ci.epresend.ok", count=2)
    assert copies[1].headers["webhook-id"] == first.headers["webhook-id"]

    receiver.status_for_type.pop("ci.epresend.ko")
    hub.indexed(failed_id)
    failed = call(hub, "POST", f"/{name}/resend", json={"failed_since": since.isoformat()})
    assert failed.status_code == 200, failed.text
    assert failed.json()["resent"] == 1
    receiver.wait_for("ci.epresend.ko", count=2)

    missing = call(hub, "POST", f"/{name}/resend", json={"event_id": "never-sent"})
    assert missing.status_code == 404
    neither = call(hub, "POST", f"/{name}/resend", json={})
    assert neither.status_code == 422
