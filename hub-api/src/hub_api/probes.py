"""The probes: liveness, readiness (the broker usable and confirming), Prometheus metrics."""

import json

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hub_api import openapi
from hub_api.deps import BrokerDep

router = APIRouter(tags=["probes"])


@router.get("/livez")
async def livez() -> dict[str, str]:
    """The process is up and serving."""
    return {"status": "alive"}


@router.get("/readyz", **openapi.READYZ_GET)
async def readyz(broker: BrokerDep) -> Response:
    """Ready while the broker connection and channel are usable and confirms arrive."""
    ready = await broker.check()
    return Response(
        json.dumps({"status": "ready" if ready else "broker unavailable"}),
        status_code=200 if ready else 503,
        media_type="application/json",
    )


@router.get("/metrics", **openapi.METRICS_GET)
async def metrics(broker: BrokerDep) -> Response:
    """Prometheus metrics: requests, publish latency, broker state."""
    _ = broker.ready  # refreshes the broker gauge
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
