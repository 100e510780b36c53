"""A route is a function of its own module, imported and served alone on a tiny app that holds
hub-api's state: no `create_app`, no other route, and a broker that never connects (httpx runs no
lifespan), so no RabbitMQ either."""

import httpx
from hookhub.settings import Settings
from hub_api.deps import Service
from hub_api.fast_path import HubApi
from hub_api.probes import readyz
from hub_api.rejections import Rejected
from hub_api.routes import answer_rejected, receive_event

CI_EVENT = {"type": "ci.pipeline.finished", "id": "run-1", "data": {"result": "SUCCESS"}}
STRUCTURED = {"content-type": "application/cloudevents+json"}


def tiny_app(settings: Settings) -> HubApi:
    """An app with hub-api's state for these settings and its answer to refusals, and no route."""
    app = HubApi()
    app.state.service = Service.from_settings(settings)
    app.add_direct_exception_handler(Rejected, answer_rejected)
    return app


def client_of(app: HubApi) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hub")


async def test_receive_event_alone_answers_503_with_the_settings_retry_after_without_a_broker():
    app = tiny_app(Settings(gateway_secret=None, retry_after_s=7))
    app.serve_directly("/events", "POST")(receive_event)

    async with client_of(app) as client:
        response = await client.post("/events", json=CI_EVENT, headers=STRUCTURED)

    assert (response.status_code, response.headers["retry-after"]) == (503, "7")
    assert response.json() == {
        "detail": "the event was not accepted: the message broker is unavailable; retry later"
    }


async def test_receive_event_alone_refuses_a_request_that_did_not_come_through_the_gateway():
    app = tiny_app(Settings(gateway_secret="kong-only"))
    app.serve_directly("/events", "POST")(receive_event)

    async with client_of(app) as client:
        response = await client.post("/events", json=CI_EVENT, headers=STRUCTURED)

    assert response.status_code == 401
    assert response.json() == {"detail": "request did not come through the gateway"}


async def test_readyz_alone_is_503_while_the_broker_from_the_apps_state_is_not_connected():
    app = tiny_app(Settings())
    app.get("/readyz")(readyz)

    async with client_of(app) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {"status": "broker unavailable"}
