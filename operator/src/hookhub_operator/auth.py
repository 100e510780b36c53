"""Who is calling: the Kong consumer named in the headers Kong adds, and what its groups let it do.

Kong authenticates the operator (key-auth) and lets only its two operator groups through (acl);
this service believes those headers only with the gateway secret Kong injects. Without a gateway
secret (`hookhub dev`, or `--allow-no-gateway` where nothing but Kong can reach the port) the
caller is whoever the headers say, and a full operator named `local` when they say nothing.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from hookhub.gateway import CONSUMER_HEADER, came_through_gateway, consumer_groups

OPERATORS = "operators"  # the Kong acl group that may read and change (replay, purge)
READ_ONLY_OPERATORS = "operators-readonly"  # the group that may only read
OPERATOR_GROUPS = (OPERATORS, READ_ONLY_OPERATORS)
LOCAL_OPERATOR = "local"


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    can_change: bool


class Refused(Exception):
    """The request is refused: 401 (not through the gateway, or no caller), 403 (not an operator,
    or not one who may change things), or a form that cannot be taken (400, 413)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def identify(headers: Mapping[str, str], gateway_secret: bytes | None) -> Operator:
    """The operator a request comes from; raises Refused when there is none."""
    if gateway_secret is None:
        name = headers.get(CONSUMER_HEADER) or LOCAL_OPERATOR
        groups = consumer_groups(headers) or frozenset({OPERATORS})
    else:
        if not came_through_gateway(headers, gateway_secret):
            raise Refused(401, "request did not come through the gateway")
        name = headers.get(CONSUMER_HEADER, "")
        if not name:
            raise Refused(401, "no authenticated caller: the gateway sent no X-Consumer-Username")
        groups = consumer_groups(headers)
    if OPERATORS in groups:
        return Operator(name, can_change=True)
    if READ_ONLY_OPERATORS in groups:
        return Operator(name, can_change=False)
    raise Refused(403, f"{name} is in neither operator group ({', '.join(OPERATOR_GROUPS)})")


def may_change(operator: Operator) -> None:
    """Raises Refused (403) unless the operator may replay and purge."""
    if not operator.can_change:
        raise Refused(403, f"{operator.name} is a read-only operator ({READ_ONLY_OPERATORS})")
