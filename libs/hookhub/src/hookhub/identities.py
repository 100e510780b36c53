"""Who an event is about: the identifiers a payload carries (e-mail, phone, CPF/CNPJ, a
provider's own customer or user id), found where the provider table says (`identities_at`) and
normalised, so that the same person reads the same in every provider's events.

An identifier is `kind:value`: `email:ana@example.com`, `phone:+5511987654321`,
`cpf:12345678909`, `cnpj:11222333000181`, and a provider's own ids namespaced by the provider
(`stripe:cus_123`, `telegram:42`; a second kind of id of one provider: `github:login:octocat`).
Pure functions: the event log's index reads them, nothing here does I/O.
"""

import re
from collections.abc import Mapping
from typing import Any

from hookhub.providers import PROVIDERS, WEBHOOK_SOURCE_PREFIX, first_at

# The kinds every provider shares; any other kind is the provider's own id, namespaced by it.
EMAIL, PHONE, DOCUMENT, ID = "email", "phone", "document", "id"
PHONE_E164_DIGITS = "phone_e164_digits"  # a country code first, no `+` (WhatsApp's wa_id)
DEFAULT_COUNTRY_CODE = "55"  # Brazil: a number written without `+` is read as Brazilian
# Brazilian numbers: 2-digit area code + 8 (landline) or 9 (mobile) digits.
BR_NATIONAL_DIGITS = (10, 11)
E164_MAX_DIGITS, E164_MIN_DIGITS = 15, 8
CPF_DIGITS, CNPJ_DIGITS = 11, 14
EMAIL_SHAPE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_IDENTIFIER_CHARS = 200  # a value longer than this is not an identifier (a pasted body)

# The storefront's order events (through /events): the customer its data names (the contract
# leaves `customer` open; these are the fields a storefront sends).
ORDER_EVENTS_IDENTITIES_AT: Mapping[str, str] = {
    EMAIL: "customer.email",
    PHONE: "customer.phone",
    DOCUMENT: "customer.document|customer.cpf|customer.cnpj",
    ID: "customer.id",
}
ORDER_EVENTS = ("order.created", "order.amended")
STOREFRONT = "storefront"  # the namespace of the storefront's own customer ids


def email(text: str) -> str | None:
    """An e-mail address trimmed and lower-cased; None when it is not one."""
    text = text.strip().lower()
    return text if EMAIL_SHAPE.fullmatch(text) else None


def phone(text: str, *, international: bool = False) -> str | None:
    """A phone number in E.164 (`+5511987654321`); None when it cannot be one. Written with `+`
    (or `00`) it keeps its country code; without, it is Brazilian (area code and number, a
    leading trunk `0` dropped; or already `55` and 10-11 more digits). `international`: the
    digits already start with a country code (WhatsApp's `wa_id`)."""
    text = text.strip()
    digits = re.sub(r"\D", "", text)
    if text.startswith("+") or international:
        pass
    elif text.startswith("00"):
        digits = digits[2:]
    else:
        national = digits.lstrip("0")
        if len(national) in BR_NATIONAL_DIGITS:
            digits = DEFAULT_COUNTRY_CODE + national
        elif not (
            national.startswith(DEFAULT_COUNTRY_CODE)
            and len(national) - len(DEFAULT_COUNTRY_CODE) in BR_NATIONAL_DIGITS
        ):
            return None
        else:
            digits = national
    if not E164_MIN_DIGITS <= len(digits) <= E164_MAX_DIGITS or digits.startswith("0"):
        return None
    return f"+{digits}"


def document(text: str) -> str | None:
    """A CPF (`cpf:` + 11 digits) or CNPJ (`cnpj:` + 14 digits), punctuation dropped; None for
    anything else."""
    digits = re.sub(r"\D", "", text)
    if len(digits) == CPF_DIGITS:
        return f"cpf:{digits}"
    if len(digits) == CNPJ_DIGITS:
        return f"cnpj:{digits}"
    return None


def identifier(namespace: str, kind: str, value: Any) -> str | None:
    """One identifier, normalised, from a value found at `kind`'s locator; None when the value
    is not one (empty, not text or a number, malformed)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    if not text or len(text) > MAX_IDENTIFIER_CHARS:
        return None
    if kind == EMAIL:
        found = email(text)
        return found and f"{EMAIL}:{found}"
    if kind in (PHONE, PHONE_E164_DIGITS):
        found = phone(text, international=kind == PHONE_E164_DIGITS)
        return found and f"{PHONE}:{found}"
    if kind == DOCUMENT:
        return document(text)
    return f"{namespace}:{text}" if kind == ID else f"{namespace}:{kind}:{text}"


def identities_at(source: str, type: str) -> tuple[str, Mapping[str, str]]:
    """Where an inbound event's payload keeps who it is about, and the namespace of its own
    ids: the storefront's order events' customer, a provider's `identities_at`; none for
    others (the hub's follow-ups are about orders, found through them)."""
    if type in ORDER_EVENTS:
        return STOREFRONT, ORDER_EVENTS_IDENTITIES_AT
    if source.startswith(WEBHOOK_SOURCE_PREFIX):
        name = source.removeprefix(WEBHOOK_SOURCE_PREFIX)
        if (provider := PROVIDERS.get(name)) is not None:
            return name, provider.identities_at
    return "", {}


def identifiers_in(namespace: str, where: Mapping[str, str], payload: Any) -> tuple[str, ...]:
    """Every identifier the payload keeps where `where` says (kind → locator, `|` between
    alternatives: the first found), normalised, each once, in a stable order."""
    found = {
        one
        for kind, paths in where.items()
        if (one := identifier(namespace, kind, first_at(payload, paths))) is not None
    }
    return tuple(sorted(found))
