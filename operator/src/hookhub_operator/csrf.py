"""CSRF protection for every form that changes something: a signed token bound to a session.

The session is a random nonce in a cookie (HttpOnly, SameSite=Strict, no expiry: it ends with
the browser). A page with a form carries a token: the time it was issued and an HMAC-SHA256 over
the operator's name, the nonce and that time. A post is taken only when its token is one this
service signed, for this operator and this cookie's nonce, less than MAX_AGE_S old. Another site
can make the browser post, but cannot read the page's token, nor compute one without the key; a
cookie planted from a neighbouring domain is useless without a token signed for it.

The key is a setting of its own, `HOOKHUB_OPERATOR_CSRF_KEY`, the same on every replica so that
each accepts the others' tokens; never derived from the gateway secret, so that one leaked secret
does not forge both a caller and an operator's form. Behind the gateway it is required
(`CsrfKeyMissing` at start-up); without a gateway (dev) it is random per process when unset.

Logging out ends the session: the cookie is cleared, and every token bound to its nonce with it.
"""

import hashlib
import hmac
import secrets

from hookhub.settings import Settings

COOKIE = "hookhub_csrf"
FIELD = "csrf_token"
MAX_AGE_S = 8 * 3600
CLOCK_SKEW_S = 60  # replicas' clocks may differ this much


# A key shorter than this is refused: the tokens would be as guessable as the key.
MIN_KEY_CHARS = 32
MAKE_ONE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class CsrfKeyMissing(ValueError):
    """The console runs behind the gateway without a CSRF key of its own (or with one too short);
    the message says what to set."""


def key_of(settings: Settings) -> bytes:
    """The key the forms' tokens are signed with: `HOOKHUB_OPERATOR_CSRF_KEY`; random per
    process when it is unset and no gateway is in front (dev)."""
    if settings.operator_csrf_key is not None:
        key = settings.operator_csrf_key.get_secret_value()
        if len(key) < MIN_KEY_CHARS:
            raise CsrfKeyMissing(
                f"HOOKHUB_OPERATOR_CSRF_KEY is shorter than {MIN_KEY_CHARS} characters: set it to "
                f"a random string, e.g. `{MAKE_ONE}`"
            )
        return hashlib.sha256(b"hookhub-operator-csrf\n" + key.encode()).digest()
    if settings.gateway_secret is not None:
        raise CsrfKeyMissing(
            "HOOKHUB_OPERATOR_CSRF_KEY is not set: behind the gateway the console signs its forms "
            "with a key of its own, the same on every replica (not the gateway secret). Set it to "
            f"a random string, e.g. `{MAKE_ONE}`"
        )
    return secrets.token_bytes(32)


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def _mac(key: bytes, operator: str, nonce: str, issued_at: int) -> str:
    signed = f"{operator}\n{nonce}\n{issued_at}".encode()
    return hmac.new(key, signed, hashlib.sha256).hexdigest()


def issue(key: bytes, operator: str, nonce: str, now_s: float) -> str:
    """The token a page's forms carry."""
    issued_at = int(now_s)
    return f"{issued_at}.{_mac(key, operator, nonce, issued_at)}"


def valid(key: bytes, operator: str, nonce: str | None, token: str | None, now_s: float) -> bool:
    """Whether a posted token was issued by `issue` for this operator and nonce, and is fresh."""
    if not nonce or not token:
        return False
    issued_text, _, mac = token.partition(".")
    if not issued_text.isdigit():
        return False
    issued_at = int(issued_text)
    if not -CLOCK_SKEW_S <= now_s - issued_at <= MAX_AGE_S:
        return False
    return hmac.compare_digest(mac, _mac(key, operator, nonce, issued_at))
