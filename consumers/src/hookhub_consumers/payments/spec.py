"""What the payments consumer is: read by every process through the `hookhub.consumers` entry
point (it imports only the shared library)."""

from hookhub.providers import PROVIDERS
from hookhub.specs import ConsumerSpec

SPEC = ConsumerSpec(
    name="payments",
    description="each order's payment state, from the storefront's orders and the providers' "
    "payments",
    bindings=(
        "order.created",
        "order.amended",
        *(f"{p.name}.#" for p in PROVIDERS.values() if p.payment),
    ),
    steps="hookhub_consumers.payments.steps:STEPS",
    repositories={
        "sqlite": "hookhub_consumers.payments.store_sqlite:SQLiteOrders",
        "mongodb": "hookhub_consumers.payments.store_mongo:MongoOrders",
    },
    # Notifications delivers every payment.*, so the whole namespace is the payments consumer's.
    owns=("payment",),
    emits={
        "payment.approved": "the order is paid: the amount covers it, same currency",
        "payment.declined": "a provider declined the order's payment",
        "payment.mismatched": "money that does not settle the order (short, another currency, "
        "or after it expired)",
        "payment.refunded": "the order's payment was refunded in full",
        "payment.partially_refunded": "part of the payment was refunded",
        "payment.charged_back": "the payment was disputed or charged back",
        "payment.order_missing": "a payment whose order did not arrive in time",
        "order.expired": "the order was not paid in time",
        "order.conflict": "an order.created with other details for an order that exists, or an "
        "order.amended for one no longer unpaid: refused, the order unchanged",
    },
    deadlines={
        "deadline.order_payment": "the order's time to be paid is up",
        "deadline.payment_order": "a held payment's time to meet its order is up",
    },
    deadline_settings={
        "deadline.order_payment": "order_payment_timeout_s",
        "deadline.payment_order": "payment_order_timeout_s",
    },
)
