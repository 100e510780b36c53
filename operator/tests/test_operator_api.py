"""The operator service's read API over HTTP, against the real broker and store: what hub-api
accepted is found, read back byte-for-byte and followed; parking lots are listed; only operators
who came through Kong get in; replay and purge take a role and a CSRF token."""

import base64
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from hookhub_consumers.store import Change, Marker
from hookhub_consumers.store.sqlite import SQLiteStore
from hookhub_eventlog.store import Step
from hookhub_eventlog.store.sqlite import SQLiteEventLog
from operator_hub import OPERATOR, READ_ONLY, Hub, eventually, running_hub

from tests.support.senders import post_internal_event
from tests.support.settings import GATEWAY_SECRET, hub_env


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("operator-api")) as running:
        yield running


def ids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {event["id"] for event in response.json()}


def test_an_accepted_webhook_is_found_by_id_type_provider_correlation_and_time(hub: Hub) -> None:
    before = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    correlation = f"corr-{uuid.uuid4().hex[:8]}"
    event_id, _ = hub.post_stripe(f"ord-{uuid.uuid4().hex[:8]}", correlation)

    found = hub.indexed(event_id)
    after = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 1))

    assert found["type"] == "stripe.payment_intent.succeeded"
    assert found["source"] == "/webhooks/stripe"
    assert event_id in ids(hub.get("/api/events", type="stripe.#"))
    assert event_id not in ids(hub.get("/api/events", type="ci.#"))
    assert event_id in ids(hub.get("/api/events", provider="stripe"))
    assert event_id in ids(hub.get("/api/events", correlation_id=correlation))
    assert event_id in ids(hub.get("/api/events", since=before, until=after))
    assert event_id not in ids(hub.get("/api/events", since=after))


def test_an_event_is_read_back_with_its_headers_and_body_byte_for_byte(hub: Hub) -> None:
    event_id, sent = hub.post_stripe(f"ord-{uuid.uuid4().hex[:8]}", "corr-bytes")
    hub.indexed(event_id)

    response = hub.get(f"/api/events/{event_id}")

    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["kept"] is True
    assert base64.b64decode(shown["body_base64"]) == sent
    assert shown["headers"]["cloudEvents:type"] == "stripe.payment_intent.succeeded"
    assert shown["content_type"].startswith("application/json")


def test_a_journey_shows_the_event_accepted_then_processed(hub: Hub) -> None:
    event_id, _ = hub.post_stripe(f"ord-{uuid.uuid4().hex[:8]}", "corr-journey")
    hub.indexed(event_id)

    journey = eventually(
        lambda: (j := hub.journey(event_id)) and any(s["what"] == "processed" for s in j) and j,
        what="processing",
    )

    assert (journey[0]["where"], journey[0]["what"]) == ("hub", "accepted")
    assert {"where": "payments", "what": "processed"}.items() <= next(
        s for s in journey if s["what"] == "processed"
    ).items()


def test_a_parked_event_is_listed_with_its_reason_and_attempts(hub: Hub) -> None:
    event_id = hub.park("ci.api.parked")

    response = hub.get("/api/parking-lots/notifications", type="ci.api.#")

    assert response.status_code == 200
    (parked,) = [p for p in response.json()["parked"] if p["id"] == event_id]
    assert parked["type"] == "ci.api.parked"
    assert "400" in parked["reason"]
    assert response.json()["queue"] == "hookhub.notifications.dlq"


def test_unknown_events_and_consumers_are_404_with_what_was_asked(hub: Hub) -> None:
    missing = hub.get("/api/events/no-such-event")
    assert missing.status_code == 404
    assert missing.json() == {
        "detail": "no event with id 'no-such-event' in the event log: the event log keeps the "
        "events archived since the archive was enabled, for its retention "
        "(HOOKHUB_ARCHIVE_MAX_AGE); older events are outside it"
    }
    assert hub.get("/api/events/no-such-event/journey").status_code == 404
    unknown = hub.get("/api/parking-lots/billing")
    assert unknown.status_code == 404
    assert "unknown consumer 'billing'" in unknown.json()["detail"]


def events_cli(hub: Hub, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookhub.cli", "events", *args],
        env={**hub.env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def outside_the_archive(hub: Hub) -> str:
    """An event only the store knows, as one parked before the archive existed and replayed
    since leaves it: steps and a processed-marker, no index row."""
    event_id = f"order-w-{uuid.uuid4().hex[:8]}"
    path = Path(hub.env["HOOKHUB_STORE_URL"].removeprefix("sqlite:///"))
    event_log, store = SQLiteEventLog(path), SQLiteStore(path)
    try:
        await event_log.record(Step(event_id, "notifications", "parked", "endpoint said 400"))
        await event_log.record(Step(event_id, "notifications", "replayed", "by ana"))
        await store.save(Change(Marker.of("notifications", "/events/storefront", event_id)))
    finally:
        await event_log.close()
        await store.close()
    return event_id


async def test_the_journey_of_an_event_outside_the_archive_is_what_the_store_recorded(
    hub: Hub,
) -> None:
    event_id = await outside_the_archive(hub)

    response = hub.get(f"/api/events/{event_id}/journey")

    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["event"] is None
    assert "outside the archive" in shown["note"]
    assert [(s["where"], s["what"]) for s in shown["timeline"]] == [
        ("notifications", "parked"),
        ("notifications", "replayed"),
        ("notifications", "processed"),
    ]


async def test_the_cli_shows_the_journey_of_an_event_outside_the_archive_with_the_note(
    hub: Hub,
) -> None:
    event_id = await outside_the_archive(hub)

    shown = events_cli(hub, "journey", event_id, "--json")

    assert shown.returncode == 0, shown.stderr
    assert "outside the archive" in shown.stdout
    assert "replayed" in shown.stdout


def test_the_cli_says_an_unknown_event_may_be_older_than_the_archive(hub: Hub) -> None:
    missing = events_cli(hub, "journey", "order-w-never")

    assert missing.returncode == 1
    assert "no event with id 'order-w-never' in the event log" in missing.stderr
    assert "HOOKHUB_ARCHIVE_MAX_AGE" in missing.stderr
    assert "older events are outside it" in " ".join(missing.stderr.split())


def test_a_time_that_is_not_iso_8601_is_422_naming_the_filter(hub: Hub) -> None:
    response = hub.get("/api/events", since="yesterday")
    assert response.status_code == 422
    assert response.json()["detail"].startswith("since 'yesterday' is not a time")


def test_a_request_that_did_not_come_through_kong_is_401(hub: Hub) -> None:
    forged = {**OPERATOR, "x-hookhub-gateway-secret": "guessed"}
    assert hub.get("/api/events", headers=forged).status_code == 401
    no_caller = {"x-hookhub-gateway-secret": GATEWAY_SECRET, "x-consumer-groups": "operators"}
    response = hub.get("/api/events", headers=no_caller)
    assert response.status_code == 401
    assert "X-Consumer-Username" in response.json()["detail"]
    assert hub.get("/", headers=forged).status_code == 401  # the console too


def test_a_kong_consumer_in_no_operator_group_is_403(hub: Hub) -> None:
    stranger = {
        **OPERATOR,
        "x-consumer-username": "jenkins",
        "x-consumer-groups": "internal-events",
    }
    response = hub.get("/api/events", headers=stranger)
    assert response.status_code == 403
    assert "jenkins is in neither operator group" in response.json()["detail"]


def test_a_read_only_operator_reads_the_api(hub: Hub) -> None:
    assert hub.get("/api/events", headers=READ_ONLY).status_code == 200
    assert hub.get("/api/parking-lots/payments", headers=READ_ONLY).status_code == 200


def test_the_openapi_document_lists_the_read_api_and_kongs_key(hub: Hub) -> None:
    document = hub.get("/api/openapi.json").json()
    assert set(document["paths"]) == {
        "/api/asyncapi.json",
        "/api/events",
        "/api/events/{event_id}",
        "/api/events/{event_id}/journey",
        "/api/orders/{order_id}",
        "/api/parking-lots/{consumer}",
        "/api/people/{key}",
        "/api/people/{person_id}/forget",
        # outbound endpoints (endpoints_api)
        "/api/endpoints",
        "/api/endpoints/{name}",
        "/api/endpoints/{name}/disable",
        "/api/endpoints/{name}/enable",
        "/api/endpoints/{name}/rotate-secret",
        "/api/endpoints/{name}/resend",
    }
    assert document["components"]["securitySchemes"]["kong"]["name"] == "apikey"
    filters = {p["name"] for p in document["paths"]["/api/events"]["get"]["parameters"]}
    assert filters == {
        "id", "type", "provider", "source", "correlation_id", "order", "since", "until",
        "unrouted", "limit",
    }  # fmt: skip


# Changes, over plain HTTP (the browser tests do the same through the pages)


@contextmanager
def csrf_session(hub: Hub, consumer: str) -> Iterator[tuple[httpx.Client, str]]:
    """A client that opened the parking lot page as the operator: its cookie, and the token."""
    with httpx.Client(base_url=hub.operator, headers=OPERATOR, timeout=20) as client:
        page = client.get(f"/parking-lots/{consumer}")
        assert page.status_code == 200, page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token, "the page has no CSRF token"
        yield client, token[1]


def test_purging_a_selected_parked_event_records_who_did_it_in_its_journey(hub: Hub) -> None:
    kept, purged = hub.park("ci.api.purge"), hub.park("ci.api.purge")
    with csrf_session(hub, "notifications") as (client, token):
        confirm = client.post(
            "/parking-lots/notifications/confirm",
            data={"csrf_token": token, "action": "purge", "id": [purged]},
        )
        assert confirm.status_code == 200
        assert "Purge 1 parked event(s) of notifications?" in confirm.text

        done = client.post(
            "/parking-lots/notifications/purge", data={"csrf_token": token, "id": [purged]}
        )
    assert done.status_code == 303
    assert "changed=purged&count=1&of=1" in done.headers["location"]
    assert purged not in hub.parked_ids("notifications")
    assert kept in hub.parked_ids("notifications")
    steps = [(s["where"], s["what"], s["detail"]) for s in hub.journey(purged)]
    assert ("notifications", "purged", "by operator (console)") in steps


def test_replaying_all_that_match_a_filter_confirms_how_many_then_replays_them(hub: Hub) -> None:
    batch = uuid.uuid4().hex[:6]
    parked = {hub.park(f"ci.matching.b{batch}"), hub.park(f"ci.matching.b{batch}")}
    other = hub.park("ci.matching.other")
    with csrf_session(hub, "notifications") as (client, token):
        confirm = client.post(
            "/parking-lots/notifications/confirm",
            data={"csrf_token": token, "action": "replay", "scope": "matching",
                  "type": f"ci.matching.b{batch}", "reason": "400"},
        )  # fmt: skip
        assert "Replay 2 parked event(s) of notifications?" in confirm.text
        confirmed = set(re.findall(r'name="id" value="([^"]+)"', confirm.text))
        assert confirmed == parked
        done = client.post(
            "/parking-lots/notifications/replay",
            data={"csrf_token": token, "id": sorted(confirmed)},
        )
    assert "changed=replayed&count=2&of=2" in done.headers["location"]
    left = hub.parked_ids("notifications")
    assert not parked & left and other in left


def test_a_change_without_the_csrf_token_is_403_and_changes_nothing(hub: Hub) -> None:
    event_id = hub.park("ci.api.forged")
    with csrf_session(hub, "notifications") as (client, _):
        forged = client.post("/parking-lots/notifications/replay", data={"id": [event_id]})
        wrong = client.post(
            "/parking-lots/notifications/replay", data={"id": [event_id], "csrf_token": "1.abc"}
        )
    assert forged.status_code == wrong.status_code == 403
    assert "CSRF token is missing or stale" in forged.text
    assert event_id in hub.parked_ids("notifications")


def test_a_read_only_operator_may_not_post_a_change(hub: Hub) -> None:
    event_id = hub.park("ci.api.readonly")
    response = httpx.post(
        f"{hub.operator}/parking-lots/notifications/replay",
        headers=READ_ONLY,
        data={"id": [event_id]},
        timeout=10,
    )
    assert response.status_code == 403
    assert "read-only operator" in response.text
    assert event_id in hub.parked_ids("notifications")


def test_the_service_refuses_to_start_without_the_gateway_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in hub_env("amqp://guest:guest@127.0.0.1:5672/").items()}
    del env["HOOKHUB_GATEWAY_SECRET"]
    result = subprocess.run(
        [sys.executable, "-m", "hookhub.cli", "operator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "HOOKHUB_GATEWAY_SECRET is not set" in result.stderr


def test_the_overview_counts_what_hub_api_accepted_and_refused(hub: Hub) -> None:
    event_id = f"ci-{uuid.uuid4().hex[:8]}"
    assert post_internal_event(hub.api, "ci.overview.counted", event_id).status_code == 202
    hub.indexed(event_id)
    refused = httpx.post(f"{hub.api}/webhooks/stripe", content=b"{}", timeout=10)
    assert refused.status_code == 401

    page = hub.get("/")

    assert page.status_code == 200
    assert "ci.overview.counted" in page.text and "jenkins (internal)" in page.text
    assert "signature rejected (bad or stale), or not through the gateway" in page.text


def test_behind_kongs_route_the_pages_link_under_the_stripped_prefix(hub: Hub) -> None:
    behind_kong = hub.get("/", headers={**OPERATOR, "x-forwarded-prefix": "/operator"})
    assert 'href="/operator/events"' in behind_kong.text
    odd = hub.get("/", headers={**OPERATOR, "x-forwarded-prefix": "//elsewhere.example"})
    assert 'href="/events"' in odd.text and "elsewhere" not in odd.text


def test_an_events_body_is_shown_escaped_on_a_page_that_runs_no_script(hub: Hub) -> None:
    event_id = f"ci-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{hub.api}/events",
        json={"type": "ci.escaped", "id": event_id, "data": {"note": "<script>alert(1)</script>"}},
        headers={**OPERATOR, "x-consumer-username": "jenkins", "content-type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    hub.indexed(event_id)

    page = hub.get(f"/events/{event_id}")

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<script>" not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    raw = hub.get(f"/events/{event_id}/raw")
    assert raw.headers["content-type"] == "application/octet-stream"
    assert raw.headers["content-disposition"].startswith("attachment;")
    assert b"<script>alert(1)</script>" in raw.content


@pytest.fixture(scope="module")
def shared_id(hub: Hub) -> str:
    """One id sent by two callers: jenkins' ci.shared.build and the storefront's
    ci.shared.deploy, both indexed (an id is unique only within its source)."""
    event_id = f"shared-{uuid.uuid4().hex[:8]}"
    for event_type, caller in (("ci.shared.build", "jenkins"), ("ci.shared.deploy", "storefront")):
        assert post_internal_event(hub.api, event_type, event_id, caller).status_code == 202
    eventually(lambda: len(hub.get("/api/events", id=event_id).json()) == 2, what="indexing both")
    return event_id


def test_events_that_share_an_id_are_all_listed_with_their_sources_not_one_shadowing_another(
    hub: Hub, shared_id: str
) -> None:
    for path in (f"/api/events/{shared_id}", f"/api/events/{shared_id}/journey"):
        response = hub.get(path)

        assert response.status_code == 409, path
        answer = response.json()
        assert answer["detail"] == (
            f"2 events have the id '{shared_id}' (from /events/storefront, /events/jenkins): "
            "choose one by its source"
        )
        assert {(e["source"], e["type"]) for e in answer["events"]} == {
            ("/events/jenkins", "ci.shared.build"),
            ("/events/storefront", "ci.shared.deploy"),
        }


@pytest.mark.parametrize(
    ("source", "event_type"),
    [("/events/jenkins", "ci.shared.build"), ("/events/storefront", "ci.shared.deploy")],
)
def test_the_source_chooses_among_events_that_share_an_id_and_its_journey_is_that_events(
    hub: Hub, shared_id: str, source: str, event_type: str
) -> None:
    shown = hub.get(f"/api/events/{shared_id}", source=source)
    journey = hub.get(f"/api/events/{shared_id}/journey", source=source)

    assert shown.status_code == 200, shown.text
    assert (shown.json()["source"], shown.json()["type"]) == (source, event_type)
    assert shown.json()["headers"]["cloudEvents:source"] == source
    assert journey.status_code == 200, journey.text
    assert journey.json()["event"]["source"] == source
    # Only this event was accepted in it. (Deliveries and consumers' steps are still recorded by
    # id alone: the other event's may show here until the consumers record the source too.)
    accepted = [line["detail"] for line in journey.json()["timeline"] if line["what"] == "accepted"]
    assert accepted == [f"{event_type} from {source}"]


def test_a_source_that_has_no_event_with_the_id_is_404_naming_both(
    hub: Hub, shared_id: str
) -> None:
    response = hub.get(f"/api/events/{shared_id}", source="/webhooks/stripe")

    assert response.status_code == 404
    assert response.json()["detail"].startswith(
        f"no event with id '{shared_id}' from /webhooks/stripe in the event log: "
    )


def test_the_console_lets_the_operator_choose_among_events_that_share_an_id(
    hub: Hub, shared_id: str
) -> None:
    page = hub.get(f"/events/{shared_id}")
    chosen = hub.get(f"/events/{shared_id}", source="/events/storefront")

    assert page.status_code == 409
    assert "2 events with the id" in page.text
    assert f"/events/{shared_id}?source=/events/jenkins" in page.text
    assert f"/events/{shared_id}?source=/events/storefront" in page.text
    assert chosen.status_code == 200
    assert "ci.shared.deploy" in chosen.text and "ci.shared.build" not in chosen.text


def test_hookhub_events_show_and_journey_list_the_sources_then_take_one(
    hub: Hub, shared_id: str
) -> None:
    def hookhub(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hookhub.cli", "events", *args],
            env=hub.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    ambiguous = hookhub("journey", shared_id)
    chosen = hookhub("journey", shared_id, "--source", "/events/jenkins", "--json")
    shown = hookhub("show", shared_id, "--source", "/events/storefront", "--json")

    said = " ".join(ambiguous.stderr.split())
    assert ambiguous.returncode == 1
    assert f"2 events have the id '{shared_id}'" in said and "--source SOURCE" in said
    assert "/events/jenkins (ci.shared.build" in said
    assert chosen.returncode == 0, chosen.stderr
    assert "ci.shared.build from /events/jenkins" in chosen.stdout
    assert shown.returncode == 0, shown.stderr
    assert '"source": "/events/storefront"' in shown.stdout


def test_the_asyncapi_document_is_served_to_operators_and_names_every_consumers_queue(
    hub: Hub,
) -> None:
    response = hub.get("/api/asyncapi.json", headers=READ_ONLY)

    assert response.status_code == 200, response.text
    document = response.json()
    assert document["asyncapi"] == "3.0.0"
    assert {name: document["channels"][name]["address"] for name in ("payments", "production")} == {
        "payments": "hookhub.payments",
        "production": "hookhub.production",
    }
    assert hub.get("/api/asyncapi.json", headers={}).status_code in (401, 403)
