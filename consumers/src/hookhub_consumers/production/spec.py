"""What the production consumer is: read by every process through the `hookhub.consumers` entry
point (it imports only the shared library)."""

from hookhub.specs import ConsumerSpec

SPEC = ConsumerSpec(
    name="production",
    description="a ticket for each paid order, from queued to ready",
    bindings=(
        "payment.approved",
        "payment.refunded",
        "payment.charged_back",
        "production.finished",
    ),
    steps="hookhub_consumers.production.steps:STEPS",
    repositories={
        "sqlite": "hookhub_consumers.production.store_sqlite:SQLiteTickets",
        "mongodb": "hookhub_consumers.production.store_mongo:MongoTickets",
    },
    emits={
        "production.queued": "a ticket was queued for a paid order",
        "production.cancelled": "a ticket was cancelled after a refund or chargeback",
        "production.overdue": "a ticket was not finished in time",
        "order.ready": "the order is finished and ready",
    },
    deadlines={"deadline.production": "a ticket's time in production is up"},
    deadline_settings={"deadline.production": "production_timeout_s"},
)
