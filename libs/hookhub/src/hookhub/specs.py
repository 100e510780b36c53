"""What a consumer is, declared once next to its handlers: its `ConsumerSpec`.

A spec says a consumer's name, the event types its work queue binds, the deadlines it sets, the
types it emits (and the namespaces no caller may publish in), and where its handler steps and
record repositories are. The topology, hub-api's publish rule, the runtime's handler table, the
event catalogue and the AsyncAPI document are all derived from the specs.

The library knows the shape of a spec, not the consumers: a package registers its consumers'
specs under the `hookhub.consumers` entry-point group (`name = "package.module:SPEC"`, one spec
or a sequence of them), and `installed()` finds them. A spec module imports only this library,
so any process can read every spec without the consumers' code or dependencies being loaded; the
steps are imported (by `load_steps`) only by the process that runs the consumer.
"""

import functools
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from hookhub.events import INBOUND

ENTRY_POINT_GROUP = "hookhub.consumers"
# A deadline is a delayed message a consumer sends itself; every deadline type is in this
# namespace, which is the consumers' own: no caller may publish in it.
DEADLINE_NAMESPACE = "deadline"
_NAME = re.compile(r"[a-z][a-z0-9_-]*")


class SpecError(ValueError):
    """A consumer spec that contradicts itself or another one."""


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """One consumer, as every process that deals with it needs to know it."""

    name: str
    # The topic binding keys of its work queue: the event types it receives from the exchange.
    bindings: tuple[str, ...]
    # Where its handler steps are, as "module:attribute": a mapping with one step per binding
    # and per deadline (the runtime refuses to start a consumer whose steps disagree).
    steps: str
    # The event types it emits, each with what it means.
    emits: Mapping[str, str] = field(default_factory=dict)
    # The namespaces (first word of a type) it owns: no caller of hub-api may publish in them.
    owns: tuple[str, ...] = ()
    # Its deadlines: delayed messages to itself (deadline.<what>), each with what it means.
    deadlines: Mapping[str, str] = field(default_factory=dict)
    # The Settings field holding each deadline's duration (its delay queue's TTL, see
    # `topology.deadline_durations`); a deadline without one gets its queue when first set.
    deadline_settings: Mapping[str, str] = field(default_factory=dict)
    # Its record repositories, as "module:attribute" per store scheme ("sqlite", "mongodb").
    repositories: Mapping[str, str] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise SpecError(f"consumer name {self.name!r}: lower-case letters, digits, _ or -")
        if not self.bindings:
            raise SpecError(f"{self.name}: a consumer binds at least one event type")
        for deadline_type in self.deadlines:
            if not deadline_type.startswith(f"{DEADLINE_NAMESPACE}."):
                raise SpecError(
                    f"{self.name}: deadline {deadline_type!r} must be named "
                    f"'{DEADLINE_NAMESPACE}.<what>'"
                )
        if unknown := set(self.deadline_settings) - set(self.deadlines):
            raise SpecError(f"{self.name}: durations for deadlines it does not set: {unknown}")
        if DEADLINE_NAMESPACE in self.owns:
            raise SpecError(f"{self.name}: the {DEADLINE_NAMESPACE} namespace is every consumer's")

    @property
    def handled_types(self) -> tuple[str, ...]:
        """What its handler steps must cover: its bindings and its deadlines."""
        return (*self.bindings, *self.deadlines)

    def load_steps(self) -> Mapping[str, Any]:
        """Its handler steps (imports its handlers' module)."""
        return _load(self.steps)

    def load_repository(self, scheme: str) -> Any | None:
        """Its record repository for a store scheme, None when it keeps no records."""
        where = self.repositories.get(scheme)
        return None if where is None else _load(where)


def _load(where: str) -> Any:
    module, _, attribute = where.partition(":")
    return getattr(importlib.import_module(module), attribute)


def check(specs: tuple[ConsumerSpec, ...]) -> tuple[ConsumerSpec, ...]:
    """The specs, if they agree with each other: one name each, one emitter per type and per
    namespace, no type emitted that a caller may send."""
    names_seen: set[str] = set()
    claimed: dict[str, str] = {}
    for spec in specs:
        if spec.name in names_seen:
            raise SpecError(f"two consumers are named {spec.name!r}")
        names_seen.add(spec.name)
        for what in (*spec.emits, *spec.deadlines, *(f"{ns}.*" for ns in spec.owns)):
            if what in claimed:
                raise SpecError(f"{what!r} is claimed by both {claimed[what]} and {spec.name}")
            if what in INBOUND:
                raise SpecError(f"{spec.name} emits {what!r}, which callers send")
            claimed[what] = spec.name
    return specs


@functools.cache
def installed() -> tuple[ConsumerSpec, ...]:
    """The specs of every consumer installed in this environment, by name."""
    found: list[ConsumerSpec] = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry.load()
        # One spec, or a package's several (its consumers found by their packages).
        given = (loaded,) if isinstance(loaded, ConsumerSpec) else tuple(loaded)
        if not all(isinstance(spec, ConsumerSpec) for spec in given):
            raise SpecError(
                f"entry point {entry.name} = {entry.value} in {ENTRY_POINT_GROUP} must be a "
                "ConsumerSpec or a sequence of them"
            )
        found += given
    return check(tuple(sorted(found, key=lambda spec: spec.name)))


def names(specs: tuple[ConsumerSpec, ...] | None = None) -> tuple[str, ...]:
    return tuple(spec.name for spec in (installed() if specs is None else specs))


def by_name(name: str, specs: tuple[ConsumerSpec, ...] | None = None) -> ConsumerSpec:
    """The spec of one consumer; KeyError naming the known ones when there is none."""
    for spec in installed() if specs is None else specs:
        if spec.name == name:
            return spec
    known = ", ".join(names(specs)) or "none installed"
    raise KeyError(f"unknown consumer '{name}'; known: {known}")


def catalogue(specs: tuple[ConsumerSpec, ...] | None = None) -> dict[str, tuple[str, str]]:
    """Every event type Hookhub knows: type → (who emits it, what it means). What callers send
    (`events.INBOUND`, emitted by "internal"), then what each consumer emits and its deadlines."""
    known = {event_type: ("internal", meaning) for event_type, meaning in INBOUND.items()}
    for spec in installed() if specs is None else specs:
        for event_type, meaning in {**spec.emits, **spec.deadlines}.items():
            known[event_type] = (spec.name, meaning)
    return known


def reserved(event_type: str, specs: tuple[ConsumerSpec, ...] | None = None) -> str | None:
    """The consumer a type belongs to, when a caller may not publish it: one a consumer emits,
    in a namespace a consumer owns, or a deadline. None when it is free."""
    namespace = event_type.split(".", 1)[0]
    for spec in installed() if specs is None else specs:
        if event_type in spec.emits or event_type in spec.deadlines or namespace in spec.owns:
            return spec.name
    return "the consumers" if namespace == DEADLINE_NAMESPACE else None
