"""The payments consumer's orders in the MongoDB store: the `orders` collection, the order id as
_id (the store adds the version, the markers and the outbox)."""

from typing import Any

from pymongo import ASCENDING

from hookhub_consumers.payments.records import Order
from hookhub_consumers.store.mongo import MongoRepository, utc

ORDERS = "orders"


def _order(document: dict[str, Any] | None) -> Order | None:
    if document is None:
        return None
    return Order(
        order_id=document["_id"],
        status=document["status"],
        amount=document["amount"],
        currency=document["currency"],
        customer=document["customer"],
        items=document["items"],
        provider=document["provider"],
        payment_id=document["payment_id"],
        # Fields added later: a document saved before has none of them until its next save.
        paid_amount=document.get("paid_amount"),
        paid_currency=document.get("paid_currency"),
        refunded_amount=document.get("refunded_amount", 0),
        version=document["version"],
        updated_at=utc(document["updated_at"]),
    )


class MongoOrders(MongoRepository):
    record = Order
    collection = ORDERS
    key = "order_id"
    queries = {("_id",): "_id_", ("payment_id", "provider"): "by_payment"}

    async def create_indexes(self) -> None:
        await self.db[ORDERS].create_index(
            [("provider", ASCENDING), ("payment_id", ASCENDING)], name="by_payment"
        )

    async def get(self, order_id: str) -> Order | None:
        return _order(await self.db[ORDERS].find_one({"_id": order_id}))

    async def by_payment(self, provider: str, payment_id: str) -> Order | None:
        return _order(
            await self.db[ORDERS].find_one({"provider": provider, "payment_id": payment_id})
        )
