"""bench/gateway.py with small numbers: it serves the gateway as `make run` does and prints every figure."""

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def test_a_short_gateway_bench_prints_both_modes_figures():
    result = subprocess.run(
        [sys.executable, "bench/gateway.py", "--requests", "64", "--rounds", "2", "--concurrency", "4"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout

    assert result.returncode == 0, output + result.stderr[-2000:]
    for concurrency in (1, 4):
        section = output.split(f"concurrency {concurrency}:", 1)[1]
        assert re.search(r"direct +p50 +[\d.]+ ms +p99 +[\d.]+ ms +\d+ req/s", section)
        assert re.search(r"gateway +p50 +[\d.]+ ms +p99 +[\d.]+ ms +\d+ req/s", section)
        assert re.search(r"overhead p50 [+-][\d.]+ ms, p99 [+-][\d.]+ ms; throughput ratio [\d.]+; "
                         r"gateway CPU [\d.]+ ms/request", section)
        assert re.search(r"overhead p50 round by round: [+-][\d.]+ to [+-][\d.]+ ms", section)
