"""People: the identifiers (`hookhub.identities`) seen together in one event link into one
person, across every provider. Pure: the store adapters keep the links, these functions say
who is whom.

A person's id is the smallest of its identifiers' ids (`person_id`): stable while it grows (a
merge keeps the smaller id), computed again when an unlink splits it, the same in every store.
Each link records the event that made it, so that a merge is explained, and can be undone.
"""

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

PERSON_PREFIX = "p_"
RETENTION_UNITS_S = {"Y": 365 * 86400, "M": 30 * 86400, "D": 86400, "h": 3600, "m": 60, "s": 1}


def person_id(identifier: str) -> str:
    """The id of the person an identifier alone would be."""
    return PERSON_PREFIX + hashlib.sha256(identifier.encode()).hexdigest()[:16]


def is_person_id(text: str) -> bool:
    return text.startswith(PERSON_PREFIX) and ":" not in text


def pair(a: str, b: str) -> tuple[str, str]:
    """A link's two identifiers in one order, so that it is kept once."""
    return (a, b) if a <= b else (b, a)


def links_of(identifiers: tuple[str, ...]) -> list[tuple[str, str]]:
    """The links one event makes between its identifiers: each to the first (they are sorted),
    enough to make them one person and one row each to undo."""
    return [pair(identifiers[0], other) for other in identifiers[1:]]


def people(identifiers: Iterable[str], links: Iterable[tuple[str, str]]) -> dict[str, str]:
    """identifier → person id: the identifiers joined by the links (the ones not undone), each
    group under the smallest of its identifiers' ids. A link to an identifier not given is
    ignored."""
    parent = {one: one for one in identifiers}

    def root(one: str) -> str:
        while parent[one] != one:
            parent[one] = parent[parent[one]]
            one = parent[one]
        return one

    for a, b in links:
        if a in parent and b in parent:
            parent[root(a)] = root(b)
    groups: dict[str, list[str]] = {}
    for one in parent:
        groups.setdefault(root(one), []).append(one)
    return {
        one: min(person_id(member) for member in members)
        for members in groups.values()
        for one in members
    }


def survivors(
    identifiers: tuple[str, ...], known: Mapping[str, str], undone: set[tuple[str, str]]
) -> dict[str, str]:
    """Indexing one event: its identifier → the person it is now, given the persons `known` of
    the ones seen before and the links undone (never made again by a later event). A merge of
    persons keeps the smallest id: every identifier of the others moves to it."""
    links = [link for link in links_of(identifiers) if link not in undone]
    merged = people(identifiers, links)
    # Each group's person: the smallest of its new identifiers' ids and its known persons'.
    by_group: dict[str, str] = {}
    for one, group in merged.items():
        candidate = known.get(one, person_id(one))
        by_group[group] = min(by_group.get(group, candidate), candidate)
    return {one: by_group[group] for one, group in merged.items()}


@dataclass(frozen=True, slots=True)
class Link:
    """Two identifiers seen together in one event (`event_id` from `source`, at `at`): what
    makes them one person, until undone."""

    a: str
    b: str
    event_id: str
    source: str
    at: datetime
    undone_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Forgotten:
    """An event forgotten at its person's request (`hookhub people forget`): its index rows
    are gone, reads and replays refuse it until the archive's retention drops it."""

    event_id: str
    source: str
    time: datetime  # the event's own: the archive drops it by this + its retention
    forgotten_at: datetime


def retention(max_age: str) -> timedelta:
    """HOOKHUB_ARCHIVE_MAX_AGE (`7D`, `12h`) as a duration (a month 30 days, a year 365)."""
    return timedelta(seconds=int(max_age[:-1]) * RETENTION_UNITS_S[max_age[-1]])


class ForgottenEvent(LookupError):
    """The event was forgotten: what the CLI and the API say instead of showing or replaying
    it."""

    def __init__(self, forgotten: Forgotten, max_age: str) -> None:
        drops_by = forgotten.time + retention(max_age)
        super().__init__(
            f"event '{forgotten.event_id}' was forgotten on {forgotten.forgotten_at:%Y-%m-%d} "
            f"at the person's request; the archive drops it by {drops_by:%Y-%m-%d %H:%M} UTC "
            f"(its retention, HOOKHUB_ARCHIVE_MAX_AGE={max_age})"
        )
        self.forgotten = forgotten
