"""Forgotten events' parked copies: `hookhub people forget` removes them from every parking lot
(each consumer's `hookhub.<consumer>.dlq`, each endpoint's `hookhub.endpoint.<name>.dlq`), so
that no replay brings a forgotten person's event back.

The lots are found as `hookhub topology plan` finds queues (`migrations.observe`): the whole
vhost through the management API or rabbitmqctl; through AMQP alone, only the installed
consumers' lots (an endpoint's lot cannot be seen then, and keeps its copies).
"""

from aio_pika.abc import AbstractConnection
from hookhub import dlq, migrations, specs, topology
from hookhub.settings import Settings

DLQ_SUFFIX = ".dlq"


async def parking_lots(connection: AbstractConnection, settings: Settings) -> list[str]:
    """The owners (a consumer's name, `endpoint.<name>`) of every parking lot on the broker."""
    wanted = [
        topology.QueueSpec(topology.dead_letter_queue(spec.name), {}) for spec in specs.installed()
    ]
    observed = await migrations.observe(connection, settings, wanted)
    return sorted(
        name.removeprefix(topology.PREFIX).removesuffix(DLQ_SUFFIX)
        for name in observed.queues
        if name.startswith(topology.PREFIX) and name.endswith(DLQ_SUFFIX)
    )


async def remove_parked(
    connection: AbstractConnection, settings: Settings, event_ids: set[str]
) -> dict[str, int]:
    """Remove the parked copies of these events from every parking lot; how many from each
    lot that held any."""
    removed: dict[str, int] = {}
    for owner in await parking_lots(connection, settings):
        if found := await dlq.discard(connection, owner, event_ids):
            removed[owner] = len(found)
    return removed
