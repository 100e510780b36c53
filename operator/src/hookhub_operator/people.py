"""A person across every provider: `/api/people/<id or identifier>` (JSON), the console's
`/people/<id>`, and forgetting one (operators only). Identifiers are shown whole to
`operators`, masked to `operators-readonly` (`masked`)."""

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from hookhub.logs import log
from hookhub_eventlog.parking import remove_parked
from hookhub_eventlog.people import is_person_id
from hookhub_eventlog.timeline import NoSuchPerson, PersonView, explained, person_view
from pydantic import BaseModel, Field

from hookhub_operator import console, reads
from hookhub_operator.api import EventOut
from hookhub_operator.auth import Operator, may_change
from hookhub_operator.deps import OperatorDep, Service, ServiceDep, current_operator

KEEP_PHONE_TAIL = 4


def masked(identifier: str) -> str:
    """An identifier as a read-only operator sees it: enough to tell two apart, not to contact
    anyone (`email:j***@example.com`, `phone:+55******1234`, `cpf:*********09`,
    `stripe:cu***`)."""
    kind, _, value = identifier.partition(":")
    if kind == "email":
        name, _, domain = value.partition("@")
        return f"email:{name[:1]}***@{domain}"
    if kind == "phone":
        hidden = len(value) - 3 - KEEP_PHONE_TAIL
        return f"phone:{value[:3]}{'*' * max(hidden, 0)}{value[-KEEP_PHONE_TAIL:]}"
    if kind in ("cpf", "cnpj"):
        return f"{kind}:{'*' * (len(value) - 2)}{value[-2:]}"
    return f"{kind}:{value[:2]}***"


class LinkOut(BaseModel):
    a: str
    b: str
    event_id: str = Field(description="The event that carried both identifiers")
    source: str
    at: datetime
    undone_at: datetime | None = Field(description="When an operator undid it (unlink)")
    why: str = Field(description="linked by event X from <provider> at T")


class PersonOut(BaseModel):
    """One person: identifiers (masked to read-only operators), the links that made them one,
    their events across providers oldest first, and the orders those concern."""

    id: str
    identifiers: list[str]
    links: list[LinkOut]
    events: list[EventOut]
    orders: list[str]
    masked: bool


def shown(view: PersonView, operator: Operator) -> PersonOut:
    show = (lambda one: one) if operator.can_change else masked
    return PersonOut(
        id=view.id,
        identifiers=[show(one) for one in view.identifiers],
        links=[
            LinkOut(
                a=show(k.a),
                b=show(k.b),
                event_id=k.event_id,
                source=k.source,
                at=k.at,
                undone_at=k.undone_at,
                why=explained(k),
            )
            for k in view.links
        ],  # fmt: skip
        events=[EventOut.of(e) for e in view.events],
        orders=view.orders,
        masked=not operator.can_change,
    )


async def _person(service: Any, key: str) -> PersonView:
    try:
        return await person_view(service.event_log, key)
    except NoSuchPerson as error:
        raise reads.NotFound(str(error)) from None


api = APIRouter(prefix="/api", tags=["people"], dependencies=[Depends(current_operator)])
pages = APIRouter(include_in_schema=False)


@api.get("/people/{key:path}", response_model=PersonOut)
async def person(service: ServiceDep, operator: OperatorDep, key: str) -> PersonOut:
    """A person by id (`p_...`) or by any identifier of theirs: an e-mail, a phone (without
    `+`: Brazilian), `cpf:...`, a provider's id (`stripe:cus_...`)."""
    return shown(await _person(service, key), operator)


class Forget(BaseModel):
    confirm: str = Field(description="The person's id again: what is forgotten cannot return")


class Forgot(BaseModel):
    id: str
    events: int


@api.post("/people/{person_id}/forget", response_model=Forgot)
async def forget(
    service: ServiceDep, operator: OperatorDep, person_id: str, body: Forget
) -> Forgot:
    """Forget a person at their request (operators only): index rows, identifiers and links
    removed, their events refused from now on until the archive's retention drops them. A JSON
    body (never a form a foreign page could post) repeats the id."""
    may_change(operator)
    if not is_person_id(person_id) or body.confirm != person_id:
        raise reads.BadFilter("confirm must repeat the person's id (p_...)")
    gone = await _forget(service, operator, person_id)
    return Forgot(id=person_id, events=len(gone))


async def _forget(service: Service, operator: Operator, person_id: str) -> list[str]:
    """Forget the person in the index, then remove their events' parked copies from every
    parking lot (as `hookhub people forget` does): a copy left parked could be replayed."""
    gone = [forgotten.event_id for forgotten in await service.event_log.forget(person_id)]
    if not gone:
        raise reads.NotFound(f"no person '{person_id}' in the event log's index")
    log.info("operator.forgot", operator=operator.name, person_id=person_id, events=len(gone))
    removed = await remove_parked(await service.broker.connection(), service.settings, set(gone))
    log.info(
        "operator.parked_removed", operator=operator.name, person_id=person_id, removed=removed
    )
    return gone


@pages.post("/people/{person_id}/forget", response_class=HTMLResponse)
async def forget_from_console(
    request: Request, service: ServiceDep, operator: OperatorDep, person_id: str
) -> HTMLResponse:
    """The console's forget (operators only, with the form's CSRF token): the person's id typed
    again confirms it."""
    fields = await console.changing_form(request, operator)
    if (fields.get("confirm") or [""])[0].strip() != person_id:
        raise reads.BadFilter(f"type the person's id ({person_id}) to confirm forgetting them")
    gone = await _forget(service, operator, person_id)
    max_age = service.settings.archive_max_age
    return console.page(
        request, "forgotten.html", operator, section="events", person_id=person_id,
        events=len(gone), max_age=max_age,
    )  # fmt: skip


@pages.get("/people/{key:path}", response_class=HTMLResponse)
async def person_page(
    request: Request, service: ServiceDep, operator: OperatorDep, key: str
) -> HTMLResponse:
    """A person: identifiers and why they are one, their timeline across providers, orders."""
    view = shown(await _person(service, key), operator)
    return console.page(request, "person.html", operator, section="events", person=view)
