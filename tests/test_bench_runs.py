"""The benchmarks still run against today's code, at toy size.

Benchmarks are not in the suite as figures (no timed assertion); but a bench broken by a change
elsewhere (a queue renamed, a signature changed) is found here, not by the next engineer who
profiles with it. Each section is run as `make bench` runs it, and its results file must count
the work it was given: every event consumed, every order accepted and finished, every deadline
published, every fast notification delivered.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
RUN_TIMEOUT_S = 300


def run_bench(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env={**os.environ, "COLUMNS": "200"},  # rich wraps the "results:" line otherwise
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    written = re.findall(r"results: (\S+\.json)", done.stdout)
    assert written, done.stdout[-2000:]
    return json.loads(Path(written[-1]).read_text())


def test_consumer_bench_consumes_every_event_in_each_case() -> None:
    result = run_bench("--only", "consumer", "--events", "100")
    cases = {case["case"]: case for case in result["cases"]}
    assert set(cases) == {"plain (limit)", "FastStream", "Hookhub"}
    for case in cases.values():
        assert case["events"] == 100
        assert case["cpu_s"] > 0


def test_e2e_bench_finishes_every_order_it_sent() -> None:
    result = run_bench(
        "--only", "e2e", "--rates", "20", "--duration-s", "2", "--warmup-s", "0", "--drain-s", "20"
    )
    (rate,) = result["rates"]
    assert rate["accepted"] == 2 * rate["orders"] > 0
    assert rate["errors"] == {}
    assert rate["unfinished"] == {"effect": 0, "notified": 0}
    assert rate["failed"] == {}


def test_deadlines_bench_measures_the_deadlines_it_published() -> None:
    result = run_bench("--only", "deadlines", "--deadlines", "200")
    assert result["deadlines"] == 200
    assert result["queue"].startswith("hookhub.payments.deadline.order_payment.")


def test_endpoints_bench_delivers_every_fast_notification() -> None:
    result = run_bench("--only", "endpoints", "--duration-s", "1", "--warmup-s", "0")
    assert len(result["cases"]) == 2
    for case in result["cases"]:
        assert case["fast_arrived"] == case["fast_published"] > 0
