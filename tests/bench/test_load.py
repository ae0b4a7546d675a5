"""bench/load.py with small numbers: the served app under concurrent reads, writes and gateway calls, no error."""

import re
import subprocess
import sys
from pathlib import Path

from bench.load import KINDS

REPO = Path(__file__).resolve().parent.parent.parent


def test_a_short_load_run_makes_no_error_and_prints_every_figure():
    result = subprocess.run(
        [sys.executable, "bench/load.py", "--seconds", "4", "--concurrency", "3"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout

    assert result.returncode == 0, output + result.stderr[-2000:]
    assert re.search(r"^errors: 0$", output, re.MULTILINE)
    for kind in KINDS:
        assert re.search(rf"^{kind} +\d+ +[\d.]+ +[\d.]+$", output, re.MULTILINE), kind
    assert re.search(r"^total: \d+ requests in [\d.]+ s = [\d.]+ requests/s$", output, re.MULTILINE)
    assert re.search(r"^server CPU: [\d.]+ ms/request$", output, re.MULTILINE)
    assert re.search(r"^server memory \(RSS, master \+ \d+ workers\): start [\d.]+ MB, end [\d.]+ MB "
                     r"\([+-][\d.]+%\): flat within 10%$", output, re.MULTILINE)
    assert "load average" in output
