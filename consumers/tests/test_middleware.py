"""The runtime's middleware hook: middlewares wrap the handling of each message, see what became
of it, and cannot lose it; and a handler's requested delay, honoured through the retry queues."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aio_pika
import httpx
import pytest
from hookhub import specs, topology
from hookhub.events import EXCHANGE, Event, new_event_id
from hookhub.settings import Settings
from hookhub_consumers import middleware, retries
from hookhub_consumers.handler import Outcome, Retry
from hookhub_consumers.middleware import CallNext, Handling, Middleware
from hookhub_consumers.runtime import Consumer
from hookhub_consumers.store import open_store
from hookhub_eventlog.store import open_event_log

from tests.support.broker import fresh_vhost

CONSUMER = "production"


def recording(name: str, seen: list[str]) -> Middleware:
    async def record(handling: Handling, call_next: CallNext) -> None:
        seen.append(f"{name} before")
        await call_next(handling)
        seen.append(f"{name} after: {handling.outcome}")

    return record


async def test_middlewares_run_outermost_first_and_see_what_became_of_the_message():
    seen: list[str] = []

    async def settle(handling: Handling) -> None:
        seen.append("runtime")
        handling.outcome = "processed"

    call = middleware.chain([recording("outer", seen), recording("inner", seen)], settle)
    await call(Handling(CONSUMER, topology.work_queue(CONSUMER), message=None, late=False))  # type: ignore[arg-type]

    assert seen == [
        "outer before",
        "inner before",
        "runtime",
        "inner after: processed",
        "outer after: processed",
    ]


@asynccontextmanager
async def running(
    tmp_path, handler, *extra: Middleware, **settings: object
) -> AsyncIterator[Callable[[], asyncio.Future]]:
    """A production consumer in this process whose every step is `handler`, with `extra`
    middlewares after the default ones; yields a function that publishes one event."""
    spec = specs.by_name(CONSUMER)
    steps = {binding: handler for binding in spec.handled_types}
    with fresh_vhost() as amqp_url:
        config = Settings(
            amqp_url=amqp_url,
            store_url=f"sqlite:///{tmp_path}/hookhub.db",
            archive_enabled=False,
            **settings,
        )
        store, journal = open_store(config.store_url), open_event_log(config.store_url)
        async with httpx.AsyncClient() as http:
            middlewares = (*middleware.DEFAULT, *extra)
            consumer = Consumer(spec, steps, config, store, journal, http, middlewares=middlewares)
            await consumer.start()
            connection = await aio_pika.connect(amqp_url)
            try:
                deadline = time.monotonic() + 20
                while not await consumer.check():
                    assert time.monotonic() < deadline, "the consumer did not get ready"
                    await asyncio.sleep(0.1)
                channel = await connection.channel(publisher_confirms=True)
                exchange = await channel.get_exchange(EXCHANGE)
                event = Event(
                    id=new_event_id(), source="/tests", type="payment.approved", data=b"{}"
                )
                yield lambda: exchange.publish(event.to_message(), event.routing_key)
            finally:
                await connection.close()
                await consumer.stop()
        await store.close()
        await journal.close()


async def until(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_handlers_requested_delay_waits_in_the_shortest_retry_queue_at_least_that_long(
    tmp_path, monkeypatch
):
    """Asked for 1 s with retry queues of 0.2 s and 1.5 s: the copy waits in the 1.5 s queue with
    a TTL of its own, never under the 1 s asked for (the jitter drawn here at its shortest)."""
    monkeypatch.setattr(retries.random, "random", lambda: 0.0)
    handled_at: list[float] = []
    seen: list[tuple[str | None, str | None]] = []  # outcome, the retry queue it came back from

    async def busy_then_done(event, context) -> Outcome:
        handled_at.append(time.monotonic())
        if len(handled_at) == 1:
            raise Retry("busy", delay_s=1.0)
        return Outcome()

    async def where_from(handling: Handling, call_next: CallNext) -> None:
        await call_next(handling)
        deaths = (handling.message.headers or {}).get("x-death") or [{}]
        seen.append((handling.outcome, deaths[0].get("queue")))

    delays = {"retry_delays_s": (0.2, 1.5), "retry_jitter_ratio": 0.5}
    async with running(tmp_path, busy_then_done, where_from, **delays) as publish:
        await publish()
        await until(lambda: len(seen) == 2)

    assert seen == [("retried", None), ("processed", topology.retry_queue(CONSUMER, 1.5))]
    assert 1.0 <= handled_at[1] - handled_at[0] < 1.5


@pytest.mark.parametrize("fails", ["before", "after", "to call on"])
async def test_a_failing_middleware_never_loses_the_message(tmp_path, fails):
    """Failing before the handler ran (or never calling on), the message is retried like a
    handler's failure; failing after it was settled, it is done with all the same; handled
    once either way."""
    handled: list[str] = []
    seen: list[str | None] = []

    async def done(event, context) -> Outcome:
        handled.append(event.id)
        return Outcome()

    async def flaky(handling: Handling, call_next: CallNext) -> None:
        if fails in ("before", "to call on") and not seen:
            seen.append(None)
            if fails == "before":
                raise RuntimeError("a middleware's bug")
            return
        await call_next(handling)
        seen.append(handling.outcome)
        if fails == "after":
            raise RuntimeError("a middleware's bug")

    async with running(tmp_path, done, flaky, retry_delays_s=(0.2,)) as publish:
        await publish()
        await until(lambda: "processed" in seen)
        await asyncio.sleep(0.5)  # nothing more comes

    assert seen == (["processed"] if fails == "after" else [None, "processed"])
    assert len(handled) == 1
