"""An in-process stand-in for MongoDB: mongomock behind PyMongo's async API.

No MongoDB server can run on this machine, so the contract suites run the real code of the
consumers' MongoStore and the event log's MongoEventLog against this. It mirrors only what they
call, by name and signature, and nothing else, so an adapter that starts using more of PyMongo
fails here loudly (AttributeError) instead of passing against a mock that guessed.
"""

from typing import Any

import mongomock


class StandinClient:
    """AsyncMongoClient's subset: databases by name, async close."""

    def __init__(self) -> None:
        # tz_aware as MongoStore.from_url sets it; mongomock keeps UTC milliseconds, as BSON does.
        self._sync = mongomock.MongoClient(tz_aware=True)

    def __getitem__(self, name: str) -> "StandinDatabase":
        return StandinDatabase(self._sync[name])

    async def close(self) -> None:
        self._sync.close()


class StandinDatabase:
    def __init__(self, sync: mongomock.Database) -> None:
        self._sync = sync
        self.name = sync.name

    def __getitem__(self, name: str) -> "StandinCollection":
        return StandinCollection(self._sync[name])


class StandinCollection:
    def __init__(self, sync: mongomock.Collection) -> None:
        self._sync = sync
        self.name = sync.name

    async def create_index(self, keys: Any, **kwargs: Any) -> str:
        return self._sync.create_index(keys, **kwargs)

    async def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        return self._sync.find_one(filter, *args, **kwargs)

    async def insert_one(self, document: Any, **kwargs: Any) -> Any:
        # PyMongo adds _id to the caller's dict; mongomock does too.
        return self._sync.insert_one(document, **kwargs)

    async def delete_many(self, filter: Any, **kwargs: Any) -> Any:
        return self._sync.delete_many(filter, **kwargs)

    async def update_many(self, filter: Any, update: Any, **kwargs: Any) -> Any:
        return self._sync.update_many(filter, update, **kwargs)

    async def update_one(self, filter: Any, update: Any, **kwargs: Any) -> Any:
        return self._sync.update_one(filter, update, **kwargs)

    def find(self, *args: Any, **kwargs: Any) -> "StandinCursor":
        return StandinCursor(self._sync.find(*args, **kwargs))


class StandinCursor:
    def __init__(self, sync: mongomock.collection.Cursor) -> None:
        self._sync = sync

    def sort(self, *args: Any, **kwargs: Any) -> "StandinCursor":
        self._sync.sort(*args, **kwargs)
        return self

    async def to_list(self, length: int | None = None) -> list[Any]:
        documents = list(self._sync)
        return documents if length is None else documents[:length]
