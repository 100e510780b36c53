"""A person's page and an order's page over a big event log with many people, through the
operator service, as a script (`/api/people/<e-mail>`, `/api/orders/<id>`) asks for them.

    .venv/bin/python bench/run.py --only people              # 1,000,000 events, 100,000 people
    .venv/bin/python bench/people.py --indexed 200000        # alone, fewer events

`hookhub operator` (uvicorn, 1 worker, as shipped) over a SQLite file filled through the event
log's own bulk write (`EventLog.index`, as the indexer writes: the links and persons made as
they are in production), not through the broker. Each person has `EVENTS_PER_PERSON` events
spread over the archive (`PEOPLE_AT_ONCE` positions apart), carrying their e-mail, their phone,
both (the event that links them) or a Telegram id with the phone; two orders each. Sequential
requests for a person (by e-mail) or an order at random. Goal (issue 24): p99 under 50 ms.
"""

import argparse
import asyncio
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hookhub_eventlog.store import LoggedEvent
from operator_harness import fill_event_log, report_pages, serving_operator
from report import console
from support import Options, latency_ms

INDEXED = 1_000_000
SAMPLES = 500
PEOPLE_AT_ONCE = 1_000
# One person's events, oldest first: (type, source, which identifiers).
LIFE = (
    ("order.created", "/events/storefront", ("email",)),
    ("hotmart.PURCHASE_APPROVED", "/webhooks/hotmart", ("email", "phone")),
    ("telegram.message", "/webhooks/telegram", ("phone", "telegram")),
    ("whatsapp.messages", "/webhooks/whatsapp", ("phone",)),
    ("github.member", "/webhooks/github", ("email",)),
    ("order.created", "/events/storefront", ("email",)),
    ("stripe.checkout.session.completed", "/webhooks/stripe", ("email",)),
    ("telegram.message", "/webhooks/telegram", ("telegram",)),
    ("whatsapp.messages", "/webhooks/whatsapp", ("phone",)),
    ("stripe.charge.refunded", "/webhooks/stripe", ("email",)),
)
EVENTS_PER_PERSON = len(LIFE)
START = datetime(2026, 11, 1, tzinfo=UTC)
SECONDS_APART = 0.5
GOAL_P99_MS = 50


def _identifier(kind: str, person: int) -> str:
    return {
        "email": f"email:p{person:07d}@example.com",
        "phone": f"phone:+55119{person:08d}",
        "telegram": f"telegram:{person}",
    }[kind]


def _event(position: int) -> LoggedEvent:
    window, offset = divmod(position, PEOPLE_AT_ONCE * EVENTS_PER_PERSON)
    step, nth = divmod(offset, PEOPLE_AT_ONCE)
    person = window * PEOPLE_AT_ONCE + nth
    type, source, kinds = LIFE[step]
    order = f"ord-{person:07d}-{0 if step < 5 else 1}"
    return LoggedEvent(
        position=position,
        id=f"evt-{position:08d}",
        source=source,
        type=type,
        time=START + timedelta(seconds=position * SECONDS_APART),
        order_id=order if source != "/webhooks/telegram" else None,
        identifiers=tuple(sorted(_identifier(kind, person) for kind in kinds)),
    )


async def _pages(client: httpx.AsyncClient, people: int) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name, path in (("person", "/api/people/p{:07d}@example.com"),
                       ("order", "/api/orders/ord-{:07d}-0")):  # fmt: skip
        samples = []
        for _ in range(SAMPLES):
            url = path.format(random.randrange(people))
            started = time.perf_counter()
            response = await client.get(url)
            samples.append(time.perf_counter() - started)
            assert response.status_code == 200, (name, response.status_code, response.text)
            if name == "person":
                assert len(response.json()["events"]) == EVENTS_PER_PERSON
        figures[name] = latency_ms(samples)
    return figures


async def measure(indexed: int, server_python: str = sys.executable) -> dict[str, Any]:
    """The figures, with the operator service run by `server_python`."""
    people = indexed // (PEOPLE_AT_ONCE * EVENTS_PER_PERSON) * PEOPLE_AT_ONCE
    indexed = people * EVENTS_PER_PERSON  # whole people only
    with tempfile.TemporaryDirectory(prefix="hookhub-bench-people-") as tmp:
        path = Path(tmp) / "hookhub.db"
        console.print(f"people: indexing {indexed:,} events ({people:,} people) in SQLite ...")
        indexing_s = await fill_event_log(path, indexed, _event)
        async with serving_operator(path, server_python) as client:
            await client.get("/api/people/p0000000@example.com")  # warm
            pages = await _pages(client, people)
    return {"indexed": indexed, "people": people, "indexing_s": indexing_s, **pages}


def report(figures: dict[str, Any]) -> None:
    title = (
        f"A person's and an order's page over {figures['indexed']:,} indexed events, "
        f"{figures['people']:,} people (SQLite, HTTP; indexed in {figures['indexing_s']:.0f} s)"
    )
    report_pages(title, figures, ("person", "order"), GOAL_P99_MS)


async def run(options: Options) -> dict[str, Any]:
    figures = await measure(INDEXED)
    report(figures)
    return {"section": "people", **figures}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--indexed", type=int, default=INDEXED)
    parser.add_argument("--server-python", default=sys.executable)
    arguments = parser.parse_args()
    report(asyncio.run(measure(arguments.indexed, arguments.server_python)))
