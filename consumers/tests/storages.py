"""One fresh storage per adapter (a SQLite file, a MongoDB database), for the contract suites of
the runtime's store and of each consumer's repository.

SQLite on a temporary file; MongoDB against the in-process stand-in, once as it is and once
interleaving (every call suspends a random number of times, from a seed: HOOKHUB_TEST_SEED, 26
unless set, so that a failure repeats), and against a real server when HOOKHUB_TEST_MONGODB_URL
is set. Stores (with the repositories of the consumers given) and
event logs are opened on it as separate processes would, and all closed at the end.
"""

import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hookhub.specs import ConsumerSpec
from hookhub_consumers.store import Store
from hookhub_consumers.store.base import load_repositories
from hookhub_consumers.store.mongo import MongoStore
from hookhub_consumers.store.sqlite import SQLiteStore
from hookhub_eventlog.store import EventLog
from hookhub_eventlog.store.mongo import MongoEventLog
from hookhub_eventlog.store.sqlite import SQLiteEventLog
from pymongo import AsyncMongoClient

from tests.support.mongo_standin import StandinClient

MONGODB_URL_VAR = "HOOKHUB_TEST_MONGODB_URL"
SEED_VAR = "HOOKHUB_TEST_SEED"
ADAPTERS = ["sqlite", "mongodb-standin", "mongodb-interleaving", "mongodb-server"]


def seed() -> int:
    """The interleaving stand-in's seed: the same one repeats a failure's order of calls."""
    return int(os.environ.get(SEED_VAR, "26"))


@dataclass
class Storage:
    new_store: Callable[[], Store]
    new_event_log: Callable[[], EventLog]
    opened: list[Store | EventLog] = field(default_factory=list)

    def store(self) -> Store:
        self.opened.append(store := self.new_store())
        return store

    def event_log(self) -> EventLog:
        self.opened.append(event_log := self.new_event_log())
        return event_log


@asynccontextmanager
async def storage(
    adapter: str, tmp_path: Path, specs: Sequence[ConsumerSpec]
) -> AsyncIterator[Storage]:
    """A fresh storage of `adapter` whose stores keep the records of the consumers of `specs`."""
    cleanup = None
    if adapter == "sqlite":
        url = f"sqlite:///{tmp_path}/hookhub.db"
        sqlite = load_repositories("sqlite", specs)
        found = Storage(
            lambda: SQLiteStore.from_url(url, sqlite), lambda: SQLiteEventLog.from_url(url)
        )
    elif adapter in ("mongodb-standin", "mongodb-interleaving"):
        client = StandinClient(seed() if adapter == "mongodb-interleaving" else None)
        database = client[f"hookhub_test_{uuid.uuid4().hex}"]
        mongodb = load_repositories("mongodb", specs)
        # The stand-in's duck type stands for an AsyncDatabase.
        found = Storage(
            lambda: MongoStore(database, repositories=mongodb),  # type: ignore[arg-type]
            lambda: MongoEventLog(database),  # type: ignore[arg-type]
        )
    else:
        server_url = os.environ.get(MONGODB_URL_VAR)
        if not server_url:
            pytest.skip(f"no MongoDB server: set {MONGODB_URL_VAR}=mongodb://host:port to run this")
        name = f"hookhub_test_{uuid.uuid4().hex}"
        admin: AsyncMongoClient = AsyncMongoClient(server_url)
        mongodb = load_repositories("mongodb", specs)

        def client() -> AsyncMongoClient:
            return AsyncMongoClient(server_url, tz_aware=True)

        found = Storage(
            lambda: MongoStore((c := client())[name], c, repositories=mongodb),
            lambda: MongoEventLog((c := client())[name], c),
        )

        async def cleanup() -> None:
            await admin.drop_database(name)
            await admin.close()

    try:
        yield found
    finally:
        for opened in found.opened:
            await opened.close()
        if cleanup:
            await cleanup()
