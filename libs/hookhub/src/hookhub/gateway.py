"""What Kong tells the services behind it, and how a service knows a request came through Kong.

Kong authenticates the caller and names it in headers (`X-Consumer-Username`, and with the acl
plugin's `hide_groups_header: false`, `X-Consumer-Groups`). Those headers are worth something
only on a request that came through Kong: Kong injects a secret (and strips a client-sent copy),
which the service compares with `HOOKHUB_GATEWAY_SECRET`.
"""

import hmac
from collections.abc import Mapping

from hookhub.settings import Settings

GATEWAY_SECRET_HEADER = "x-hookhub-gateway-secret"
CONSUMER_HEADER = "x-consumer-username"
CONSUMER_GROUPS_HEADER = "x-consumer-groups"
# The path prefix a route with `strip_path` removed (Kong sets it), for the links a page makes.
FORWARDED_PREFIX_HEADER = "x-forwarded-prefix"


def gateway_secret(settings: Settings) -> bytes | None:
    """The secret Kong injects, as the services compare it; None where no Kong is in front."""
    secret = settings.gateway_secret
    return None if secret is None else secret.get_secret_value().encode()


def came_through_gateway(headers: Mapping[str, str], secret: bytes) -> bool:
    """Whether the request carries the secret Kong injects (compared in constant time)."""
    return hmac.compare_digest(headers.get(GATEWAY_SECRET_HEADER, "").encode(), secret)


def consumer_groups(headers: Mapping[str, str]) -> frozenset[str]:
    """The Kong consumer's acl groups, as Kong lists them (`operators, other`)."""
    listed = headers.get(CONSUMER_GROUPS_HEADER, "")
    return frozenset(group.strip() for group in listed.split(",") if group.strip())
