"""`netalloc sandbox --output json`: the summary fields, from a real run."""

import json

import pytest
from typer.testing import CliRunner

from controller.cli import app

pytestmark = pytest.mark.slow


def test_sandbox_json_summary_shows_everything_allocated_released_and_no_pod_writes() -> None:
    result = CliRunner().invoke(app, ["sandbox", "--nodes", "2", "--pods", "12", "--output", "json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {
        "pods",
        "allocated",
        "released",
        "leaked_enis",
        "pod_writes",
        "p99_allocation_s",
    } <= summary.keys()
    assert summary["pods"] == summary["allocated"] == summary["released"] == 12
    assert summary["leaked_enis"] == 0
    assert summary["pod_writes"] == 0
    assert summary["p99_allocation_s"] > 0
