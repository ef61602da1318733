"""benchmarks/cni_add.py runs and reports its figures (a few samples; nothing about speed is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.cni.conftest import needs_root

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "cni_add.py"


@needs_root
def test_cni_add_benchmark_reports_add_and_del_percentiles() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), "--samples", "3", "--mode", "BranchENI", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout)
    assert figures["samples"] == 3 and figures["mode"] == "BranchENI"
    for key in ("add_p50_s", "add_p99_s", "del_p50_s", "del_p99_s"):
        assert 0 < figures[key] < 60, figures
    assert figures["add_p50_s"] <= figures["add_p99_s"]
