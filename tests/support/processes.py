"""Hub commands (`hookhub api`, `hookhub consume <name>`, ...) as real processes under test."""

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.net import free_port
from tests.support.settings import hub_env


class HubProcess:
    """A hookhub command running as a real process, with its log kept for assertions."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hookhub.cli", *args],
            env=env,
            stdout=self._log,
            stderr=self._log,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int | None = None) -> int:
        if self.process.poll() is None:
            if sig is None:
                self.process.terminate()
            else:
                self.process.send_signal(sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def wait_http_ready(url: str, timeout_s: float = 20, process: HubProcess | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process and process.process.poll() is not None:
            raise RuntimeError(f"process exited early:\n{process.log}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(
        f"{url} not ready after {timeout_s}s" + (f":\n{process.log}" if process else "")
    )


def start_api(amqp_url: str, tmp_path: Path, **env: str) -> tuple[HubProcess, str]:
    port = free_port()
    process = HubProcess(
        ["api", "--port", str(port)], hub_env(amqp_url, **env), tmp_path / f"api-{port}.log"
    )
    base_url = f"http://127.0.0.1:{port}"
    return process, base_url


def start_consumer(name: str, env: dict[str, str], log_dir: Path) -> tuple[HubProcess, str]:
    """`hookhub consume <name>` as a real process; returns it and its /readyz URL."""
    port = free_port()
    process = HubProcess(
        ["consume", name, "--probe-port", str(port)], env, log_dir / f"{name}-{port}.log"
    )
    return process, f"http://127.0.0.1:{port}/readyz"


@contextmanager
def running_consumer(name: str, env: dict[str, str], log_dir: Path) -> Iterator[HubProcess]:
    """`hookhub consume <name>`, ready when the block starts and stopped when it ends."""
    consumer, readyz = start_consumer(name, env, log_dir)
    try:
        wait_http_ready(readyz, process=consumer)
        yield consumer
    finally:
        consumer.stop()
