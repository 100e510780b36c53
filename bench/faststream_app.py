"""The FastStream baseline: the smallest FastAPI + FastStream publisher with hub-api's durability.

POST /events publishes the body as it came to hookhub.events and answers 202 once the broker has
confirmed it. No verification, no CloudEvents headers, no metrics, no logs per request: what is
left is HTTP parsing plus a confirmed, persistent publish through FastStream's RabbitBroker.

Durability equal to hub-api's, set explicitly rather than left to defaults:
- publisher confirms: the broker's default channel is opened in confirm mode (`Channel(
  publisher_confirms=True)`, FastStream's default too), so `publish` returns only after the ack;
- persistent delivery: `persist=True` (FastStream's default is transient!);
- the same confirm timeout as hub-api (5 s), and anything but an ack answers 503.

Served by uvicorn, 1 worker, uvloop and httptools (bench/ingest.py starts it), with the broker
URL and routing key from BENCH_AMQP_URL and BENCH_ROUTING_KEY.
"""

import os

import aiormq
from fastapi import FastAPI, Request, Response
from faststream.rabbit import Channel, ExchangeType, RabbitExchange
from faststream.rabbit.fastapi import RabbitRouter
from hookhub.events import EXCHANGE

PUBLISH_TIMEOUT_S = 5.0

router = RabbitRouter(
    os.environ["BENCH_AMQP_URL"],
    default_channel=Channel(publisher_confirms=True),
    include_in_schema=False,
)
# Declared by the bench set-up (hookhub.topology); declare=False only checks that it exists.
events = RabbitExchange(EXCHANGE, type=ExchangeType.TOPIC, durable=True, declare=False)
routing_key = os.environ["BENCH_ROUTING_KEY"]


@router.post("/events", status_code=202)
async def publish(request: Request) -> Response:
    confirmation = await router.broker.publish(
        await request.body(),
        exchange=events,
        routing_key=routing_key,
        persist=True,
        content_type="application/json",
        timeout=PUBLISH_TIMEOUT_S,
    )
    if not isinstance(confirmation, aiormq.spec.Basic.Ack):
        return Response(status_code=503)
    return Response(status_code=202)


app = FastAPI()
app.include_router(router)  # also runs the broker's lifespan: connect on start-up, close after
