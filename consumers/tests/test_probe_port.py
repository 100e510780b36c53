"""A consumer whose probe port is taken says so and exits, rather than running where no probe
can see it."""

import socket
import subprocess
import sys
from pathlib import Path

from tests.support.settings import hub_env


def test_a_taken_probe_port_stops_the_consumer_with_a_clear_error(
    amqp_url: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = hub_env(amqp_url, HOOKHUB_STORE_URL=f"sqlite:///{tmp_path}/hookhub.db")
        result = subprocess.run(
            [sys.executable, "-m", "hookhub.cli", "consume", "payments", "--probe-port", str(port)],
            env={**env, "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1, result.stderr
    assert f"the probes could not listen on port {port}" in result.stderr
    assert "--probe-port" in result.stderr
