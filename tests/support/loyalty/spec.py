"""What the loyalty consumer is (it imports only the shared library). A real consumer's spec is
registered under the `hookhub.consumers` entry point; tests hand this one to the topology and
the runtime themselves."""

from hookhub.specs import ConsumerSpec

SPEC = ConsumerSpec(
    name="loyalty",
    description="points for every paid order, per customer",
    bindings=("payment.approved",),
    steps="tests.support.loyalty.steps:STEPS",
    emits={"loyalty.points_earned": "a customer earned points for a paid order"},
    repositories={
        "sqlite": "tests.support.loyalty.store_sqlite:SQLiteAccounts",
        "mongodb": "tests.support.loyalty.store_mongo:MongoAccounts",
    },
)
