"""`netalloc compare` as a user runs it (through the typer app)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from controller.research.cli import app


def test_json_output_names_every_required_metric_per_approach(tmp_path: Path) -> None:
    runner = CliRunner()
    outcome = runner.invoke(
        app,
        [
            "compare",
            "--scenario",
            "admission-conflict",
            "--seed",
            "1",
            "--scale",
            "0.05",
            "--output",
            "json",
            "--serial",
            "--out",
            str(tmp_path),
        ],
    )
    assert outcome.exit_code == 0, outcome.output
    first_line = outcome.stdout.splitlines()[0]
    data = json.loads(first_line)
    annotation = data["approaches"]["annotation"]
    crd = data["approaches"]["crd"]
    for approach in (annotation, crd):
        assert {"pods_ready", "pods_stuck", "stuck_reasons", "p99_ready_s", "pod_writes", "ec2_calls"} <= set(
            approach
        )
    assert annotation["pods_stuck"] > 0 and crd["pods_stuck"] == 0
    assert (tmp_path / "report.md").is_file() and (tmp_path / "results.json").is_file()


def test_table_output_and_unknown_scenario() -> None:
    runner = CliRunner()
    outcome = runner.invoke(app, ["compare", "--scenario", "batch-scale-up", "--scale", "0.02", "--serial"])
    assert outcome.exit_code == 0, outcome.output
    assert "pods network-ready" in outcome.stdout and "annotation" in outcome.stdout
    assert "simulation wall time" in outcome.stdout
    bad = runner.invoke(app, ["compare", "--scenario", "no-such-thing"])
    assert bad.exit_code != 0
