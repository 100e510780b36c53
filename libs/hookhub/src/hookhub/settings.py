"""One Settings class for every Hookhub process, read from `HOOKHUB_*` environment variables."""

import os
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hookhub import publish_policy

PROVIDER_SECRET_PREFIX = "HOOKHUB_SECRET_"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# The stores the consumers can open (hookhub_consumers.store.open_store).
STORE_URL_PREFIXES = ("sqlite:", "mongodb://", "mongodb+srv://")
# A deadline rides as a message's TTL, which RabbitMQ keeps in 32 bits of milliseconds.
MAX_DEADLINE_S = (2**32 - 1) / 1000
# A follow-up key is a random secret: 32 hex characters are 128 bits.
FOLLOW_UP_KEY_MIN_CHARS = 32


def _provider_secrets_from_env() -> dict[str, SecretStr]:
    # One variable per provider (HOOKHUB_SECRET_STRIPE, ...) rather than a nested JSON blob:
    # that is how secrets are mounted from Kubernetes Secrets and .env files.
    return {
        name[len(PROVIDER_SECRET_PREFIX) :].lower(): SecretStr(value)
        for name, value in os.environ.items()
        if name.startswith(PROVIDER_SECRET_PREFIX) and value
    }


class Settings(BaseSettings):
    # hide_input_in_errors: a rejected value (a URL with its password) stays out of the message.
    model_config = SettingsConfigDict(
        env_prefix="HOOKHUB_", extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    # HOOKHUB_AMQP_URL: one URL, or several separated by commas for a cluster with no load
    # balancer in front (each node's address); the broker connection fails over across them.
    amqp_urls: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(DEFAULT_AMQP_URL,), validation_alias="HOOKHUB_AMQP_URL"
    )
    gateway_secret: SecretStr | None = None
    # HOOKHUB_PUBLISH_POLICY: which internal caller may publish which types, as JSON
    # (`hookhub.publish_policy`); unset or empty, the default table. Enforced behind the gateway.
    publish_policy: Annotated[dict[str, tuple[str, ...]], NoDecode] = Field(
        default_factory=lambda: dict(publish_policy.DEFAULT)
    )
    # The key follow-up ids are derived with (`events.follow_up_id`): one per deployment, the same
    # in every consumer process, never shown to a caller. Unset, a public dev key (dev and tests).
    follow_up_key: SecretStr | None = None
    provider_secrets: dict[str, SecretStr] = Field(default_factory=_provider_secrets_from_env)

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    timestamp_tolerance_s: int = 300
    publish_timeout_s: float = 5.0
    retry_after_s: int = 5
    connect_timeout_s: float = 5.0
    # An idle process proves the round trip to the broker this often, when /readyz asks.
    readiness_probe_interval_s: float = Field(default=5.0, gt=0)
    # How long a lost broker node may take to come back before the next address is tried.
    failover_after_s: float = Field(default=3.0, ge=0)

    # A consumer's n-th failure waits the n-th delay (one retry queue each), less up to the
    # jitter ratio of it, so that a burst of failures does not come back all at once.
    retry_delays_s: Annotated[tuple[float, ...], NoDecode] = Field(
        default=(5.0, 30.0, 300.0), validation_alias="HOOKHUB_RETRY_DELAYS"
    )
    retry_jitter_ratio: float = Field(default=0.1, ge=0, lt=1)
    prefetch_count: int = 32
    # How long a consumer's change that finds its SQLite store idle waits for others to share its
    # commit (one fsync for several events): CPU for latency. At most the 100 ms p99 promised.
    commit_linger_ms: float = Field(default=10.0, ge=0, le=100)
    delivery_limit: int = 20
    # How often a consumer publishes follow-ups that publishing after the commit left saved.
    outbox_relay_interval_s: float = Field(default=10.0, gt=0)
    # The saga's deadlines (delayed messages through the broker: each consumer spec's `deadlines`).
    order_payment_timeout_s: float = Field(default=86400.0, gt=0, le=MAX_DEADLINE_S)
    payment_order_timeout_s: float = Field(default=3600.0, gt=0, le=MAX_DEADLINE_S)
    production_timeout_s: float = Field(default=3 * 86400.0, gt=0, le=MAX_DEADLINE_S)
    store_url: str = "sqlite:///var/hookhub.db"
    # MongoDB (an option the URL names wins): how long an operation waits for a server to take
    # it (a primary after a failover), and for a reply on a socket: a write waiting for a
    # majority that is down fails after it instead of hanging. The socket timeout stays above
    # every query's own server-side budget (maxTimeMS), which it must not cut short.
    store_server_selection_timeout_s: float = Field(default=5.0, gt=0)
    store_socket_timeout_s: float = Field(default=30.0, gt=0)
    # The event log: a stream queue keeps every event for this long (RabbitMQ's units: 7D, 12h,
    # 30m) and at most this many bytes; off, nothing is archived and unbound events wait in
    # hookhub.unrouted as before.
    archive_enabled: bool = True
    archive_max_age: str = Field(default="7D", pattern=r"^[0-9]+[YMDhms]$")
    archive_max_bytes: int = Field(default=20 * 1024**3, gt=0)
    archive_segment_bytes: int = Field(default=100 * 1024**2, gt=0)
    notify_url: str | None = None
    notify_secret: SecretStr | None = None
    # One POST to the shorthand endpoint (and Mercado Pago's fetch): long enough that a
    # receiver doing its work before it answers is not cut short into a duplicate.
    notify_timeout_s: float = 30.0
    # Outbound endpoints as configuration (hookhub_endpoints.config), applied when the
    # notifications consumer starts.
    endpoints_file: str | None = None
    # An endpoint's circuit breaker: paused after this many failed attempts in a row spanning at
    # least this long, then probed with one delivery this often until one gets through.
    endpoint_breaker_failures: int = Field(default=20, ge=1)
    endpoint_breaker_over_s: float = Field(default=60.0, ge=0)
    endpoint_probe_every_s: float = Field(default=30.0, gt=0)
    mercadopago_api_url: str = "https://api.mercadopago.com"
    mercadopago_access_token: SecretStr | None = None
    # Where the operator console reads hub-api's request counters (its rejections by status).
    api_metrics_url: str | None = None
    # RabbitMQ's management HTTP API (http://user:password@host:15672; without credentials, the
    # AMQP URL's): how `hookhub topology plan/apply` read the queues' arguments, which AMQP
    # cannot read.
    rabbitmq_management_url: SecretStr | None = None
    # The key the operator console signs its forms' CSRF tokens with: its own, so that a leaked
    # gateway secret does not also forge an operator's replay or purge.
    operator_csrf_key: SecretStr | None = None

    log_level: str = "INFO"
    log_json: bool | None = None  # None: JSON lines unless a person watches a terminal

    @field_validator(
        "gateway_secret",
        "notify_secret",
        "mercadopago_access_token",
        "rabbitmq_management_url",
        "follow_up_key",
        "operator_csrf_key",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty variable (as in a fresh .env) must mean "not set", never "a secret of ''":
        # an empty gateway secret would otherwise switch the gateway check off unnoticed.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("follow_up_key")
    @classmethod
    def _follow_up_key_is_long(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < FOLLOW_UP_KEY_MIN_CHARS:
            raise ValueError(
                f"must be at least {FOLLOW_UP_KEY_MIN_CHARS} characters of a random secret, "
                "e.g. `openssl rand -hex 32`"
            )
        return value

    @field_validator("publish_policy", mode="before")
    @classmethod
    def _parse_publish_policy(cls, value: object) -> object:
        if isinstance(value, str):
            return publish_policy.parse(value) if value.strip() else dict(publish_policy.DEFAULT)
        return publish_policy.checked(value)

    @model_validator(mode="before")
    @classmethod
    def _amqp_url_is_the_variable(cls, data: object) -> object:
        # `Settings(amqp_url=...)` means what HOOKHUB_AMQP_URL means (one URL or several),
        # rather than being ignored as an unknown name and leaving the default broker in place.
        if isinstance(data, dict) and "amqp_url" in data:
            data = dict(data)
            data["HOOKHUB_AMQP_URL"] = data.pop("amqp_url")
        return data

    @field_validator("amqp_urls", mode="before")
    @classmethod
    def _split_amqp_urls(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(url.strip() for url in value.split(",") if url.strip())
        return value

    @field_validator("amqp_urls")
    @classmethod
    def _amqp_urls_are_whole(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        # Checked here because aio-pika, given a URL it cannot parse, logs it with its password;
        # so a bad one is named by its position, never shown.
        if not urls:
            raise ValueError("needs a URL such as amqp://user:password@host:5672/vhost")
        shape = "must look like amqp://user:password@host:5672/vhost (or amqps://)"
        bad = [position for position, url in enumerate(urls, start=1) if not _is_amqp_url(url)]
        if bad and len(urls) == 1:
            raise ValueError(shape)
        if bad:
            raise ValueError(
                f"URL {bad[0]} of {len(urls)} {shape}; several are separated by commas"
                " (a comma inside a password is written %2C)"
            )
        return urls

    @field_validator("store_url")
    @classmethod
    def _store_url_is_known(cls, value: str) -> str:
        if not value.startswith(STORE_URL_PREFIXES):
            raise ValueError("must start with one of: " + ", ".join(STORE_URL_PREFIXES))
        return value

    @field_validator("retry_delays_s", mode="before")
    @classmethod
    def _parse_delays(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if not parts:
                raise ValueError("needs at least one delay, e.g. 5,30,300")
            return tuple(float(p) for p in parts)
        return value

    @field_validator("retry_delays_s")
    @classmethod
    def _delays_are_ttls(cls, delays_s: tuple[float, ...]) -> tuple[float, ...]:
        # Each is a retry queue's TTL: RabbitMQ takes whole milliseconds, at least 1, in 32 bits.
        if not delays_s:
            raise ValueError("needs at least one delay, e.g. 5,30,300")
        if not all(0.001 <= delay_s <= MAX_DEADLINE_S for delay_s in delays_s):
            raise ValueError(f"each delay must be between 0.001 and {MAX_DEADLINE_S:g} seconds")
        return delays_s

    @property
    def amqp_url(self) -> str:
        """The first broker address: for one-off operator commands, and a single-node broker."""
        return self.amqp_urls[0]

    def provider_secret(self, provider: str) -> str | None:
        secret = self.provider_secrets.get(provider)
        value = secret.get_secret_value().strip() if secret else ""
        return value or None


def _is_amqp_url(url: str) -> bool:
    parts = urlsplit(url)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    return parts.scheme in ("amqp", "amqps") and bool(parts.hostname) and port_ok


@lru_cache
def get_settings() -> Settings:
    return Settings()
