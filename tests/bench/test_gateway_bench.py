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
        assert re.search(r"three-destination split p50 +[\d.]+ ms: [+-][\d.]+ ms over one destination", section)


def test_the_routing_bench_prints_one_destination_against_a_split():
    result = subprocess.run([sys.executable, "bench/routing.py", "--calls", "400"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)

    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert re.search(r"single +read \+ plan \+ account p50 +[\d.]+ µs", result.stdout)
    assert re.search(r"three-destination split: [+-][\d.]+ µs p50 over one destination", result.stdout)
