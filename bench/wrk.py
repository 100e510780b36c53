"""Load from wrk: one POST, over and over, on a fixed number of keep-alive connections.

wrk runs with one thread (`-t1`): on a 2-core machine the server under test gets one core and
wrk, the broker and the drain share the other. wrk's single epoll thread drives 64 connections
at well over the rates measured here, so it is not the bottleneck; a second thread would only
take CPU away from the server. wrk is closed-loop: each connection sends its next request when
the previous answer arrives, so 64 connections means at most 64 requests in flight, the same as
the raw case's 64 publishers.
"""

import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from report import CaseResult
from support import BENCH_DIR, BenchError, child_env, require_tool

SCRIPT = BENCH_DIR / "post.lua"
MARKER = "WRK_JSON "
# Long enough that a slow answer (hub-api gives up on a confirm after 5 s and answers 503) is
# counted by its status and latency rather than as a timeout of wrk's own.
REQUEST_TIMEOUT_S = 10
EXIT_GRACE_S = 30


@dataclass(frozen=True, slots=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str]


def wrk_path() -> str:
    return require_tool("wrk", "install it with `apt-get install wrk`")


def parse(output: str) -> CaseResult:
    """The figures from the line post.lua's done() prints."""
    lines = [line for line in output.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise BenchError(f"wrk printed no {MARKER.strip()} line:\n{output}")
    figures = json.loads(lines[-1][len(MARKER) :])
    errors = {
        kind: figures[key]
        for kind, key in (
            ("non-2xx", "http_error"),
            ("connect", "connect"),
            ("read", "read"),
            ("write", "write"),
            ("timeout", "timeout"),
        )
        if figures[key]
    }
    return CaseResult(
        ok=figures["requests"] - figures["http_error"],
        duration_s=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        max_ms=figures["max_us"] / 1000,
        errors=errors,
    )


async def load(request: Request, connections: int, duration_s: int) -> tuple[CaseResult, str]:
    """Run wrk once; returns the figures and wrk's own report (with --latency)."""
    with tempfile.TemporaryDirectory(prefix="hookhub-bench-") as tmp:
        body_file, headers_file = Path(tmp) / "body", Path(tmp) / "headers"
        body_file.write_bytes(request.body)
        headers_file.write_text("".join(f"{k}: {v}\n" for k, v in request.headers.items()))
        process = await asyncio.create_subprocess_exec(
            wrk_path(),
            "-t1",
            f"-c{connections}",
            f"-d{duration_s}s",
            f"--timeout={REQUEST_TIMEOUT_S}s",
            "--latency",
            "-s",
            str(SCRIPT),
            request.url,
            env=child_env(
                BENCH_WRK_BODY_FILE=str(body_file), BENCH_WRK_HEADERS_FILE=str(headers_file)
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(duration_s + EXIT_GRACE_S):
                stdout, _ = await process.communicate()
        except TimeoutError:
            raise BenchError(
                f"wrk did not finish {EXIT_GRACE_S}s after its {duration_s}s run"
            ) from None
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    output = stdout.decode(errors="replace")
    if process.returncode != 0:
        raise BenchError(f"wrk exited with code {process.returncode}:\n{output}")
    return parse(output), output
