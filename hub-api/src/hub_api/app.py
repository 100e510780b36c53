"""hub-api's ASGI app, wiring only: the service's state, the ingest routes served directly
(`routes`) and the answers to their refusals, the probes (`probes`), and the lifespan that
connects to the broker."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException
from hookhub import tracing
from hookhub.observability import log
from hookhub.settings import Settings

from hub_api import probes, routes
from hub_api.deps import Service
from hub_api.fast_path import HubApi
from hub_api.rejections import Rejected


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
    app.include_router(probes.router)
    return app
