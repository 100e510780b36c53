"""Who may publish what: the publish policy, one table from an internal caller (the Kong consumer
hub-api is told of in `X-Consumer-Username`) to the topic patterns of the types it may send to
`POST /events`. The table and its checks live here (settings read it); the service that takes
internal events enforces it behind the gateway.

Patterns match as the broker's bindings do (`topology.binding_matches`): `ci.#` is `ci` and
everything under it, `order.*` one word after `order`. A caller the table does not name may
publish nothing. The rule that no caller publishes a type Hookhub's consumers emit, or a
provider's, holds on top of it.
"""

import json
import re
from collections.abc import Mapping

PublishPolicy = Mapping[str, tuple[str, ...]]

# Kong's consumers in the internal-events group (gateway/kong.yml), and what each one sends.
DEFAULT: PublishPolicy = {
    "storefront": ("order.created", "order.amended"),
    "workshop": ("production.finished",),
    "jenkins": ("ci.#", "deploy.#"),
}
# What a caller's name may be: it becomes the event's source (`/events/<caller>`), where a `/`
# or a `|` could pass for another party's source.
CALLER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
_PATTERN_WORD = re.compile(r"[A-Za-z0-9_-]+|\*|#")


def parse(text: str) -> dict[str, tuple[str, ...]]:
    """A policy from its JSON (`{"storefront": ["order.created"], ...}`); ValueError saying
    what is wrong (never echoing the whole value)."""
    try:
        loaded = json.loads(text)
    except ValueError as exc:
        raise ValueError(
            f"is not JSON ({exc.msg} at character {exc.pos}); write it as "
            '{"storefront": ["order.created"], "jenkins": ["ci.#", "deploy.#"]}'
        ) from None
    return checked(loaded)


def checked(policy: object) -> dict[str, tuple[str, ...]]:
    """The policy, once every caller is a plain name and every pattern a topic binding key."""
    if not isinstance(policy, Mapping):
        raise ValueError("must be a JSON object from caller to a list of type patterns")
    result: dict[str, tuple[str, ...]] = {}
    for caller, patterns in policy.items():
        if not isinstance(caller, str) or not CALLER_PATTERN.fullmatch(caller):
            raise ValueError(
                f"caller {caller!r} is not a Kong consumer name (letters, digits, '_.@-')"
            )
        if isinstance(patterns, str) or not isinstance(patterns, list | tuple):
            raise ValueError(f"caller '{caller}': give a list of type patterns, e.g. [\"ci.#\"]")
        for pattern in patterns:
            if not isinstance(pattern, str) or not all(
                _PATTERN_WORD.fullmatch(word) for word in pattern.split(".")
            ):
                raise ValueError(
                    f"caller '{caller}': {pattern!r} is not a type pattern (dot-separated words, "
                    "'*' for one word, '#' for any number)"
                )
        result[caller] = tuple(patterns)
    return result
