"""An in-process stand-in for MongoDB: mongomock behind PyMongo's async API.

No MongoDB server can run on this machine, so the contract suites run the real code of the
consumers' MongoStore and the event log's MongoEventLog against this. It mirrors only what they
call, by name and signature, and nothing else, so an adapter that starts using more of PyMongo
fails here loudly (AttributeError) instead of passing against a mock that guessed.

Interleaving (`StandinClient(seed=n)`): mongomock answers at once, so two coroutines' calls
never overlap and a check-then-write race cannot show. With a seed, every call suspends a
random number of times (0 to `MAX_TURNS`, from a `random.Random(seed)`) before it runs and
after, so concurrent calls run in an order the seed picks: repeatable, and different per seed.

Transactions (`client.start_session()`, `session.with_transaction(callback)`): serializable by
a client-wide lock that every call outside the transaction waits for; on an exception the
transaction's writes are undone from an undo log, as a server aborts it. Only the writes the
adapters make in one (`insert_one`, `update_one`) take a session; any other refuses one.

Queries (`StandinClient(queries=[])`): every filter (and sort) an adapter sends is appended, for
the test that checks each against the adapters' declared indexes.
"""

import asyncio
import copy
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mongomock
from pymongo import UpdateOne

MAX_TURNS = 3  # the most times an interleaving call suspends, before it runs and again after


@dataclass(frozen=True)
class Query:
    """A query an adapter made: its collection, filter and sort, as sent."""

    collection: str
    filter: dict[str, Any]
    sort: list[Any]
    options: dict[str, Any]  # find's: limit, max_time_ms; find_one's: limit 1


class StandinClient:
    """AsyncMongoClient's subset: databases by name, sessions, async close."""

    def __init__(self, seed: int | None = None, queries: list["Query"] | None = None) -> None:
        # tz_aware as MongoStore.from_url sets it; mongomock keeps UTC milliseconds, as BSON does.
        self._sync = mongomock.MongoClient(tz_aware=True)
        self._rng = None if seed is None else random.Random(seed)
        self._transaction = asyncio.Lock()
        self._in_transaction: StandinSession | None = None
        self.queries = queries  # when given, every query made is appended to it

    def __getitem__(self, name: str) -> "StandinDatabase":
        return StandinDatabase(self._sync[name], self)

    def start_session(self, **_: Any) -> "StandinSession":
        return StandinSession(self)

    async def close(self) -> None:
        self._sync.close()

    def _saw(self, collection: str, filter: Any, sort: Any = None, **options: Any) -> None:
        if self.queries is not None:
            query = Query(collection, dict(filter or {}), list(sort or []), options)
            self.queries.append(query)

    async def _turns(self) -> None:
        if self._rng is not None:
            for _ in range(self._rng.randint(0, MAX_TURNS)):
                await asyncio.sleep(0)

    async def _call(self, session: "StandinSession | None", run: Callable[[], Any]) -> Any:
        """One call: suspended around it when interleaving; outside a transaction, after it."""
        await self._turns()
        if session is not None:
            if session is not self._in_transaction:
                raise RuntimeError("the stand-in takes a session only inside its transaction")
            result = run()
        else:
            async with self._transaction:
                result = run()
        await self._turns()
        return result


class StandinSession:
    """AsyncClientSession's subset: `with_transaction`, as an async context manager."""

    def __init__(self, client: StandinClient) -> None:
        self.client = client
        self._undo: list[Callable[[], Any]] = []

    async def __aenter__(self) -> "StandinSession":
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    async def with_transaction(
        self, callback: Callable[["StandinSession"], Awaitable[Any]], **_: Any
    ) -> Any:
        async with self.client._transaction:
            self.client._in_transaction, self._undo = self, []
            try:
                return await callback(self)
            except BaseException:
                for undo in reversed(self._undo):  # aborted: nothing it wrote remains
                    undo()
                raise
            finally:
                self.client._in_transaction = None


class StandinDatabase:
    def __init__(self, sync: mongomock.Database, client: StandinClient) -> None:
        self._sync = sync
        self.name = sync.name
        self.client = client

    def __getitem__(self, name: str) -> "StandinCollection":
        return StandinCollection(self._sync[name], self.client)


class StandinCollection:
    def __init__(self, sync: mongomock.Collection, client: StandinClient) -> None:
        self._sync = sync
        self.name = sync.name
        self._client = client

    def with_options(self, **_: Any) -> "StandinCollection":
        # Read and write concerns: one in-process copy has nothing to acknowledge or roll back.
        return self

    async def create_index(self, keys: Any, **kwargs: Any) -> str:
        return await self._client._call(None, lambda: self._sync.create_index(keys, **kwargs))

    async def index_information(self) -> dict[str, Any]:
        return await self._client._call(None, self._sync.index_information)

    async def drop_index(self, name: str) -> None:
        await self._client._call(None, lambda: self._sync.drop_index(name))

    async def find_one(self, filter: Any = None, *args: Any, **kwargs: Any) -> Any:
        self._client._saw(self.name, filter, limit=1)
        return await self._client._call(None, lambda: self._sync.find_one(filter, *args, **kwargs))

    async def insert_one(self, document: Any, session: Any = None, **kwargs: Any) -> Any:
        def run() -> Any:
            # PyMongo adds _id to the caller's dict; mongomock does too.
            result = self._sync.insert_one(document, **kwargs)
            if session is not None:
                session._undo.append(lambda: self._sync.delete_one({"_id": result.inserted_id}))
            return result

        return await self._client._call(session, run)

    async def delete_many(self, filter: Any, **kwargs: Any) -> Any:
        self._client._saw(self.name, filter)
        return await self._client._call(None, lambda: self._sync.delete_many(filter, **kwargs))

    async def update_many(self, filter: Any, update: Any, **kwargs: Any) -> Any:
        self._client._saw(self.name, filter)
        return await self._client._call(
            None, lambda: self._sync.update_many(filter, update, **kwargs)
        )

    async def update_one(self, filter: Any, update: Any, session: Any = None, **kwargs: Any) -> Any:
        self._client._saw(self.name, filter)

        def run() -> Any:
            before = copy.deepcopy(self._sync.find_one(filter)) if session is not None else None
            result = self._sync.update_one(filter, update, **kwargs)
            if session is not None and result.upserted_id is not None:
                upserted = result.upserted_id
                session._undo.append(lambda: self._sync.delete_one({"_id": upserted}))
            elif session is not None and before is not None:
                session._undo.append(lambda: self._sync.replace_one({"_id": before["_id"]}, before))
            return result

        return await self._client._call(session, run)

    async def bulk_write(self, requests: Sequence[UpdateOne], ordered: bool = True) -> None:
        # mongomock's bulk API predates PyMongo 4.20's operations: each upsert applied in turn
        # (the only operation the adapters send in bulk; any other fails on its attributes).
        for request in requests:
            self._client._saw(self.name, request._filter)

        def run() -> None:
            for request in requests:
                self._sync.update_one(request._filter, request._doc, upsert=request._upsert)

        await self._client._call(None, run)

    def find(self, *args: Any, **kwargs: Any) -> "StandinCursor":
        filter = args[0] if args else kwargs.get("filter")
        options = {k: v for k, v in kwargs.items() if k in ("limit", "max_time_ms")}
        cursor = self._sync.find(*args, **kwargs)
        return StandinCursor(cursor, self._client, self.name, filter, options)


class StandinCursor:
    def __init__(
        self,
        sync: mongomock.collection.Cursor,
        client: StandinClient,
        name: str,
        filter: Any,
        options: dict[str, Any],
    ) -> None:
        self._sync = sync
        self._client = client
        self._name, self._filter, self._sort, self._options = name, filter, None, options

    def sort(self, *args: Any, **kwargs: Any) -> "StandinCursor":
        self._sync.sort(*args, **kwargs)
        self._sort = args[0] if args else kwargs.get("key_or_list")
        return self

    async def to_list(self, length: int | None = None) -> list[Any]:
        self._client._saw(self._name, self._filter, self._sort, **self._options)
        documents = await self._client._call(None, lambda: list(self._sync))
        return documents if length is None else documents[:length]
