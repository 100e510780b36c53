"""The raw limit: aio-pika publishing straight to the broker, no HTTP, nothing else in the way.

As many publishers as the HTTP cases have connections share one robust connection and one
confirm-mode channel (what hub-api does), each publishing a persistent message and awaiting the
broker's confirm before the next, so the concurrency in flight is the same as under wrk.
"""

import asyncio
import time

import aio_pika
from report import CaseResult, Latencies

PUBLISH_TIMEOUT_S = 5.0  # hub-api's default publish_timeout_s


async def publish_flat_out(
    amqp_url: str,
    exchange_name: str,
    routing_key: str,
    body: bytes,
    publishers: int,
    duration_s: float,
) -> CaseResult:
    """Publish from `publishers` concurrent tasks for `duration_s`; every publish is timed."""
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name, ensure=False)
        message = aio_pika.Message(
            body, content_type="application/json", delivery_mode=aio_pika.DeliveryMode.PERSISTENT
        )
        latencies_s: list[float] = []
        errors: dict[str, int] = {}
        deadline = time.perf_counter() + duration_s

        async def publisher() -> None:
            # Bounded by the deadline: no new publish starts after it. As wrk does, a publish
            # still in flight at the deadline is not counted (it is still confirmed and drained).
            while (sent := time.perf_counter()) < deadline:
                try:
                    await exchange.publish(message, routing_key, timeout=PUBLISH_TIMEOUT_S)
                except (aio_pika.exceptions.AMQPError, TimeoutError, ConnectionError) as exc:
                    name = type(exc).__name__
                    errors[name] = errors.get(name, 0) + 1
                    continue
                if (confirmed := time.perf_counter()) <= deadline:
                    latencies_s.append(confirmed - sent)

        await asyncio.gather(*(publisher() for _ in range(publishers)))
    latencies = Latencies.from_seconds(latencies_s)
    return CaseResult(
        ok=len(latencies_s),
        duration_s=duration_s,
        p50_ms=latencies.percentile_ms(50),
        p99_ms=latencies.percentile_ms(99),
        max_ms=latencies.percentile_ms(100),
        errors=errors,
    )
