"""The one-off commands (`hookhub status`, `hookhub dlq`, `hookhub topology declare`) connect to
the first address of HOOKHUB_AMQP_URL that answers, as the services do: with a cluster's first
node down they still work."""

import subprocess
import sys

from tests.support.broker import fresh_vhost
from tests.support.net import free_port
from tests.support.settings import hub_env


def hookhub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "hookhub.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_status_and_declare_reach_the_second_address_when_the_first_is_down():
    with fresh_vhost() as amqp_url:
        vhost = amqp_url.rsplit("/", 1)[1]
        down = f"amqp://guest:guest@127.0.0.1:{free_port()}/{vhost}"  # nothing listens there
        env = hub_env(f"{down},{amqp_url}", HOOKHUB_CONNECT_TIMEOUT_S="2")

        declared = hookhub(env, "topology", "declare")
        status = hookhub(env, "status")

        assert declared.returncode == 0, declared.stderr
        assert "hookhub.payments" in declared.stdout
        assert status.returncode == 0, status.stderr
        assert "hookhub.payments" in status.stdout


def test_every_address_down_is_named_in_one_line_without_its_password():
    ports = (free_port(), free_port())
    urls = [f"amqp://guest:s3cret@127.0.0.1:{port}/" for port in ports]
    env = hub_env(",".join(urls), HOOKHUB_CONNECT_TIMEOUT_S="1")

    status = hookhub(env, "status")

    assert status.returncode == 1
    for port in ports:
        assert f"amqp://guest:***@127.0.0.1:{port}/" in status.stderr
    assert "s3cret" not in status.stderr + status.stdout
