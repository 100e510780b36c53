"""Store schemas numbered and recorded (#27): each component that owns tables in the store (the
runtime's `store`, each consumer's records, the `eventlog`) is brought to its latest version
when the store is opened, and `schema_versions` says which and when; a store a newer release
made is refused, with what to do, before anything in it is changed. SQLite and the MongoDB
stand-in."""

import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from hookhub.schema import NewerSchema
from hookhub_consumers.payments.store_sqlite import SQLiteOrders
from hookhub_consumers.store import migrate
from hookhub_consumers.store.mongo import MongoStore
from hookhub_consumers.store.sqlite import SQLiteStore
from hookhub_eventlog.store.mongo import MIGRATIONS as MONGO_EVENTLOG
from hookhub_eventlog.store.mongo import MongoEventLog
from hookhub_eventlog.store.sqlite import MIGRATIONS as SQLITE_EVENTLOG
from hookhub_eventlog.store.sqlite import SQLiteEventLog

from tests.support.loyalty.spec import SPEC as LOYALTY
from tests.support.loyalty.store_mongo import MongoAccounts
from tests.support.loyalty.store_sqlite import SQLiteAccounts
from tests.support.mongo_standin import StandinClient

NEWER = (
    r"^payments: store schema is version 2, newer than this release's 1: run the newer "
    r"release, or restore the store from a backup taken before the upgrade$"
)
# The orders table as the first release made it: no schema_versions, fewer columns.
OLD_ORDERS = """
CREATE TABLE orders (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    amount     INTEGER,
    currency   TEXT,
    customer   TEXT,
    items      TEXT NOT NULL,
    provider   TEXT,
    payment_id TEXT,
    version    INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
"""


def recorded(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT component, version FROM schema_versions"))


def columns(path: Path, table: str) -> set[str]:
    with sqlite3.connect(path) as db:
        return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


async def test_a_new_sqlite_store_records_each_component_at_its_version_with_the_time(
    tmp_path: Path,
):
    path = tmp_path / "hookhub.db"
    await migrate(f"sqlite:///{path}", [LOYALTY])

    # The runtime's migration 2 indexes the markers by event id (the event log's journeys).
    # The event log's migration 2 indexes the order each event concerns.
    assert recorded(path) == {"store": 2, "loyalty": 1, "eventlog": len(SQLITE_EVENTLOG)}
    with sqlite3.connect(path) as db:
        times = [at for (at,) in db.execute("SELECT applied_at FROM schema_versions")]
    assert all(at.endswith("+00:00") for at in times)


async def test_an_older_sqlite_file_gets_its_added_columns_and_then_its_version(tmp_path: Path):
    path = tmp_path / "hookhub.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_ORDERS)
    store = SQLiteStore(path, {"payments": SQLiteOrders})
    await store.open()
    await store.close()

    assert columns(path, "orders") >= set(SQLiteOrders.added_columns["orders"])
    assert recorded(path) == {"store": 2, "payments": 1}


class CountedAccounts(SQLiteAccounts):
    """The toy's repository in a release that added a migration: version 2 writes a row."""

    migrations = (lambda db: db.execute("INSERT INTO loyalty_accounts_migrated VALUES (1)"),)
    schema = SQLiteAccounts.schema + "CREATE TABLE IF NOT EXISTS loyalty_accounts_migrated (n);"


async def test_a_repositorys_migration_runs_once_and_its_version_is_recorded(tmp_path: Path):
    path = tmp_path / "hookhub.db"
    first = SQLiteStore(path, {"loyalty": SQLiteAccounts})
    await first.open()
    await first.close()
    for _ in range(2):  # the newer release, opened twice
        store = SQLiteStore(path, {"loyalty": CountedAccounts})
        await store.open()
        await store.close()

    assert recorded(path)["loyalty"] == 2
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM loyalty_accounts_migrated").fetchone() == (1,)


async def test_a_sqlite_store_a_newer_release_made_is_refused_and_left_as_it_was(tmp_path: Path):
    path = tmp_path / "hookhub.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_ORDERS)
        db.executescript(
            "CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL,"
            " applied_at TEXT NOT NULL);"
            "INSERT INTO schema_versions VALUES ('payments', 2, '2027-01-01T00:00:00.000+00:00');"
        )
    store = SQLiteStore(path, {"payments": SQLiteOrders})
    try:
        with pytest.raises(NewerSchema, match=NEWER):
            await store.open()
        with pytest.raises(NewerSchema):  # every call, not the first only
            await store.check_writable()
    finally:
        await store.close()

    assert "refunded_amount" not in columns(path, "orders")  # no column added
    assert recorded(path) == {"payments": 2}


async def test_the_event_log_refuses_a_sqlite_file_a_newer_release_made(tmp_path: Path):
    path = tmp_path / "hookhub.db"
    await migrate(f"sqlite:///{path}", [LOYALTY])
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_versions SET version = 5 WHERE component = 'eventlog'")
    event_log = SQLiteEventLog(path)
    try:
        with pytest.raises(NewerSchema, match="^eventlog: store schema is version 5, newer than"):
            await event_log.open()
    finally:
        await event_log.close()


def standin() -> Any:
    return StandinClient()[f"hookhub_test_{uuid.uuid4().hex}"]


def versions_in(database: Any) -> dict[str, int]:
    return {d["_id"]: d["version"] for d in database["schema_versions"]._sync.find()}


async def test_a_new_mongodb_store_records_each_component_at_its_version():
    database = standin()
    await MongoStore(database, repositories={"loyalty": MongoAccounts}).open()
    await MongoEventLog(database).open()

    assert versions_in(database) == {"store": 2, "loyalty": 1, "eventlog": len(MONGO_EVENTLOG)}
    assert database["schema_versions"]._sync.find_one({"_id": "store"})["applied_at"]


async def test_a_mongodb_store_a_newer_release_made_is_refused_before_any_write():
    database = standin()
    database["schema_versions"]._sync.insert_one({"_id": "loyalty", "version": 2})
    store = MongoStore(database, repositories={"loyalty": MongoAccounts})

    with pytest.raises(NewerSchema, match="^loyalty: store schema is version 2, newer than this"):
        await store.open()
    with pytest.raises(NewerSchema):
        await store.check_writable()
    assert versions_in(database) == {"loyalty": 2}  # nothing applied, nothing recorded


async def test_the_mongodb_event_log_refuses_a_database_a_newer_release_made():
    database = standin()
    newer = len(MONGO_EVENTLOG) + 1
    database["schema_versions"]._sync.insert_one({"_id": "eventlog", "version": newer})

    with pytest.raises(
        NewerSchema, match=f"^eventlog: store schema is version {newer}, newer than"
    ):
        await MongoEventLog(database).open()


def store_migrate(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hookhub.cli", "store", "migrate", *args],
        env={**os.environ, "HOOKHUB_STORE_URL": f"sqlite:///{path}", "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_store_migrate_shows_its_plan_with_dry_run_then_applies_it_and_says_what_it_did(
    tmp_path: Path,
):
    path = tmp_path / "hookhub.db"

    planned = store_migrate(path, "--dry-run")
    assert planned.returncode == 0, planned.stderr
    assert "would apply store migration 2" in planned.stdout
    assert not path.exists() or not recorded(path)

    applied = store_migrate(path)
    assert applied.returncode == 0, applied.stderr
    assert "store: 0 → 2" in applied.stdout
    assert recorded(path)["store"] == 2

    again = store_migrate(path)
    assert again.stdout.strip() == "up to date"


def test_store_migrate_refuses_a_store_a_newer_release_made(tmp_path: Path):
    path = tmp_path / "hookhub.db"
    store_migrate(path)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE schema_versions SET version = 9 WHERE component = 'payments'")

    refused = store_migrate(path)

    assert refused.returncode == 1
    assert "payments: store schema is version 9, newer than this release's 1" in refused.stderr
