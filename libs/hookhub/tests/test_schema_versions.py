"""Which numbered migrations a store needs (`hookhub.schema.plan`), pure: the missing ones in
order, and a store a newer release made refused before anything is applied."""

import pytest
from hookhub.schema import NewerSchema, Step, plan

MIGRATIONS = {"store": ["s1", "s2"], "eventlog": ["e1"]}


def test_a_store_that_records_nothing_gets_every_migration_in_order():
    assert plan({}, MIGRATIONS) == [
        Step("store", 1, "s1"),
        Step("store", 2, "s2"),
        Step("eventlog", 1, "e1"),
    ]


def test_a_store_gets_only_the_migrations_after_its_recorded_versions():
    assert plan({"store": 1, "eventlog": 1}, MIGRATIONS) == [Step("store", 2, "s2")]


def test_a_store_at_every_latest_version_needs_nothing():
    assert plan({"store": 2, "eventlog": 1}, MIGRATIONS) == []


def test_a_component_ahead_of_this_release_is_refused_with_what_to_do():
    with pytest.raises(NewerSchema) as refused:
        plan({"store": 1, "eventlog": 2}, MIGRATIONS)
    assert str(refused.value) == (
        "eventlog: store schema is version 2, newer than this release's 1: run the newer "
        "release, or restore the store from a backup taken before the upgrade"
    )


def test_a_component_this_release_does_not_know_is_left_alone():
    # Another process's consumer, not installed here: its records are not this one's to judge.
    assert plan({"store": 2, "eventlog": 1, "loyalty": 7}, MIGRATIONS) == []
