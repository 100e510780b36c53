"""The registry in the MongoDB database the consumers' store uses: collections `endpoints` (one
document an endpoint, `_id` its name, `rev` counting its changes) and `endpoint_audit` (one
document a change), and `endpoint_versions` (one document: the registry's change counter)."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from hookhub.settings import Settings
from hookhub_eventlog.store.mongo import DEFAULT_DATABASE, connect
from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError

from hookhub_endpoints.codec import from_document, to_document
from hookhub_endpoints.model import Endpoint, EndpointError, UnknownEndpoint
from hookhub_endpoints.registry import AuditEntry

ENDPOINTS, AUDIT, VERSIONS = "endpoints", "endpoint_audit", "endpoint_versions"
COUNTER = "registry"
LOOKUP_MS = 5000  # a read's server-side budget
MAX_TRIES = 20  # a change that keeps meeting another one's write gives up after this many


class MongoRegistry:
    def __init__(self, db: Any, client: Any = None) -> None:
        self.db = db
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> "MongoRegistry":
        client = connect(settings.store_url, settings)
        return cls(client.get_default_database(DEFAULT_DATABASE), client)

    async def open(self) -> None:
        await self.db[AUDIT].create_index(
            [("endpoint", 1), ("seq", DESCENDING)], name="by_endpoint"
        )

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()

    async def endpoints(self) -> list[Endpoint]:
        cursor = self.db[ENDPOINTS].find({}, max_time_ms=LOOKUP_MS)
        return [from_document(d) for d in await cursor.sort([("_id", 1)]).to_list()]

    async def _document(self, name: str) -> dict[str, Any]:
        document = await self.db[ENDPOINTS].find_one({"_id": name}, max_time_ms=LOOKUP_MS)
        if document is None:
            raise UnknownEndpoint(name)
        return document

    async def get(self, name: str) -> Endpoint:
        return from_document(await self._document(name))

    async def _audit(
        self, actor: str, action: str, name: str, before: Endpoint | None, after: Endpoint | None
    ) -> None:
        await self.db[VERSIONS].update_one({"_id": COUNTER}, {"$inc": {"seq": 1}}, upsert=True)
        counter = await self.db[VERSIONS].find_one({"_id": COUNTER})
        await self.db[AUDIT].insert_one(
            {
                # The counter as read after this change's increment: another change's increment
                # in between may give two entries one seq; they still sort by `_id` after it.
                "seq": counter["seq"],
                "at": datetime.now(UTC),
                "actor": actor,
                "action": action,
                "endpoint": name,
                "before": before.shown() if before else None,
                "after": after.shown() if after else None,
            }
        )

    async def add(self, endpoint: Endpoint, actor: str) -> Endpoint:
        try:
            await self.db[ENDPOINTS].insert_one(
                {"_id": endpoint.name, "rev": 1, **to_document(endpoint)}
            )
        except DuplicateKeyError:
            raise EndpointError(
                f"an endpoint is already named '{endpoint.name}': pick another name, or change"
                " that one"
            ) from None
        await self._audit(actor, "add", endpoint.name, None, endpoint)
        return endpoint

    async def change(
        self, name: str, actor: str, action: str, how: Callable[[Endpoint], Endpoint]
    ) -> Endpoint:
        for _ in range(MAX_TRIES):
            document = await self._document(name)
            before = from_document(document)
            after = how(before)
            unchanged = {"updated_at": None}
            if to_document(after) | unchanged == to_document(before) | unchanged:
                return before
            # Written only over the revision read: a change made meanwhile sends us round again.
            written = await self.db[ENDPOINTS].update_one(
                {"_id": name, "rev": document["rev"]},
                {"$set": {**to_document(after), "rev": document["rev"] + 1}},
            )
            if written.matched_count:
                await self._audit(actor, action, name, before, after)
                return after
        raise EndpointError(f"endpoint '{name}' kept changing under this change: try again")

    async def remove(self, name: str, actor: str) -> Endpoint:
        document = await self._document(name)
        await self.db[ENDPOINTS].delete_many({"_id": name})
        before = from_document(document)
        await self._audit(actor, "remove", name, before, None)
        return before

    async def note(self, name: str, actor: str, action: str) -> None:
        endpoint = from_document(await self._document(name))
        await self._audit(actor, action, name, endpoint, endpoint)

    async def audit(self, name: str | None = None, limit: int = 100) -> list[AuditEntry]:
        query = {"endpoint": name} if name else {}
        cursor = self.db[AUDIT].find(query, max_time_ms=LOOKUP_MS)
        documents = await cursor.sort([("seq", DESCENDING), ("_id", DESCENDING)]).to_list(limit)
        return [
            AuditEntry(
                id=d["seq"],
                at=d["at"] if d["at"].tzinfo else d["at"].replace(tzinfo=UTC),
                actor=d["actor"],
                action=d["action"],
                endpoint=d["endpoint"],
                before=d["before"],
                after=d["after"],
            )
            for d in documents
        ]

    async def version(self) -> int:
        counter = await self.db[VERSIONS].find_one({"_id": COUNTER}, max_time_ms=LOOKUP_MS)
        return counter["seq"] if counter else 0
