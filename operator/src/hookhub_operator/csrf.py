"""CSRF protection for every form that changes something: a signed token bound to a session.

The session is a random nonce in a cookie (HttpOnly, SameSite=Strict, no expiry: it ends with
the browser). A page with a form carries a token: the time it was issued and an HMAC-SHA256 over
the operator's name, the nonce and that time. A post is taken only when its token is one this
service signed, for this operator and this cookie's nonce, less than MAX_AGE_S old. Another site
can make the browser post, but cannot read the page's token, nor compute one without the key; a
cookie planted from a neighbouring domain is useless without a token signed for it.

The key is derived from the gateway secret, so every replica signs alike; without one (dev) it is
random per process.
"""

import hashlib
import hmac
import secrets

COOKIE = "hookhub_csrf"
FIELD = "csrf_token"
MAX_AGE_S = 8 * 3600
CLOCK_SKEW_S = 60  # replicas' clocks may differ this much


def key_from(gateway_secret: bytes | None) -> bytes:
    if gateway_secret is None:
        return secrets.token_bytes(32)
    return hmac.new(gateway_secret, b"hookhub-operator-csrf", hashlib.sha256).digest()


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
