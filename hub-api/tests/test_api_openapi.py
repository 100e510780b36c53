"""The OpenAPI document says what the server does: schemathesis generates requests from it and
runs them against the running hub-api, offline and bounded, and finds no 5xx and nothing the
document does not declare (statuses, content types, response bodies)."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_processes import THROUGH_GATEWAY, RunningApi, running_api

from tests.support.signing import SECRETS_ENV

MAX_EXAMPLES = 40
# The coverage phase (every boundary and negation of the schema, ~300 requests) takes about 2 s;
# fuzzing then runs until this budget is spent.
MAX_TIME_S = 10
# A request generated from the schema carries no valid signature, so a webhook that is valid by
# the schema is still (rightly) refused with 401: "valid data is accepted" cannot hold there.
EXCLUDED_CHECKS = "positive_data_acceptance"


@pytest.fixture(scope="module")
def every_provider_api(
    amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningApi]:
    with running_api(amqp_url, tmp_path_factory.mktemp("openapi"), **SECRETS_ENV) as running:
        yield running


def test_schemathesis_finds_no_server_error_and_no_departure_from_the_document(
    every_provider_api: RunningApi, tmp_path: Path
):
    headers = [arg for name, value in THROUGH_GATEWAY.items() for arg in ("-H", f"{name}: {value}")]
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{every_provider_api.url}/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            EXCLUDED_CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--phases",
            "examples,coverage,fuzzing",
            "--seed",
            "12",
            "--generation-deterministic",
            "--request-timeout",
            "10",
            "--max-time",
            str(MAX_TIME_S),
            "--no-color",
            *headers,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,  # its cache and reports stay out of the repository
    )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
