"""The event log's contract: what every adapter promises, run against each of them.

SQLite on a temporary file; MongoDB against the in-process stand-in, and against a real server
when HOOKHUB_TEST_MONGODB_URL is set. Tests use only the EventLog interface. That it reads what
the consumers' store writes (markers, delivery attempts) is checked by the consumers' contract
suite, which has the store to write them.
"""

import os
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hookhub_eventlog.store import EventLog, EventQuery, LoggedEvent, Step, open_event_log
from hookhub_eventlog.store.mongo import MongoEventLog
from hookhub_eventlog.store.sqlite import SQLiteEventLog
from pymongo import AsyncMongoClient

from tests.support.mongo_standin import StandinClient

MONGODB_URL_VAR = "HOOKHUB_TEST_MONGODB_URL"
A_TIME = datetime(2025, 3, 1, 15, 30, 12, 345000, tzinfo=UTC)  # millisecond precision, as stored

OpenEventLog = Callable[[], EventLog]


@pytest.fixture(params=["sqlite", "mongodb-standin", "mongodb-server"])
async def open_another(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[OpenEventLog]:
    """Opens event logs on one fresh storage, each as a separate process would."""
    opened: list[EventLog] = []
    cleanup = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/hookhub.db"

        def new() -> EventLog:
            return SQLiteEventLog.from_url(url)

    elif request.param == "mongodb-standin":
        database = StandinClient()[f"hookhub_test_{uuid.uuid4().hex}"]

        def new() -> EventLog:
            return MongoEventLog(database)  # type: ignore[arg-type]  # the stand-in's duck type

    else:
        server_url = os.environ.get(MONGODB_URL_VAR)
        if not server_url:
            pytest.skip(f"no MongoDB server: set {MONGODB_URL_VAR}=mongodb://host:port to run this")
        name = f"hookhub_test_{uuid.uuid4().hex}"
        admin: AsyncMongoClient = AsyncMongoClient(server_url)

        def new() -> EventLog:
            client: AsyncMongoClient = AsyncMongoClient(server_url, tz_aware=True)
            return MongoEventLog(client[name], client)

        async def cleanup() -> None:
            await admin.drop_database(name)
            await admin.close()

    def opening() -> EventLog:
        event_log = new()
        opened.append(event_log)
        return event_log

    yield opening
    for event_log in opened:
        await event_log.close()
    if cleanup:
        await cleanup()


@pytest.fixture
def event_log(open_another: OpenEventLog) -> EventLog:
    return open_another()


def logged(position: int, type: str, **fields) -> LoggedEvent:
    defaults = {"id": f"evt-{position}", "source": "/webhooks/stripe"}
    at = A_TIME + timedelta(minutes=position)
    return LoggedEvent(position=position, type=type, time=at, **{**defaults, **fields})


def positions(found: list[LoggedEvent]) -> list[int]:
    return [e.position for e in found]


# The index


async def test_indexed_events_are_found_by_each_field_newest_first(event_log: EventLog):
    await event_log.index(
        [
            logged(1, "stripe.payment_intent.succeeded", correlation_id="c-1", subject="o-1"),
            logged(2, "stripe.charge.refunded", correlation_id="c-1"),
            logged(3, "order.created", source="/events/storefront", subject="o-1"),
            logged(4, "payment.approved", source="/consumers/payments", causation_id="evt-1"),
        ]
    )

    async def found(**query) -> list[int]:
        return positions(await event_log.find_events(EventQuery(**query)))

    assert await found(id="evt-3") == [3]
    assert await found(type="stripe.#") == [2, 1]
    assert await found(type="stripe.*") == []
    assert await found(type="payment.*") == [4]
    assert await found(source="/webhooks/stripe") == [2, 1]
    assert await found(correlation_id="c-1") == [2, 1]
    assert await found(subject="o-1") == [3, 1]
    assert await found(causation_id="evt-1") == [4]
    assert await found(
        since=A_TIME + timedelta(minutes=2), until=A_TIME + timedelta(minutes=4)
    ) == [
        3,
        2,
    ]
    assert await found(limit=1) == [4]
    assert (await event_log.find_events(EventQuery(id="evt-1")))[0] == logged(
        1, "stripe.payment_intent.succeeded", correlation_id="c-1", subject="o-1"
    )


async def test_a_type_pattern_stops_at_the_limit_after_matching_word_by_word(event_log: EventLog):
    await event_log.index(
        [logged(n, "stripe.charge.refunded" if n % 2 else "stripe.refund") for n in range(1, 9)]
    )

    found = await event_log.find_events(EventQuery(type="stripe.*.refunded", limit=2))

    assert positions(found) == [7, 5]


async def test_found_times_are_in_utc_to_the_millisecond(event_log: EventLog):
    sao_paulo = timezone(timedelta(hours=-3))
    at = datetime(2025, 3, 1, 12, 30, 12, 345678, tzinfo=sao_paulo)
    await event_log.index([LoggedEvent(1, "evt-1", "/webhooks/stripe", "ci.build", at)])

    [found] = await event_log.find_events(EventQuery(id="evt-1"))

    assert found.time == A_TIME
    assert found.time.utcoffset() == timedelta(0)


async def test_the_index_remembers_how_far_it_got_and_takes_a_position_once(event_log: EventLog):
    assert await event_log.indexed_up_to() is None
    await event_log.index([logged(7, "ci.build"), logged(8, "ci.build")])
    await event_log.index([logged(8, "ci.build", id="changed")])

    assert await event_log.indexed_up_to() == 8
    assert [e.id for e in await event_log.find_events(EventQuery(type="ci.build"))] == [
        "evt-8",
        "evt-7",
    ]


# Journeys


async def test_an_events_steps_come_back_in_the_order_recorded(event_log: EventLog):
    await event_log.record(Step("evt-1", "notifications", "retried", "HTTP 500", at=A_TIME))
    await event_log.record(
        Step("evt-1", "notifications", "parked", "gave up", at=A_TIME + timedelta(seconds=5))
    )
    await event_log.record(Step("evt-2", "payments", "replayed", at=A_TIME))

    assert await event_log.steps("evt-1") == [
        Step("evt-1", "notifications", "retried", "HTTP 500", at=A_TIME),
        Step("evt-1", "notifications", "parked", "gave up", at=A_TIME + timedelta(seconds=5)),
    ]
    assert await event_log.steps("evt-3") == []


async def test_without_any_consumer_on_the_storage_no_event_was_processed_or_delivered(
    event_log: EventLog,
):
    assert await event_log.processed_by("/webhooks/stripe", "evt-1") == []
    assert await event_log.attempts("evt-1") == []


# Several processes on one storage


async def test_a_second_event_log_on_the_same_storage_sees_the_first_ones_writes(
    open_another: OpenEventLog,
):
    indexer, reader = open_another(), open_another()
    await indexer.index([logged(1, "ci.build")])
    await indexer.record(Step("evt-1", "operator", "replayed", at=A_TIME))

    assert positions(await reader.find_events(EventQuery())) == [1]
    assert [s.what for s in await reader.steps("evt-1")] == ["replayed"]


# Choosing the adapter


async def test_open_event_log_picks_sqlite_for_a_sqlite_url(tmp_path: Path):
    event_log = open_event_log(f"sqlite:///{tmp_path}/nested/hookhub.db")
    try:
        assert isinstance(event_log, SQLiteEventLog)
        await event_log.index([logged(1, "ci.build")])
    finally:
        await event_log.close()

    assert (tmp_path / "nested" / "hookhub.db").is_file()


async def test_open_event_log_picks_mongodb_for_a_mongodb_url():
    event_log = open_event_log("mongodb://127.0.0.1:27017/hookhub")  # connects on first use
    try:
        assert isinstance(event_log, MongoEventLog)
    finally:
        await event_log.close()


def test_open_event_log_rejects_other_urls_saying_which_ones_work_and_not_the_password():
    with pytest.raises(ValueError) as rejected:
        open_event_log("postgresql://hookhub:s3cret@localhost/hookhub")

    assert str(rejected.value) == (
        "unsupported HOOKHUB_STORE_URL scheme 'postgresql': use sqlite:///path or mongodb://host/db"
    )


# People: identifiers seen together in one event are one person (hookhub_eventlog.people)

ANA_EMAIL, ANA_PHONE = "email:ana@example.com", "phone:+5511987654321"


async def test_identifiers_seen_together_make_one_person_whose_events_are_one_lookup(
    event_log: EventLog,
):
    await event_log.index(
        [
            logged(
                1,
                "hotmart.PURCHASE_APPROVED",
                source="/webhooks/hotmart",
                identifiers=(ANA_EMAIL, ANA_PHONE),
            ),
            logged(
                2,
                "telegram.message",
                source="/webhooks/telegram",
                identifiers=(ANA_PHONE, "telegram:42"),
            ),
            logged(3, "stripe.charge.succeeded", identifiers=("email:bob@example.com",)),
        ]
    )

    person_id = await event_log.person_of("telegram:42")
    person = await event_log.person(person_id)

    assert person_id == await event_log.person_of(ANA_EMAIL)
    assert person.identifiers == [ANA_EMAIL, ANA_PHONE, "telegram:42"]
    assert positions(person.events) == [2, 1]
    assert {e.identifiers for e in person.events} == {()}  # read through `person` only
    assert {(link.a, link.b, link.event_id, link.source) for link in person.links} == {
        (ANA_EMAIL, ANA_PHONE, "evt-1", "/webhooks/hotmart"),
        (ANA_PHONE, "telegram:42", "evt-2", "/webhooks/telegram"),
    }
    assert await event_log.person_of(person_id) == person_id
    assert await event_log.person_of("email:bob@example.com") != person_id
    bob = await event_log.person_of("email:bob@example.com")
    assert await event_log.people_at([1, 2, 3, 4]) == {1: person_id, 2: person_id, 3: bob}


async def test_a_merge_keeps_the_smaller_person_id(event_log: EventLog):
    from hookhub_eventlog.people import person_id

    await event_log.index([logged(1, "a", identifiers=(ANA_EMAIL,))])
    await event_log.index([logged(2, "b", identifiers=(ANA_PHONE,))])
    await event_log.index([logged(3, "c", identifiers=(ANA_EMAIL, ANA_PHONE))])

    assert await event_log.person_of(ANA_PHONE) == min(person_id(ANA_EMAIL), person_id(ANA_PHONE))
    assert await event_log.person_of(ANA_EMAIL) == await event_log.person_of(ANA_PHONE)


async def test_unlinking_an_identifier_splits_the_person_and_a_later_event_does_not_relink(
    event_log: EventLog,
):
    await event_log.index(
        [
            logged(1, "a", identifiers=(ANA_EMAIL, ANA_PHONE)),
            logged(2, "b", identifiers=(ANA_PHONE, "telegram:42")),
        ]
    )
    before = await event_log.person_of(ANA_EMAIL)

    after = await event_log.unlink(identifier="telegram:42")
    await event_log.index([logged(3, "c", identifiers=(ANA_PHONE, "telegram:42"))])

    ana, telegram = await event_log.person_of(ANA_EMAIL), await event_log.person_of("telegram:42")
    assert ana != telegram and {ana, telegram} == set(after)
    assert (await event_log.person(ana)).identifiers == [ANA_EMAIL, ANA_PHONE]
    assert before in after
    undone = [link for link in (await event_log.person(ana)).links if link.undone_at]
    assert [(link.b, link.event_id) for link in undone] == [("telegram:42", "evt-2")]


async def test_unlinking_an_event_undoes_the_links_it_made(event_log: EventLog):
    await event_log.index(
        [
            logged(1, "a", identifiers=(ANA_EMAIL, ANA_PHONE)),
            logged(2, "b", identifiers=(ANA_PHONE, "telegram:42")),
        ]
    )

    await event_log.unlink(event_id="evt-1")

    assert await event_log.person_of(ANA_PHONE) == await event_log.person_of("telegram:42")
    assert await event_log.person_of(ANA_EMAIL) != await event_log.person_of(ANA_PHONE)


async def test_forgetting_a_person_removes_their_rows_and_keeps_tombstones_the_index_skips(
    event_log: EventLog,
):
    ana = [
        logged(1, "a", identifiers=(ANA_EMAIL, ANA_PHONE)),
        logged(2, "b", identifiers=(ANA_PHONE,)),
    ]
    await event_log.index([*ana, logged(3, "c", identifiers=("email:bob@example.com",))])
    person_id = await event_log.person_of(ANA_EMAIL)

    gone = await event_log.forget(person_id)
    await event_log.index(ana)  # the index rebuilt from the archive

    assert sorted(f.event_id for f in gone) == ["evt-1", "evt-2"]
    assert await event_log.person_of(ANA_EMAIL) is None
    assert await event_log.person(person_id) is None
    assert positions(await event_log.find_events(EventQuery())) == [3]
    [tombstone] = await event_log.forgotten("evt-1")
    assert (tombstone.source, tombstone.time) == ("/webhooks/stripe", A_TIME + timedelta(minutes=1))
    assert await event_log.forgotten("evt-3") == []


async def test_a_webhook_naming_no_order_is_found_by_the_order_its_follow_up_names(
    event_log: EventLog,
):
    await event_log.index([logged(1, "mercadopago.payment.updated", id="mp-1",
                                  source="/webhooks/mercadopago")])  # fmt: skip
    await event_log.index(
        [
            logged(2, "payment.approved", source="/consumers/payments", causation_id="mp-1",
                   subject="1001", order_id="1001"),
            logged(3, "payment.approved", source="/consumers/payments", causation_id="o-9",
                   subject="1002", order_id="1002"),
        ]
    )  # fmt: skip
    await event_log.index([logged(4, "order.created", id="o-9", source="/events/storefront")])

    assert positions(await event_log.find_events(EventQuery(order_id="1001"))) == [2, 1]
    assert positions(await event_log.find_events(EventQuery(order_id="1002"))) == [3]


async def test_a_persons_events_are_still_found_after_the_index_is_superseded(
    event_log: EventLog,
):
    await event_log.index([logged(1, "a", identifiers=(ANA_EMAIL,)), logged(2, "b")])

    await event_log.supersede()
    await event_log.index([logged(0, "c", id="evt-new", identifiers=(ANA_EMAIL,))])

    person = await event_log.person(await event_log.person_of(ANA_EMAIL))
    assert [e.id for e in person.events] == ["evt-new", "evt-1"]
    assert await event_log.people_at([e.position for e in person.events]) == {
        e.position: person.id for e in person.events
    }
