"""The drain: a separate process that empties the benchmark's queue and counts what it took.

Without it the queue would grow for the whole run and the broker would slow down as it pages
messages to disk, so later cases would be measured against a fuller broker than earlier ones.
Every case drains the same way, in its own process so that it never shares a core's event loop
with a publisher under test.

Run as a script it is the drain itself: it prints `ready`, then answers each line on stdin with
the number of messages taken so far, and exits at the end of stdin. Imported, `Drain` starts and
talks to that process.
"""

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiormq
import uvloop

COUNT_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


async def _drain(amqp_url: str, queue_name: str) -> None:
    # aiormq (under aio-pika) directly, acking nothing: the drain runs beside every case, and
    # without aio-pika's message wrapper or acks it takes about a quarter less CPU away from
    # the case being measured. With no_ack the broker forgets each message as it sends it.
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        taken = 0

        async def take(_message: object) -> None:
            nonlocal taken
            taken += 1

        await channel.basic_consume(queue_name, take, no_ack=True)
        loop = asyncio.get_running_loop()
        stdin = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
        print("ready", flush=True)
        while await stdin.readline():
            print(taken, flush=True)
    finally:
        await connection.close()


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    amqp_url, queue_name = sys.argv[1:3]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_drain(amqp_url, queue_name))


class Drain:
    """The drain process, seen from the runner: `async with Drain(url, queue, log) as drain`."""

    def __init__(self, amqp_url: str, queue: str, log_path: Path) -> None:
        self.args = [sys.executable, str(Path(__file__).resolve()), amqp_url, queue]
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._log = open(log_path, "wb")  # closed in __aexit__

    async def __aenter__(self) -> "Drain":
        self.process = await asyncio.create_subprocess_exec(
            *self.args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
        )
        try:
            line = await self._readline(READY_TIMEOUT_S)
            if line != "ready":
                raise RuntimeError(f"drain did not start (said {line!r}); see {self.log_path}")
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def _readline(self, timeout_s: float) -> str:
        assert self.process and self.process.stdout
        async with asyncio.timeout(timeout_s):
            return (await self.process.stdout.readline()).decode().strip()

    async def count(self) -> int:
        """Messages taken so far."""
        assert self.process and self.process.stdin
        self.process.stdin.write(b"\n")
        await self.process.stdin.drain()
        line = await self._readline(COUNT_TIMEOUT_S)
        if not line.isdigit():
            raise RuntimeError(f"drain stopped (said {line!r}); see {self.log_path}")
        return int(line)

    async def settled_count(self, settle_s: float = 0.3, timeout_s: float = 30.0) -> int:
        """The count once it has stopped moving: call it after the queue is empty, so that
        messages already sent to the drain but not yet counted are included."""
        deadline = time.monotonic() + timeout_s
        last = await self.count()
        while time.monotonic() < deadline:
            await asyncio.sleep(settle_s)
            now = await self.count()
            if now == last:
                return now
            last = now
        return last

    async def __aexit__(self, *_: object) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            if process.stdin:
                process.stdin.close()  # end of stdin: the drain exits by itself
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        self._log.close()


if __name__ == "__main__":
    main()
