"""The controller burst benchmark, small: it runs as a user would run it, and what it counts holds.

Times are not asserted (they are the benchmark's figures); what one allocation writes is behaviour:
the PNA create and one status patch, no Event, nothing on a Pod.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = {
    "allocations_per_s",
    "p50_s",
    "p99_s",
    "cpu_ms_per_alloc",
    "writes_per_alloc",
    "requests_per_alloc",
    "pod_writes",
    "peak_rss_mib",
    "baseline_rss_mib",
    "log_lines_per_alloc",
    "pool_status_writes_after",
}

pytestmark = pytest.mark.slow


def test_a_small_burst_prints_its_figures_and_writes_two_requests_per_pod(tmp_path: Path) -> None:
    pods = 40
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "benchmarks" / "controller_burst.py")),
            *("--pods", str(pods), "--nodes", "2", "--output", "json", "--workdir", str(tmp_path)),
        ],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert set(figures) >= KEYS, sorted(KEYS - set(figures))
    assert figures["pods"] == pods and figures["branch_pods"] > 0
    per_alloc = figures["requests_per_alloc"]
    assert per_alloc["create podnetworkallocations"] == 1.0, per_alloc
    assert per_alloc["patch podnetworkallocations/status"] == 1.0, per_alloc
    assert "create events" not in per_alloc, per_alloc
    assert not [label for label in per_alloc if "(" in label], per_alloc  # no refused request
    assert figures["pod_writes"] == 0
    assert figures["pool_status_writes_after"] <= 2 * figures["nodes"]  # once per pool, not per pod
    assert figures["log_lines_per_alloc"] <= 1.0  # one INFO line per change of state, none per event
    assert figures["cpu_ms_per_alloc"] > 0 and figures["peak_rss_mib"] >= figures["baseline_rss_mib"] > 0
    logs = (tmp_path / "burst" / "controller.log").read_text()
    assert "Handler 'pods' succeeded" not in logs
    assert logs.count("-> Allocated") == pods
