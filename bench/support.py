"""What every benchmark section needs: a private vhost, server processes it owns, and wrk.

Everything here cleans up after itself on any exit (an exception, Ctrl-C, SIGTERM): the vhost is
deleted and every process started is stopped, so a benchmark run leaves the shared broker and
the machine as it found them.
"""

import asyncio
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import aio_pika

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent
DEFAULT_ADMIN_URL = "amqp://guest:guest@127.0.0.1:5672/"

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
RABBITMQCTL_TIMEOUT_S = 60.0


class BenchError(RuntimeError):
    """An expected failure of the harness, with what to do about it; printed without a traceback."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BenchError(f"`{name}` is not installed: {install_hint}")
    return path


def _rabbitmqctl(*args: str) -> None:
    ctl = require_tool("rabbitmqctl", "install RabbitMQ (apt-get install rabbitmq-server)")
    result = subprocess.run(
        [ctl, "-q", *args], capture_output=True, text=True, timeout=RABBITMQCTL_TIMEOUT_S
    )
    if result.returncode != 0:
        raise BenchError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip()}")


@contextmanager
def bench_vhost(admin_url: str = DEFAULT_ADMIN_URL) -> Iterator[str]:
    """A fresh vhost on the shared broker, deleted afterwards; yields its AMQP URL.

    The broker is shared with other engineers' test runs: the benchmark's exchanges and queues
    live only in this vhost, and nothing outside it is touched.
    """
    vhost = f"hookhub-bench-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield admin_url.rstrip("/") + "/" + vhost
    finally:
        _rabbitmqctl("delete_vhost", vhost)


async def queue_depth(connection: aio_pika.abc.AbstractConnection, queue: str) -> int:
    """Ready messages in a queue (a passive declare, on a channel of its own: a missing queue
    closes the channel)."""
    async with connection.channel() as channel:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Process:
    """A child process in its own session, so Ctrl-C reaches only the runner, which then stops
    its children in order instead of letting them die mid-request."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], log_path: Path):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            list(args),
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def failure(self, what: str) -> BenchError:
        return BenchError(
            f"{self.name} {what}; last lines of {self.log_path}:\n{_tail(self.log_path)}"
        )

    async def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.popen.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._log.close()


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


@asynccontextmanager
async def serve(
    name: str, args: Sequence[str], env: dict[str, str], ready_url: str, log_path: Path
) -> AsyncIterator[Process]:
    """Run a server until the block ends; returns once `ready_url` answers 200."""
    process = Process(name, args, env, log_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while await asyncio.to_thread(_http_status, ready_url) != 200:
            if process.exited():
                raise process.failure(f"exited with code {process.popen.returncode} while starting")
            if time.monotonic() > deadline:
                raise process.failure(f"was not ready at {ready_url} within {READY_TIMEOUT_S:g}s")
            await asyncio.sleep(0.1)
        yield process
    finally:
        await process.stop()


def latency_ms(samples_s: Sequence[float]) -> dict[str, float]:
    """How many, median, p99 and max of a list of durations in seconds, in milliseconds."""
    ordered = sorted(samples_s)
    return {
        "n": len(ordered),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[max(int(len(ordered) * 0.99) - 1, 0)] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def child_env(**extra: str) -> dict[str, str]:
    """This environment without any HOOKHUB_* setting that could point a server elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKHUB_")}
    env.update(extra)
    return env


@dataclass(frozen=True, slots=True)
class Options:
    """What every section runs with; `bench/run.py --help` describes each."""

    duration_s: int
    warmup_s: int
    connections: int
    body_bytes: int
    admin_url: str
    events: int  # messages each consumer case works through
    rates: tuple[int, ...] = ()  # e2e: offered orders per second, one after the other
    drain_s: float = 30.0  # e2e: how long the hub may take to catch up after each rate
    deadlines: int = 200_000  # deadlines: how many pending deadlines are measured
