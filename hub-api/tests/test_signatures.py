"""The signature schemes against the senders' own documented examples, reproduced exactly, and
their refusals; and the table that gives every provider's scheme its verifier. Pure: no server, no
broker."""

import time
from urllib.parse import urlencode

import nacl.signing
import pytest
from hookhub.providers import PROVIDERS, Scheme
from hub_api.signatures import (
    VERIFIERS,
    SignatureError,
    SignedRequest,
    verify_discord,
    verify_hub_signature_256,
    verify_slack,
    verify_twilio,
)


def test_every_providers_scheme_has_a_verifier():
    unverifiable = {p.name: p.scheme for p in PROVIDERS.values() if p.scheme not in VERIFIERS}

    assert unverifiable == {}


def test_every_scheme_the_library_names_has_a_verifier():
    assert set(Scheme) - set(VERIFIERS) == set()


NO_TOLERANCE_LIMIT_S = 10**10  # for documented examples signed years ago
GITHUB_EXAMPLE_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_githubs_documented_example_verifies():
    # docs.github.com, "Validating webhook deliveries": the secret, the payload and the header.
    request = SignedRequest(
        {"x-hub-signature-256": GITHUB_EXAMPLE_SIGNATURE},
        {},
        b"Hello, World!",
    )

    verify_hub_signature_256(request, "It's a Secret to Everybody", 300)


def test_githubs_documented_example_with_a_changed_body_is_refused():
    request = SignedRequest(
        {"x-hub-signature-256": GITHUB_EXAMPLE_SIGNATURE},
        {},
        b"Hello, World?",
    )

    with pytest.raises(SignatureError, match="does not match the body"):
        verify_hub_signature_256(request, "It's a Secret to Everybody", 300)


SLACK_EXAMPLE_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
    b"collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F39770088"
    b"5554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447"
    b"fce8b6703c"
)
SLACK_EXAMPLE = SignedRequest(
    {
        "x-slack-request-timestamp": "1531420618",
        "x-slack-signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    },
    {},
    SLACK_EXAMPLE_BODY,
)
SLACK_EXAMPLE_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def test_slacks_documented_example_verifies():
    # api.slack.com, "Verifying requests from Slack": the slash command, secret and signature.
    verify_slack(SLACK_EXAMPLE, SLACK_EXAMPLE_SECRET, NO_TOLERANCE_LIMIT_S)


def test_slacks_documented_example_is_stale_today():
    with pytest.raises(SignatureError, match="outside the 300s tolerance"):
        verify_slack(SLACK_EXAMPLE, SLACK_EXAMPLE_SECRET, 300)


def test_slacks_documented_example_under_another_secret_is_refused():
    with pytest.raises(SignatureError, match="X-Slack-Signature does not match"):
        verify_slack(SLACK_EXAMPLE, "another-secret", NO_TOLERANCE_LIMIT_S)


# Twilio's documented example (twilio.com/docs/usage/security): auth token 12345.
TWILIO_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}


def twilio_example(body: bytes, target: str = "/myapp.php?foo=1&bar=2") -> SignedRequest:
    return SignedRequest(
        {"x-twilio-signature": "RSOYDt4T1cUTdK1PDd93/VVr8B8=", "host": "mycompany.com"},
        {},
        body,
        target,
    )


def test_twilios_documented_example_verifies_whatever_the_order_of_the_form():
    body = urlencode(dict(reversed(TWILIO_PARAMS.items()))).encode()

    verify_twilio(twilio_example(body), "12345", 300)


def test_twilios_documented_example_with_a_changed_parameter_is_refused():
    body = urlencode(TWILIO_PARAMS | {"Digits": "9999"}).encode()

    with pytest.raises(SignatureError, match="does not match the URL and parameters"):
        verify_twilio(twilio_example(body), "12345", 300)


def test_twilios_documented_example_at_another_url_is_refused():
    body = urlencode(TWILIO_PARAMS).encode()

    with pytest.raises(SignatureError, match="does not match the URL and parameters"):
        verify_twilio(twilio_example(body, target="/myapp.php?foo=1"), "12345", 300)


SIGNING_KEY = nacl.signing.SigningKey(bytes.fromhex("22" * 32))
PUBLIC_KEY = SIGNING_KEY.verify_key.encode().hex()


def discord_request(body: bytes, key=SIGNING_KEY, ts: int | None = None) -> SignedRequest:
    timestamp = str(int(time.time()) if ts is None else ts)
    signature = key.sign(timestamp.encode() + body).signature.hex()
    return SignedRequest(
        {"x-signature-ed25519": signature, "x-signature-timestamp": timestamp}, {}, body
    )


def test_a_discord_interaction_signed_with_the_applications_key_verifies():
    verify_discord(discord_request(b'{"type":1}'), PUBLIC_KEY, 300)


def test_a_discord_interaction_with_a_changed_body_is_refused():
    request = discord_request(b'{"type":1}')
    tampered = SignedRequest(request.headers, {}, b'{"type":2}')

    with pytest.raises(SignatureError, match="X-Signature-Ed25519 does not match"):
        verify_discord(tampered, PUBLIC_KEY, 300)


def test_a_discord_interaction_signed_by_another_key_is_refused():
    other = nacl.signing.SigningKey.generate()

    with pytest.raises(SignatureError, match="does not match"):
        verify_discord(discord_request(b"{}", key=other), PUBLIC_KEY, 300)


def test_a_stale_discord_interaction_is_refused():
    with pytest.raises(SignatureError, match="outside the 300s tolerance"):
        verify_discord(discord_request(b"{}", ts=int(time.time()) - 3600), PUBLIC_KEY, 300)


def test_a_discord_key_that_is_not_a_public_key_says_what_to_set():
    with pytest.raises(SignatureError, match="HOOKHUB_SECRET_DISCORD to the application's PUBLIC"):
        verify_discord(discord_request(b"{}"), "not-hex", 300)
