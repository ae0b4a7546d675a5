"""bench/streams.py with small numbers: streams relayed as `make run` serves them, every figure printed, none failed."""

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
NUMBER = r"[\d.]+"


def test_a_short_streams_bench_prints_every_figure_and_fails_no_stream(tmp_path):
    result = subprocess.run(
        [sys.executable, "bench/streams.py", "--quick", "--json", str(tmp_path / "streams.json")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout

    assert result.returncode == 0, output + result.stderr[-2000:]
    section = output.split("concurrency 8:", 1)[1]
    for name in ("direct", "gateway"):
        assert re.search(rf"{name} +{NUMBER} streams/s  first chunk p50 >?=?{NUMBER} ms p99 >?=?{NUMBER} ms  "
                         rf"stream p50 {NUMBER} s  failed 0 of [1-9]\d*  cut \d+  waiting at end \d+  "
                         rf"longest wait {NUMBER} s", section), section
    assert re.search(rf"ratio {NUMBER}; first-chunk overhead p50 [+-]{NUMBER} ms, p99 [+-]{NUMBER} ms", section)
    for probe in ("/healthz", "list page"):
        assert re.search(rf"probe {re.escape(probe)} +p50 {NUMBER} ms  p99 {NUMBER} ms  max {NUMBER} ms  "
                         rf"failed 0 of [1-9]\d*", section), probe
    assert re.search(rf"server CPU {NUMBER}% of a core: {NUMBER} ms/stream, {NUMBER} ms/chunk; peak RSS {NUMBER} MB, "
                     rf"\d+ threads; client connections per process [\d/]+; database connections at peak [1-9]\d*",
                     section)
    assert re.search(r"CPU % of a core, direct / gateway: stub \d+ / \d+, client \d+ / \d+, bench \d+ / \d+, "
                     r"others \d+ / \d+, machine \d+ / \d+", section)
    assert "failed:" not in section

    figures = json.loads((tmp_path / "streams.json").read_text())
    level = figures["levels"][0]
    assert level["concurrency"] == 8
    assert level["direct"]["failed"] == level["gateway"]["failed"] == 0
    assert level["gateway"]["completed_in_window"] > 0 and level["gateway"]["server_ms_per_chunk"] > 0

    # The same figures as docs/benchmarks.md shows them (bench/surfaces.py --streams).
    from bench import streams

    row = streams.table([("make run", figures)]).splitlines()[2]
    assert row.startswith("| make run | 8 | ") and " | 0 of " in row
