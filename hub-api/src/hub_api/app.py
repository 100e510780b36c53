"""hub-api's ASGI app, wiring only: the service's state, the ingest routes served directly
(`routes`) and the answers to their refusals and to clients that are too slow or leave, the
probes (`probes`), the docs page, and the lifespan that connects to the broker."""

import gc
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse
from hookhub import tracing
from hookhub.broker import MessageTooLarge
from hookhub.gateway import FORWARDED_PREFIX_HEADER
from hookhub.logs import log
from hookhub.settings import Settings
from starlette.requests import ClientDisconnect

from hub_api import openapi, probes, routes
from hub_api.deps import Service
from hub_api.fast_path import BodyTooSlow, DirectRequest, HubApi, Reply
from hub_api.headers import CORRELATION_HEADER
from hub_api.rejections import Rejected

DOCS_PATH = "/docs"
OPENAPI_PATH = "/openapi.json"
PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)+$")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    service: Service = app.state.service
    await service.broker.start()
    await service.broker.wait_ready(service.settings.connect_timeout_s)
    # What start-up built (FastAPI, pydantic models, every import) lives as long as the process.
    # Frozen out of the collector, it is no longer walked by each full collection: those
    # walks were pauses of tens of ms that made most of the p99 under load.
    gc.collect()
    gc.freeze()
    yield
    await service.broker.close()
    tracing.flush()  # uvicorn re-raises the stop signal: exit handlers would not run


def answer_too_slow(request: DirectRequest, exc: BodyTooSlow) -> Reply:
    """408, and the connection closed: the rest of a body that came too slowly is not awaited."""
    rejected = Rejected(408, "the body did not arrive within the time allowed; send it again")
    reply = routes.answer_rejected(request, rejected)
    return Reply(reply.status, reply.body, reply.media_type, {"connection": "close"})


def answer_gone(request: DirectRequest, exc: ClientDisconnect) -> Reply:
    """A client that left before its body was read: an ordinary event, logged at info. Nothing
    was published; the answer goes nowhere (the server drops it)."""
    correlation_id = request.headers.get(CORRELATION_HEADER)
    log.info("request.client_left", path=request.path, correlation_id=correlation_id)
    return Reply(400, b"", "text/plain")


def answer_too_large(request: DirectRequest, exc: MessageTooLarge) -> Reply:
    """The broker's own size check, behind the door's tighter bounds (`rejections`): a 422 for
    this request, the connection kept for everyone else."""
    return routes.answer_rejected(request, Rejected(422, str(exc)))


def create_app(settings: Settings) -> HubApi:
    """The ASGI app. With `settings.gateway_secret` unset, requests are not checked for it and
    the publish policy is not enforced (dev): it says so in a warning."""
    app = HubApi(
        # FastAPI's own telemetry would trace the probes and /metrics once a provider is set;
        # the ingest routes get their spans on the fast path.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="Hookhub",
        version="0.1.0",
        summary="One door for webhooks and internal events; answers once RabbitMQ confirmed.",
        lifespan=lifespan,
        openapi_url=OPENAPI_PATH,
        docs_url=None,  # FastAPI's page loads Swagger UI from a CDN: ours is served below
        redoc_url=None,
    )
    app.state.service = service = Service.from_settings(settings)
    if service.publish_policy is None:
        log.warning(
            "publish_policy.not_enforced",
            reason="no gateway (HOOKHUB_GATEWAY_SECRET unset): any caller may publish any type "
            "that is not reserved; behind Kong, HOOKHUB_PUBLISH_POLICY says who may publish what",
        )
    app.include_direct_router(routes.router)
    app.add_direct_exception_handler(Rejected, routes.answer_rejected)
    # A method the ingest routes' path does not serve, which the fast path refuses itself.
    app.add_direct_exception_handler(HTTPException, routes.answer_wrong_method)
    app.add_direct_exception_handler(BodyTooSlow, answer_too_slow)
    app.add_direct_exception_handler(ClientDisconnect, answer_gone)
    app.add_direct_exception_handler(MessageTooLarge, answer_too_large)
    app.include_router(probes.router)

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        """The operations, on a page with no script; behind Kong's route prefix, its link to the
        document keeps the prefix."""
        given = request.headers.get(FORWARDED_PREFIX_HEADER, "").rstrip("/")
        prefix = given if PREFIX.match(given) else ""
        page = openapi.docs_page(app.openapi(), prefix + OPENAPI_PATH)
        return HTMLResponse(page, headers=openapi.DOCS_SECURITY_HEADERS)

    return app
