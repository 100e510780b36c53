"""What the notifications consumer is: read by every process through the `hookhub.consumers`
entry point (it imports only the shared library)."""

from hookhub.specs import ConsumerSpec

SPEC = ConsumerSpec(
    name="notifications",
    description="delivers what the team wants to hear of to its endpoint, signed",
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
    repositories={
        "sqlite": "hookhub_consumers.notifications.store_sqlite:SQLiteDeliveries",
        "mongodb": "hookhub_consumers.notifications.store_mongo:MongoDeliveries",
    },
)
