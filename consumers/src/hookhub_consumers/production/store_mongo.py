"""The production consumer's tickets in the MongoDB store: the `tickets` collection, the order
id as _id (the store adds the version, the markers and the outbox)."""

from hookhub_consumers.production.records import Ticket
from hookhub_consumers.store.mongo import MongoRepository, utc

TICKETS = "tickets"


class MongoTickets(MongoRepository):
    record = Ticket
    collection = TICKETS
    key = "order_id"

    async def get(self, order_id: str) -> Ticket | None:
        document = await self.db[TICKETS].find_one({"_id": order_id})
        if document is None:
            return None
        return Ticket(
            order_id=document["_id"],
            status=document["status"],
            version=document["version"],
            updated_at=utc(document["updated_at"]),
        )
