"""Reading the event log's archive stream in a test: is this event kept, and as what?"""

import asyncio

import aio_pika
from hookhub import topology


async def archived(
    connection: aio_pika.abc.AbstractConnection, event_id: str, quiet_s: float = 3
) -> aio_pika.abc.AbstractIncomingMessage | None:
    """The archived message of `event_id`, read from the start of the stream; None when the
    stream goes quiet for `quiet_s` without it."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=100)  # a stream consumer must have one
    queue = await channel.get_queue(topology.ARCHIVE_QUEUE, ensure=False)
    arrived: asyncio.Queue = asyncio.Queue()
    await queue.consume(arrived.put, arguments={"x-stream-offset": "first"})
    try:
        while True:
            message = await asyncio.wait_for(arrived.get(), quiet_s)
            await message.ack()
            if message.message_id == event_id:
                return message
    except TimeoutError:
        return None
    finally:
        await channel.close()
