"""What every route is handed: the service's state, the operator calling, a broker connection,
the search filters. FastAPI dependencies, named as `Annotated` aliases."""

import asyncio
from dataclasses import dataclass
from typing import Annotated

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from fastapi import Depends, Query, Request
from hookhub.addresses import CONNECT_ERRORS, redact
from hookhub.settings import Settings
from hookhub_eventlog.store import EventLog

from hookhub_operator.auth import Operator, identify
from hookhub_operator.reads import SEARCH_LIMIT_MAX, Filters, as_time


class BrokerDown(Exception):
    """RabbitMQ did not answer; the message says where it was looked for (no password)."""


class BrokerLink:
    """One robust connection to the broker, opened on first use and kept: the console still
    serves what the event log knows while RabbitMQ is away, and says so where it needs the
    broker."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._connection: AbstractRobustConnection | None = None
        self._opening = asyncio.Lock()

    async def connection(self) -> AbstractRobustConnection:
        async with self._opening:
            if self._connection is None:
                try:
                    self._connection = await aio_pika.connect_robust(
                        self._url, timeout=self._timeout_s
                    )
                except CONNECT_ERRORS:
                    raise BrokerDown(
                        f"RabbitMQ is not reachable at {redact(self._url)}; try again shortly"
                    ) from None
        return self._connection

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


@dataclass
class Service:
    """The operator service's state, made at start-up (app.state.service)."""

    settings: Settings
    event_log: EventLog
    broker: BrokerLink
    gateway_secret: bytes | None
    csrf_key: bytes
    providers_known: bool  # whether this process sees the providers' secrets (dev does)


def service_of(request: Request) -> Service:
    return request.app.state.service


def current_operator(request: Request) -> Operator:
    operator = identify(request.headers, service_of(request).gateway_secret)
    request.state.operator = operator  # for the error page's header
    return operator


async def broker_connection(request: Request) -> AbstractRobustConnection:
    return await service_of(request).broker.connection()


def _given(text: str | None) -> str | None:
    # An HTML form sends its empty fields as empty strings: not a filter.
    if text is None:
        return None
    return text.strip() or None


def search_filters(
    id: Annotated[str | None, Query(description="The event id")] = None,
    type: Annotated[
        str | None, Query(description="A type or topic pattern: `stripe.#`, `payment.*`")
    ] = None,
    provider: Annotated[str | None, Query(description="Webhooks of this provider")] = None,
    source: Annotated[str | None, Query(description="A whole CloudEvents source")] = None,
    correlation_id: Annotated[str | None, Query(description="The correlation id")] = None,
    order: Annotated[
        str | None, Query(description="The order id: its own events, payments and follow-ups")
    ] = None,
    since: Annotated[
        str | None, Query(description="From this time on (ISO 8601, UTC if no zone)")
    ] = None,
    until: Annotated[
        str | None, Query(description="Before this time (ISO 8601, UTC if no zone)")
    ] = None,
    unrouted: Annotated[bool, Query(description="Only events no consumer binds")] = False,
    limit: Annotated[
        int, Query(ge=1, le=SEARCH_LIMIT_MAX, description="At most this many, newest first")
    ] = 50,
) -> Filters:
    return Filters(
        id=_given(id),
        type=_given(type),
        provider=_given(provider),
        source=_given(source),
        correlation_id=_given(correlation_id),
        order=_given(order),
        since=as_time(_given(since), "since"),
        until=as_time(_given(until), "until"),
        unrouted=unrouted,
        limit=limit,
    )


ServiceDep = Annotated[Service, Depends(service_of)]
OperatorDep = Annotated[Operator, Depends(current_operator)]
BrokerDep = Annotated[AbstractRobustConnection, Depends(broker_connection)]
FiltersDep = Annotated[Filters, Depends(search_filters)]
