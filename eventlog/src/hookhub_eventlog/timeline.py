"""A person's page, put together when asked: who they are (identifiers, the links that made
them one, each with its event), their events across every provider oldest first, and their
orders. The CLI (`hookhub people show`), the read API and the console read it from here."""

from dataclasses import dataclass

from hookhub import identities
from hookhub.identities import EMAIL, PHONE

from hookhub_eventlog.people import Link, is_person_id
from hookhub_eventlog.store import EventLog, LoggedEvent

# Identifiers written as they are kept (`kind:value`): their kind first.
KEPT_KINDS = ("email:", "phone:", "cpf:", "cnpj:")


@dataclass(frozen=True, slots=True)
class PersonView:
    id: str
    identifiers: list[str]
    links: list[Link]
    events: list[LoggedEvent]  # oldest first
    orders: list[str]  # the orders their events concern, first seen first


class NoSuchPerson(LookupError):
    """No person has this identifier or id; the message says what was looked for."""


def identifier_of(text: str) -> str:
    """What someone typed, as the index keeps it: a person id (`p_...`) or an identifier
    (`kind:value`) as they are; an e-mail or a phone number normalised (a number without `+`
    is Brazilian); a CPF or CNPJ as `cpf:...`/`cnpj:...` (bare digits read as a phone)."""
    text = text.strip()
    if is_person_id(text):
        return text
    if text.lower().startswith(KEPT_KINDS):
        kind, _, value = text.partition(":")
        kind = kind.lower()
        if kind in (EMAIL, PHONE):
            return identities.identifier("", kind, value) or text
        return identities.document(value) or text
    if "@" in text:
        return identities.identifier("", EMAIL, text) or text
    if ":" not in text:
        return identities.identifier("", PHONE, text) or text
    return text  # a provider's own id: stripe:cus_123


async def person_view(event_log: EventLog, key: str) -> PersonView:
    """The person `key` names (an e-mail, a phone, a CPF/CNPJ, a provider id or a person id);
    `NoSuchPerson` when none does."""
    wanted = identifier_of(key)
    person_id = await event_log.person_of(wanted)
    person = await event_log.person(person_id) if person_id else None
    if person is None:
        raise NoSuchPerson(f"no person with '{wanted}' in the event log's index")
    events = sorted(person.events, key=lambda e: (e.time, e.position))
    orders = list(dict.fromkeys(e.order_id for e in events if e.order_id))
    return PersonView(person.id, person.identifiers, person.links, events, orders)


def explained(link: Link) -> str:
    """Why two identifiers are one person, in a line: `linked by event X from hotmart at T`."""
    source = link.source.rsplit("/", 1)[-1] or link.source
    said = f"linked by event {link.event_id} from {source} at {link.at.isoformat()}"
    return said + (f" (undone {link.undone_at.isoformat()})" if link.undone_at else "")
