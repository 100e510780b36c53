"""The handler table: each consumer's name and its handler steps, handed to the runtime.

The names are the topology's (`topology.CONSUMERS`); a test proves each consumer's steps cover
exactly the bindings of its work queue, and the runtime refuses to start one that does not.
"""

from hookhub_consumers import notifications, payments, production
from hookhub_consumers.contract import Steps

HANDLERS: dict[str, Steps] = {
    "payments": payments.STEPS,
    "production": production.STEPS,
    "notifications": notifications.STEPS,
}
