"""What the notifications consumer is: read by every process through the `hookhub.consumers`
entry point (it imports only the shared library)."""

from hookhub.specs import ConsumerSpec

SPEC = ConsumerSpec(
    name="notifications",
    description="delivers events to the endpoints that subscribe to them, signed, each isolated",
    bindings=(
        "payment.*",
        "order.ready",
        "order.expired",
        "order.conflict",
        "production.cancelled",
        "production.overdue",
        "ci.#",
    ),
    steps="hookhub_consumers.notifications.steps:STEPS",
    # The circuit breaker's (notifications.worker): an endpoint paused, and resumed.
    emits={
        "endpoint.disabled": "an endpoint was paused after sustained failure; its events wait",
        "endpoint.recovered": "a paused endpoint took a probe delivery and is delivered again",
    },
    owns=("endpoint",),
    repositories={
        "sqlite": "hookhub_consumers.notifications.store_sqlite:SQLiteDeliveries",
        "mongodb": "hookhub_consumers.notifications.store_mongo:MongoDeliveries",
    },
)
