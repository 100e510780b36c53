"""What hub-api's routes are handed: the service's state, made once by `create_app` and kept in
`app.state.service`.

The probes, FastAPI routes, take it as parameters typed with the `Annotated` aliases below. The
ingest routes are served directly (`hub_api.fast_path`), where FastAPI solves no dependency: they
call `service_of` on their request themselves.
"""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from hookhub import gateway
from hookhub.broker import Broker
from hookhub.publish_policy import PublishPolicy
from hookhub.settings import Settings

from hub_api.fast_path import DirectRequest


@dataclass(frozen=True, slots=True)
class Service:
    """hub-api's state: its settings, the broker it publishes to, the secret Kong injects and
    the publish policy it enforces (both None where no Kong is in front, in dev: requests are
    then not checked for the secret, and the caller they name, unproven, may publish anything
    that is not reserved)."""

    settings: Settings
    broker: Broker
    gateway_secret: bytes | None
    publish_policy: PublishPolicy | None

    @classmethod
    def from_settings(cls, settings: Settings) -> "Service":
        """The state for these settings, with a broker not yet started (the lifespan starts it)."""
        secret = gateway.gateway_secret(settings)
        policy = None if secret is None else settings.publish_policy
        return cls(settings, Broker(settings), secret, policy)


def service_of(request: Request | DirectRequest) -> Service:
    # By key: Starlette's `State` finds an attribute only after the ordinary lookup has failed,
    # which cost about 0.4 µs on every ingest request.
    return request.app.state["service"]


def broker_of(request: Request) -> Broker:
    return service_of(request).broker


BrokerDep = Annotated[Broker, Depends(broker_of)]
