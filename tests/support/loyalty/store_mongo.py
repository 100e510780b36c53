"""The loyalty consumer's accounts in the MongoDB store: the `loyalty_accounts` collection, the
customer id as _id (the store adds the version, the markers and the outbox)."""

from hookhub_consumers.store.mongo import MongoRepository, utc

from tests.support.loyalty.records import Account

ACCOUNTS = "loyalty_accounts"


class MongoAccounts(MongoRepository):
    record = Account
    collection = ACCOUNTS
    key = "customer_id"

    async def get(self, customer_id: str) -> Account | None:
        document = await self.db[ACCOUNTS].find_one({"_id": customer_id})
        if document is None:
            return None
        return Account(
            customer_id=document["_id"],
            points=document["points"],
            version=document["version"],
            updated_at=utc(document["updated_at"]),
        )
