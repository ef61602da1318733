"""End-to-end comparisons at small scale: the 422 path, determinism, conservation, capacity reasons."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from controller.research.api_server import POD_UPDATE_FORBIDDEN
from controller.research.compare import ComparisonResult, run_comparison
from controller.research.report import results_json, summary_object, write_outputs
from controller.research.scenarios import ScenarioName

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def admission_conflict() -> ComparisonResult:
    result, _ = run_comparison(ScenarioName.ADMISSION_CONFLICT, seed=1, scale=0.1)
    return result


def test_annotation_pods_stick_on_the_422_and_crd_pods_do_not(admission_conflict: ComparisonResult) -> None:
    base = admission_conflict.runs["annotation"].metrics
    crd = admission_conflict.runs["crd"].metrics
    with_422 = {reason: n for reason, n in base.stuck_reasons.items() if POD_UPDATE_FORBIDDEN in reason}
    assert with_422, base.stuck_reasons
    assert sum(with_422.values()) == base.pods_stuck
    assert all(
        r.startswith("BranchENIAnnotationFailed: failed to annotate pod with branch ENI details: ")
        for r in with_422
    )
    assert base.invalid_422 > 0 and base.pod_writes > 0
    # RC retries a 422 pod 1 + 5 times, making a new branch ENI each time (3 calls) and deleting it.
    assert base.ec2_calls["CreateNetworkInterface"] > base.pods_total
    assert crd.pods_stuck == 0 and crd.pods_ready == crd.pods_total
    assert crd.invalid_422 == 0 and crd.pod_writes == 0


def test_the_stuck_pods_are_exactly_the_ones_the_policy_selected(
    admission_conflict: ComparisonResult,
) -> None:
    base = admission_conflict.runs["annotation"].metrics
    # exact per-pod text, without kubectl's "The " in front (a real server's Status message has none)
    assert all(
        f'details: Pod "{p.pod.split("/")[1]}" is invalid' in p.stuck_reason
        for p in base.stuck_pods
        if p.stuck_reason
    )
    assert base.pods_ready + base.pods_stuck == base.pods_total


def test_json_summary_has_the_fields_the_issue_asks_for(admission_conflict: ComparisonResult) -> None:
    summary = summary_object(admission_conflict)
    for name in ("annotation", "crd"):
        approach = summary["approaches"][name]
        for key in ("pods_ready", "pods_stuck", "stuck_reasons", "p99_ready_s", "pod_writes", "ec2_calls"):
            assert key in approach
    json.dumps(summary)


def test_same_seed_gives_identical_results_json_and_another_seed_does_not() -> None:
    first, _ = run_comparison(ScenarioName.CONTROLLER_RESTART, seed=3, scale=0.05)
    second, _ = run_comparison(ScenarioName.CONTROLLER_RESTART, seed=3, scale=0.05)
    other, _ = run_comparison(ScenarioName.CONTROLLER_RESTART, seed=4, scale=0.05)
    assert results_json(first) == results_json(second)
    assert results_json(first) != results_json(other)


def test_results_json_is_identical_across_processes_with_different_hash_seeds(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from controller.research.compare import run_comparison\n"
        "from controller.research.report import results_json\n"
        "r, _ = run_comparison('admission-conflict', seed=7, scale=0.05)\n"
        "sys.stdout.write(results_json(r))\n"
    )
    outputs = []
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True
        )
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert '"scenario": "admission-conflict"' in outputs[0]


@pytest.mark.parametrize("scenario", list(ScenarioName))
def test_conservation_every_pod_ready_or_stuck_with_a_reason_and_enis_balance(scenario: ScenarioName) -> None:
    scale = 0.5 if scenario is ScenarioName.PREFIX_EXHAUSTION else 0.05
    result, _ = run_comparison(scenario, seed=2, scale=scale)
    for name, run in result.runs.items():
        metrics = run.metrics
        assert metrics.pods_total > 0, name
        assert metrics.pods_ready + metrics.pods_stuck == metrics.pods_total, name
        assert all(p.stuck_reason for p in metrics.stuck_pods), name
        assert sum(metrics.stuck_reasons.values()) == metrics.pods_stuck, name
        enis = metrics.enis
        assert enis.created - enis.deleted == enis.in_use + enis.pooled + enis.leaked, (name, enis)
        assert len(metrics.ready_times_s) == metrics.pods_ready


def test_prefix_exhaustion_waiting_pods_show_their_capacity_reason_and_all_get_ready() -> None:
    result, _ = run_comparison(ScenarioName.PREFIX_EXHAUSTION, seed=1, scale=0.5, crd_prefix_fallback=False)
    crd = result.runs["crd"]
    assert crd.workload.waiting_at_checkpoint, "the scenario must leave pods waiting before space frees"
    assert crd.workload.waiting_with_capacity_reason == crd.workload.waiting_at_checkpoint
    assert crd.metrics.pods_ready == crd.metrics.pods_total
    baseline = result.runs["annotation"]
    assert baseline.workload.waiting_with_capacity_reason == 0  # the CNI's generic message only


@pytest.fixture(scope="module")
def controller_restart() -> ComparisonResult:
    result, _ = run_comparison(ScenarioName.CONTROLLER_RESTART, seed=1, scale=0.1)
    return result


def test_rc_restart_leaks_the_branch_enis_it_had_created_but_not_associated(
    controller_restart: ComparisonResult,
) -> None:
    base = controller_restart.runs["annotation"].metrics
    assert base.pods_ready == base.pods_total  # pods recover: unannotated pods are requeued
    assert base.enis.leaked > 0  # only the 30-minute sweep (two sightings) would find them
    assert base.enis.balanced


def test_crd_recovers_every_pod_after_a_restart(controller_restart: ComparisonResult) -> None:
    crd = controller_restart.runs["crd"].metrics
    assert crd.pods_ready == crd.pods_total, crd.stuck_reasons


def test_out_dir_gets_results_report_and_plots(tmp_path: Path, admission_conflict: ComparisonResult) -> None:
    _, performance = run_comparison(ScenarioName.ADMISSION_CONFLICT, seed=1, scale=0.02)
    written = {p.name for p in write_outputs(admission_conflict, performance, tmp_path)}
    assert {"results.json", "performance.json", "report.md", "cdf_time_to_ready.png"} <= written
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "12 QPS / burst 18" in report and "release gate" in report
    assert json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["seed"] == 1
    assert "wall" not in (tmp_path / "results.json").read_text(encoding="utf-8")
    assert (tmp_path / "pods_ready_over_time.png").stat().st_size > 1000


def test_parallel_processes_give_the_same_results_as_one_process() -> None:
    serial, _ = run_comparison(ScenarioName.BATCH_SCALE_UP, seed=5, scale=0.04)
    parallel, performance = run_comparison(ScenarioName.BATCH_SCALE_UP, seed=5, scale=0.04, parallel=True)
    assert results_json(serial) == results_json(parallel)
    assert set(performance.wall_s) == {"annotation", "crd"} and performance.peak_rss_mb > 0


def test_batch_scale_up_reports_the_simulated_figure_beside_the_published_gate() -> None:
    result, _ = run_comparison(ScenarioName.BATCH_SCALE_UP, seed=1, scale=0.05)
    gate = next(t for t in result.targets if "release gate" in t.target)
    assert "published release gate: 1000 pods within 300 s" in gate.measured
    assert gate.met is None  # 50 pods is not the gate's 1,000: no verdict at this scale


def test_the_text_table_fits_a_terminal_and_the_report_keeps_the_whole_reason(
    admission_conflict: ComparisonResult,
) -> None:
    from controller.research.report import render_markdown, render_table

    table = render_table(admission_conflict).split("\n")
    rows = table[: table.index("")]  # after the table: prose (EC2 client notes, targets)
    assert max(len(line) for line in rows) <= 120
    assert any(
        "stuck:" in line and line.rstrip().endswith(("0", "1", "2", "3", "4", "5", "6", "7", "8", "9"))
        for line in rows
    )
    report = render_markdown(admission_conflict, None)
    assert "pod updates may not change fields other than" in report


def test_with_the_prefix_fallback_no_pod_waits_and_netalloc_knew_before_the_first_was_hit() -> None:
    result, _ = run_comparison(ScenarioName.PREFIX_EXHAUSTION, seed=1, scale=0.5)
    crd, baseline = result.runs["crd"], result.runs["annotation"]
    assert crd.metrics.pods_ready == crd.metrics.pods_total
    assert crd.workload.waiting_at_checkpoint == 0
    known, hit = crd.metrics.extra["exhaustion_known_at_s"], crd.metrics.extra["first_prefix_shortage_at_s"]
    assert isinstance(known, float | int) and isinstance(hit, float | int) and known <= hit
    assert baseline.metrics.extra["exhaustion_known_at_s"] == "never"
    knew = [t for t in result.targets if t.target.startswith("prefix-exhaustion: knew")]
    assert [t.met for t in knew] == [False, True]  # annotation, crd
