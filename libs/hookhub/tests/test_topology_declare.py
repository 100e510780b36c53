"""Declaring over an older Hookhub's topology: a queue declared differently is kept and named,
and everything else is still declared."""

import aio_pika
import pytest
from hookhub import topology

from tests.support.broker import fresh_vhost


async def test_a_queue_declared_differently_is_named_and_the_rest_is_still_declared():
    with fresh_vhost() as amqp_url:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            # hookhub.unrouted as an older Hookhub declared it: no length bound.
            await channel.declare_queue(
                topology.UNROUTED_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
            )
            with pytest.raises(topology.TopologyConflict, match="queue hookhub.unrouted already"):
                await topology.declare(channel, (1.0,), 20, topology.Archive())
            archive = await channel.declare_queue(topology.ARCHIVE_QUEUE, passive=True)
            work = await channel.declare_queue(topology.work_queue("payments"), passive=True)
    assert archive.name == topology.ARCHIVE_QUEUE
    assert work.name == topology.work_queue("payments")
