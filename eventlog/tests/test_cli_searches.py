"""`hookhub events` says why a search was refused (a pattern it cannot match, a search over its
time budget) in one line, exit status 1, and never with a traceback."""

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hookhub import commands
from hookhub.settings import get_settings
from hookhub_eventlog import cli
from hookhub_eventlog.store import LoggedEvent
from hookhub_eventlog.store import sqlite as sqlite_store
from hookhub_eventlog.store.base import SearchTooSlow
from hookhub_eventlog.store.sqlite import SQLiteEventLog
from typer.testing import CliRunner

HOOKHUB = Path(sys.executable).parent / "hookhub"
A_TIME = datetime(2026, 1, 1, tzinfo=UTC)


def indexed(path: Path, count: int) -> None:
    async def index() -> None:
        log = SQLiteEventLog(path)
        events = [
            LoggedEvent(n, f"e{n}", "/webhooks/ci", "x.y", A_TIME + timedelta(seconds=n))
            for n in range(count)
        ]
        await log.index(events)
        await log.close()

    asyncio.run(index())


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    url = f"sqlite:///{tmp_path}/hookhub.db"
    monkeypatch.setenv("HOOKHUB_STORE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def logging_left_alone(monkeypatch):
    """The commands run in this process (CliRunner) must not configure logging: it would bind
    Hookhub's log lines to the runner's captured stream, closed once it returns, and every test
    after this one that logs in-process would then fail writing to it."""
    monkeypatch.setattr(commands, "configure_logging", lambda *args, **kwargs: None)


def test_a_pattern_the_log_cannot_match_is_refused_in_one_line(store_url, tmp_path):
    indexed(tmp_path / "hookhub.db", 3)
    env = {**os.environ, "HOOKHUB_STORE_URL": store_url}
    done = subprocess.run(
        [HOOKHUB, "events", "list", "--type", "stripe.%"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "error:" in done.stderr and "letters, digits" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize(
    "command",
    [["list", "--type", "#.nomatch"], ["replay", "--type", "#.nomatch", "--to", "payments"]],
)
def test_a_search_over_its_budget_says_how_to_narrow_it(store_url, tmp_path, monkeypatch, command):
    indexed(tmp_path / "hookhub.db", 50_000)
    monkeypatch.setattr(sqlite_store, "SEARCH_BUDGET_S", 0.0)
    result = CliRunner().invoke(cli.app, command)
    assert result.exit_code == 1, result.output
    assert "narrow it" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("command", [["journey", "e1"], ["show", "e1"]])
def test_a_lookup_by_id_over_budget_is_said_too(store_url, tmp_path, monkeypatch, command):
    indexed(tmp_path / "hookhub.db", 10)

    async def too_slow(self, query):  # type: ignore[no-untyped-def]
        raise SearchTooSlow

    monkeypatch.setattr(SQLiteEventLog, "find_events", too_slow)
    result = CliRunner().invoke(cli.app, command)
    assert result.exit_code == 1, result.output
    assert "narrow it" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
