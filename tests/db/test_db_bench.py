"""The database benchmark runs end to end (at a toy scale) and prints its figures; no timing is asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_prints_median_and_p95_for_each_operation():
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_db",
            "--variants",
            "12",
            "--reviews",
            "40",
            "--repeats",
            "5",
            "--no-postgres",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "12 variants, 36 traces, 36 proposals (6 pending), 40 reviews" in done.stdout
    for operation in ("queue (list 20)", "next item", "save review"):
        assert re.search(rf"{re.escape(operation)}\s+5\s+\d+\.\d\d\s+\d+\.\d\d", done.stdout), done.stdout
