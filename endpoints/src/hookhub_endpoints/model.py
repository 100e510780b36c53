"""An endpoint: where some events go, signed, and how fast; and the checks that keep one sound.

Pure data and pure functions: the registry stores endpoints, the delivery worker reads them. Every
check raises `EndpointError` with a sentence that says what to write instead, and never shows a
secret.
"""

import base64
import binascii
import hashlib
import re
import secrets as random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from hookhub.addresses import redact

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# A binding key as RabbitMQ's topic exchange reads it: words, `*` (one word), `#` (any number).
TYPE_WORD = re.compile(r"^(\*|#|[A-Za-z0-9_-]+)$")
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # what `new_secret` draws; Standard Webhooks asks for 24 to 64
MIN_SECRET_BYTES, MAX_SECRET_BYTES = 24, 64
DEFAULT_MAX_IN_FLIGHT = 10
# Long enough for a receiver that does its work before answering (the 10 s one), so a
# slow success is not cut short into a retry; per endpoint.
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 300.0
MAX_IN_FLIGHT = 1000
DEFAULT_OVERLAP_S = 24 * 3600.0  # how long a rotated-out secret keeps signing
# The endpoint that HOOKHUB_NOTIFY_URL / HOOKHUB_NOTIFY_SECRET describe (the shorthand).
SHORTHAND = "notifications"


class EndpointError(ValueError):
    """An endpoint that cannot be: the message says what to change."""


class UnknownEndpoint(KeyError):
    """No endpoint has this name."""

    def __str__(self) -> str:
        return f"no endpoint is named '{self.args[0]}' (see `hookhub endpoints list`)"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Secret:
    """One Standard Webhooks signing secret (`whsec_<base64>`): it signs until `expires_at`
    (None: until rotated out)."""

    value: str = field(repr=False)
    added_at: datetime = field(default_factory=_now)
    expires_at: datetime | None = None

    @property
    def key_id(self) -> str:
        """What shows which secret this is, everywhere a secret would: a hash's first 8 hex."""
        return hashlib.sha256(self.value.encode()).hexdigest()[:8]

    def signs_at(self, at: datetime) -> bool:
        return self.expires_at is None or at < self.expires_at


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where events of `types` (topic patterns) go: `url`, signed with every secret still in its
    window, at most `max_in_flight` at once and `rate_per_s` a second (None: no limit), each POST
    given `timeout_s`. `enabled` is an operator's choice; `paused_reason` is set while the
    circuit breaker holds the endpoint (its queue keeps every event meanwhile)."""

    name: str
    url: str
    types: tuple[str, ...]
    secrets: tuple[Secret, ...] = field(repr=False)
    rate_per_s: float | None = None
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    timeout_s: float = DEFAULT_TIMEOUT_S
    enabled: bool = True
    paused_reason: str | None = None
    description: str = ""
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)

    def __post_init__(self) -> None:
        check_name(self.name)
        check_url(self.url)
        object.__setattr__(self, "types", check_types(self.types))
        if not self.secrets:
            raise EndpointError(f"endpoint '{self.name}' needs a signing secret")
        for secret in self.secrets:
            check_secret(secret.value)
        if self.rate_per_s is not None and not 0 < self.rate_per_s <= 10_000:
            raise EndpointError("--rate must be between 0 and 10000 deliveries a second")
        if not 1 <= self.max_in_flight <= MAX_IN_FLIGHT:
            raise EndpointError(f"--max-in-flight must be between 1 and {MAX_IN_FLIGHT}")
        if not 0 < self.timeout_s <= MAX_TIMEOUT_S:
            raise EndpointError(f"--timeout must be between 0 and {MAX_TIMEOUT_S:g} seconds")

    @property
    def state(self) -> str:
        """`disabled` (by hand), `paused` (by the circuit breaker) or `active`."""
        if not self.enabled:
            return "disabled"
        return "paused" if self.paused_reason else "active"

    def signing_secrets(self, at: datetime | None = None) -> tuple[Secret, ...]:
        """The secrets that sign a delivery made at `at` (now): during a rotation's overlap,
        the new one and the old one, so a receiver may switch whenever it likes."""
        at = at or _now()
        return tuple(s for s in self.secrets if s.signs_at(at))

    def shown(self) -> dict[str, object]:
        """The endpoint as people and logs see it: every field, secrets by key id only."""
        return {
            "name": self.name,
            "url": redact(self.url),
            "types": list(self.types),
            "secrets": [
                {
                    "key_id": s.key_id,
                    "added_at": s.added_at.isoformat(),
                    "expires_at": s.expires_at.isoformat() if s.expires_at else None,
                }
                for s in self.secrets
            ],
            "rate_per_s": self.rate_per_s,
            "max_in_flight": self.max_in_flight,
            "timeout_s": self.timeout_s,
            "enabled": self.enabled,
            "paused_reason": self.paused_reason,
            "state": self.state,
            "description": self.description,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def new_secret() -> str:
    """A fresh Standard Webhooks secret."""
    return SECRET_PREFIX + base64.b64encode(random.token_bytes(SECRET_BYTES)).decode()


def rotated(endpoint: Endpoint, value: str | None, overlap_s: float, at: datetime) -> Endpoint:
    """`endpoint` with `value` (or a fresh secret) signing from `at` on, the secrets it had
    signing `overlap_s` longer (0: at once no more), and secrets already expired dropped."""
    if overlap_s < 0:
        raise EndpointError("--overlap must be 0 or more seconds")
    new = Secret(value or new_secret(), added_at=at)
    check_secret(new.value)
    until = at + timedelta(seconds=overlap_s)
    kept = tuple(
        replace(s, expires_at=min(s.expires_at or until, until))
        for s in endpoint.secrets
        if s.signs_at(at) and overlap_s > 0
    )
    return replace(endpoint, secrets=(new, *kept), updated_at=at)


def check_name(name: str) -> None:
    if name == SHORTHAND:
        raise EndpointError(
            f"'{SHORTHAND}' is the shorthand endpoint's name (HOOKHUB_NOTIFY_URL): pick another"
        )
    if not NAME.match(name or ""):
        raise EndpointError(
            f"endpoint name '{name}' must be 1 to 63 lowercase letters, digits, '-' or '_',"
            " starting with a letter or digit (it names the endpoint's queue)"
        )


def check_url(url: str) -> None:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(
            f"endpoint URL '{redact(url)}' must be http:// or https:// with a host,"
            " e.g. https://example.com/hooks"
        )


def check_types(types: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """The type patterns, stripped and without repeats; each a RabbitMQ topic pattern."""
    if isinstance(types, str):
        types = types.split(",")
    cleaned = tuple(dict.fromkeys(t.strip() for t in types if t.strip()))
    if not cleaned:
        raise EndpointError("an endpoint needs at least one event type, e.g. --types 'payment.#'")
    for pattern in cleaned:
        if len(pattern) > 255 or not all(TYPE_WORD.match(w) for w in pattern.split(".")):
            raise EndpointError(
                f"type pattern '{pattern}' must be words separated by '.', where a word is"
                " letters, digits, '-' or '_', or '*' (one word) or '#' (any number of words)"
            )
    return cleaned


def check_secret(value: str) -> None:
    try:
        if not value.startswith(SECRET_PREFIX):
            raise ValueError
        key = base64.b64decode(value.removeprefix(SECRET_PREFIX), validate=True)
    except (ValueError, binascii.Error):
        raise EndpointError(
            "a secret must be whsec_ followed by base64 (Standard Webhooks); leave --secret out"
            " and one is made for you"
        ) from None
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise EndpointError(
            f"a secret must hold {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} bytes once decoded"
        )
