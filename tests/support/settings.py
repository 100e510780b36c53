"""The settings of a hub under test: its secrets, and the environment its processes run with."""

import json
import os

GATEWAY_SECRET = "test-gateway-secret"
PROVIDER_SECRETS = {
    "stripe": "whsec_test_stripe",
    "github": "test-github-secret",
    "standardwebhooks": "whsec_dGVzdC1zdGFuZGFyZC13ZWJob29rcy1zZWNyZXQ=",
    "mercadopago": "test-mercadopago-secret",
    "hotmart": "test-hotmart-hottok",
    "kiwify": "test-kiwify-token",
    "hmac": "test-hmac-secret",
}

# The callers tests send internal events as, each free to publish every type that is not
# reserved: the tests of who may publish what (hub-api's test_api_publish_policy.py) run hub-api
# with the default policy instead.
TEST_PUBLISH_POLICY = {caller: ["#"] for caller in ("tests", "storefront", "jenkins", "workshop")}


def hub_env(amqp_url: str, **extra: str) -> dict[str, str]:
    """The environment of a hub process under test: all providers enabled, fast delays; no
    tracing unless `extra` sets the OTEL_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOOKHUB_", "OTEL_"))}
    env.update(
        HOOKHUB_AMQP_URL=amqp_url,
        HOOKHUB_GATEWAY_SECRET=GATEWAY_SECRET,
        HOOKHUB_LOG_JSON="true",
        HOOKHUB_PUBLISH_TIMEOUT_S="2",
        HOOKHUB_CONNECT_TIMEOUT_S="2",
        HOOKHUB_PUBLISH_POLICY=json.dumps(TEST_PUBLISH_POLICY),
        **{f"HOOKHUB_SECRET_{name.upper()}": secret for name, secret in PROVIDER_SECRETS.items()},
    )
    env.update(extra)
    return env
