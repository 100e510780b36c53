"""The MongoDB adapters' clients wait a bounded time, from the settings, for a server and for a
reply (issue 26): an unreachable or hung server fails an operation instead of hanging it."""

import pytest
from hookhub_consumers.store.mongo import MongoStore
from hookhub_eventlog.store.mongo import MongoEventLog, connect

URL = "mongodb://127.0.0.1:27017/hookhub"  # a client connects only on first use


async def test_the_store_and_the_event_log_take_their_timeouts_from_the_settings(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("HOOKHUB_STORE_SERVER_SELECTION_TIMEOUT_S", "2.5")
    monkeypatch.setenv("HOOKHUB_STORE_SOCKET_TIMEOUT_S", "20")
    store, event_log = MongoStore.from_url(URL), MongoEventLog.from_url(URL)
    try:
        for client in (store._client, event_log._client):
            assert client.options.server_selection_timeout == 2.5
            assert client.options.pool_options.socket_timeout == 20
    finally:
        await store.close()
        await event_log.close()


async def test_by_default_a_server_is_awaited_5_s_and_a_reply_30_s():
    client = connect(URL)
    try:
        assert client.options.server_selection_timeout == 5
        assert client.options.pool_options.socket_timeout == 30
    finally:
        await client.close()


async def test_a_timeout_the_url_names_wins():
    client = connect(f"{URL}?serverSelectionTimeoutMS=1000")
    try:
        assert client.options.server_selection_timeout == 1
        assert client.options.pool_options.socket_timeout == 30
    finally:
        await client.close()
