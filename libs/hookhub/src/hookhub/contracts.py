"""The data contracts of the catalogue's internal event types: what hub-api accepts at the door
and what the consumers can rely on (`specs.catalogue()` says who emits each type and what it means).

Bounds are part of a contract: an event the consumers cannot hold (an amount too large for every
JSON reader and the stores' integers) must be refused with a 422, not accepted and parked later.
So are JSON's own types: every contract is strict, an integer is a JSON integer (`true` is not 1,
`"12"` is not 12) and a string a JSON string, so that what a consumer stores is what was sent.
"""

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

# The largest integer every JSON reader holds exactly (JavaScript's numbers are doubles), and
# well inside the stores' 64-bit integers. In minor units that is 90 trillion dollars.
MAX_MINOR_UNITS = 2**53 - 1
MAX_ORDER_ID_CHARS = 200

M = TypeVar("M", bound=BaseModel)
OrderId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ORDER_ID_CHARS)]


class Contract(BaseModel):
    """A data contract: strict, with no coercion between JSON types."""

    model_config = ConfigDict(strict=True)


class OrderCreated(Contract):
    """`order.created`: a storefront created an order."""

    order_id: OrderId
    customer: dict[str, Any]
    items: list[Any]
    amount: int = Field(ge=0, le=MAX_MINOR_UNITS, description="in the currency's minor units")
    currency: str = Field(pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code, e.g. BRL")


class OrderAmended(OrderCreated):
    """`order.amended`: a storefront changed an order no one has paid yet (all its details, as
    in `order.created`)."""


class ProductionFinished(Contract):
    """`production.finished`: the workshop finished an order."""

    order_id: OrderId


CONTRACTS: dict[str, type[Contract]] = {
    "order.created": OrderCreated,
    "order.amended": OrderAmended,
    "production.finished": ProductionFinished,
}


class ContractViolation(ValueError):
    """The data of an event breaks its type's contract; the message says where and how."""


def parse(contract: type[M], event_type: str, data: bytes) -> M:
    """The event's data as its contract's model; ContractViolation when it breaks it."""
    try:
        return contract.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "data"
        raise ContractViolation(
            f"{event_type} data does not match its contract: {where}: {first['msg']}"
        ) from None


def violation(event_type: str, data: bytes) -> str | None:
    """Why `data` breaks the contract of `event_type`, if that type has one and it does."""
    contract = CONTRACTS.get(event_type)
    if contract is None:
        return None
    try:
        parse(contract, event_type, data)
    except ContractViolation as exc:
        return str(exc)
    return None
