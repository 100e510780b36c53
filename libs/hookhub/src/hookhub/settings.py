"""One Settings class for every Hookhub process, read from `HOOKHUB_*` environment variables."""

import os
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROVIDER_SECRET_PREFIX = "HOOKHUB_SECRET_"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# The stores the consumers can open (hookhub_consumers.store.open_store).
STORE_URL_PREFIXES = ("sqlite:", "mongodb://", "mongodb+srv://")


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

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    gateway_secret: SecretStr | None = None
    provider_secrets: dict[str, SecretStr] = Field(default_factory=_provider_secrets_from_env)

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    timestamp_tolerance_s: int = 300
    publish_timeout_s: float = 5.0
    retry_after_s: int = 5
    connect_timeout_s: float = 5.0

    retry_delays_s: Annotated[tuple[float, ...], NoDecode] = Field(
        default=(5.0, 30.0, 300.0), validation_alias="HOOKHUB_RETRY_DELAYS"
    )
    prefetch_count: int = 32
    delivery_limit: int = 20
    # How often a consumer publishes follow-ups that publishing after the commit left saved.
    outbox_relay_interval_s: float = Field(default=10.0, gt=0)
    store_url: str = "sqlite:///var/hookhub.db"
    notify_url: str | None = None
    notify_secret: SecretStr | None = None
    notify_timeout_s: float = 10.0
    mercadopago_api_url: str = "https://api.mercadopago.com"
    mercadopago_access_token: SecretStr | None = None

    log_level: str = "INFO"
    log_json: bool | None = None  # None: JSON lines unless a person watches a terminal

    @field_validator("gateway_secret", "notify_secret", "mercadopago_access_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # An empty variable (as in a fresh .env) must mean "not set", never "a secret of ''":
        # an empty gateway secret would otherwise switch the gateway check off unnoticed.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url_is_whole(cls, value: str) -> str:
        # Checked here because aio-pika, given a URL it cannot parse, logs it with its password.
        parts = urlsplit(value)
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if parts.scheme not in ("amqp", "amqps") or not parts.hostname or not port_ok:
            raise ValueError("must look like amqp://user:password@host:5672/vhost (or amqps://)")
        return value

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

    def provider_secret(self, provider: str) -> str | None:
        secret = self.provider_secrets.get(provider)
        value = secret.get_secret_value().strip() if secret else ""
        return value or None


@lru_cache
def get_settings() -> Settings:
    return Settings()
