"""`netalloc compare` with SharedENI on the crd side (issue 12): the targets, the shared/branch/baseline
line, and the fallback scenario where a node has fewer free ENI slots than group sets."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from controller.research.cli import app
from controller.research.compare import APPROACHES, CRD_BRANCH, ComparisonResult, run_comparison
from controller.research.crd_allocator import PODS_BRANCH_KEY, PODS_FALLBACK_KEY, PODS_SHARED_KEY
from controller.research.report import render_markdown, render_table, summary_object
from controller.research.scenarios import ScenarioName, scenario_params

SHARED_TARGETS = (
    "shared ENI: crd p99 time-to-network-ready ≤ 20 s",
    "shared ENI: crd p99 ≥ 10× lower than the baseline's",
    "shared ENI: crd makes ≤ 3 mutating EC2 calls per node",
)


@pytest.fixture(scope="module")
def shared_batch() -> ComparisonResult:
    result, _ = run_comparison(ScenarioName.BATCH_SCALE_UP, seed=1, scale=0.1, crd_shared_eni=True)
    return result


def test_shared_eni_adds_a_branch_crd_run_and_the_json_carries_its_targets_and_line(
    shared_batch: ComparisonResult,
) -> None:
    assert list(shared_batch.runs) == [*APPROACHES, CRD_BRANCH]
    summary = json.loads(json.dumps(summary_object(shared_batch)))
    targets = {t["target"]: t for t in summary["targets"]}
    for name in SHARED_TARGETS:
        assert isinstance(targets[name]["met"], bool), targets[name]
    # the targets of the two-approach comparison are still computed with the extra run present
    assert "baseline matches RC's published release gate" in targets
    assert {
        f"ENI conservation ({n}): created − deleted = in use + pooled + leaked" for n in summary["approaches"]
    } <= set(targets)
    rows = {row["approach"]: row for row in summary["shared_eni_comparison"]["rows"]}
    assert list(rows) == ["crd", CRD_BRANCH, "annotation"]
    for name, row in rows.items():
        metrics = summary["approaches"][name]
        for key in ("p50_ready_s", "p99_ready_s", "mutating_calls_per_pod_start"):
            assert row[key] == metrics[key], (name, key)
        assert row["mutating_calls_per_node"] == round(metrics["ec2_mutating_calls"] / 5, 2)
    p99 = summary["approaches"]["crd"]["p99_ready_s"]
    assert targets[SHARED_TARGETS[0]]["met"] is (p99 <= 20.0)


def test_shared_crd_makes_at_most_three_mutating_calls_per_node_and_fewer_than_branch_crd(
    shared_batch: ComparisonResult,
) -> None:
    shared, branch = shared_batch.runs["crd"].metrics, shared_batch.runs[CRD_BRANCH].metrics
    nodes = shared_batch.params.nodes
    assert shared.ec2_mutating_calls <= 3 * nodes
    assert shared.ec2_mutating_calls < branch.ec2_mutating_calls
    assert "AssociateTrunkInterface" not in shared.ec2_calls  # no trunk: enable_pod_eni off
    per_node = next(t for t in shared_batch.targets if t.target == SHARED_TARGETS[2])
    assert per_node.met is True
    # every pod is on its set's shared ENI, and the PNAs say SharedENI
    assert shared.extra[PODS_SHARED_KEY] == shared.pods_total == shared.pods_ready
    assert shared.extra[PODS_BRANCH_KEY] == 0
    assert PODS_SHARED_KEY not in branch.extra  # the branch run's metrics are as without --shared-eni


def test_the_branch_floor_is_not_reported_for_the_shared_run(shared_batch: ComparisonResult) -> None:
    shared, branch = shared_batch.runs["crd"].metrics, shared_batch.runs[CRD_BRANCH].metrics
    assert shared.floor_path is None and shared.floor_p99_s is None and shared.ratio_to_floor is None
    assert branch.floor_p99_s is not None and branch.ratio_to_floor is not None
    floor = next(t for t in shared_batch.targets if "EC2 floor" in t.target)
    assert floor.met is None and "no floor" in floor.measured


def test_the_kubernetes_write_floor_is_the_run_s_own_writes_over_its_client_qps(
    shared_batch: ComparisonResult,
) -> None:
    comparison = shared_batch.shared_eni_comparison
    # crd runs as netalloc ships (no client-side limit: no floor); the baseline at RC's 20 QPS.
    assert comparison is not None and comparison.k8s_client_qps is None
    assert comparison.baseline_k8s_client_qps == 20.0
    row = comparison.rows[0]
    crd = shared_batch.runs["crd"].metrics
    assert row.k8s_writes == crd.k8s_writes and row.k8s_write_floor_s is None
    assert row.pna_writes == 2 * crd.pods_total  # a create and a status write per pod
    assert row.pna_write_floor_s is None
    annotation = comparison.rows[2]
    base = shared_batch.runs["annotation"].metrics
    assert annotation.pna_writes is None
    assert annotation.k8s_write_floor_s == round(base.k8s_writes / 20.0, 1)


def test_a_client_limit_given_to_crd_is_the_runtime_s_own_and_bounds_its_writes() -> None:
    """With RC's 20 QPS the runtime's own limiter (the simulated client has none) spaces its requests: the
    last pod is ready no sooner than its PNA writes past the burst take at 20 QPS."""
    result, _ = run_comparison(
        ScenarioName.BATCH_SCALE_UP,
        seed=1,
        scale=0.3,
        crd_shared_eni=True,
        crd_k8s_client_qps=20.0,
        crd_k8s_client_burst=30,
        approaches=("crd",),
    )
    crd = result.runs["crd"].metrics
    assert crd.pods_ready == crd.pods_total == 300
    pna_writes = 2 * crd.pods_total
    assert crd.p99_ready_s is not None and crd.p99_ready_s >= (pna_writes - 30) / 20.0 * 0.98
    free, _ = run_comparison(
        ScenarioName.BATCH_SCALE_UP, seed=1, scale=0.3, crd_shared_eni=True, approaches=("crd",)
    )
    free_p99 = free.runs["crd"].metrics.p99_ready_s
    assert free_p99 is not None and free_p99 < (pna_writes - 30) / 20.0


def test_the_line_is_in_the_table_and_the_report(shared_batch: ComparisonResult) -> None:
    table = render_table(shared_batch)
    assert "shared ENI vs branch ENI vs baseline" in table
    assert f"  {CRD_BRANCH} [branch ENI per pod (netalloc)]: p50" in table
    report = render_markdown(shared_batch, None)
    assert "## Shared ENI, branch ENI and the baseline" in report
    assert "| crd | SharedENI: one ENI per node and group set |" in report


def test_without_shared_eni_nothing_changes() -> None:
    result, _ = run_comparison(ScenarioName.BATCH_SCALE_UP, seed=1, scale=0.05)
    assert list(result.runs) == list(APPROACHES) and result.shared_eni_comparison is None
    summary = summary_object(result)
    assert "shared_eni_comparison" not in summary
    assert not any(t["target"].startswith("shared ENI") for t in summary["targets"])
    assert PODS_SHARED_KEY not in result.runs["crd"].metrics.extra


@pytest.fixture(scope="module")
def fallback() -> ComparisonResult:
    # The branch-only crd run is left out here: with 12 SGP pods on 9 branches it waits to the horizon.
    result, _ = run_comparison(ScenarioName.SHARED_ENI_FALLBACK, seed=1, scale=0.3, approaches=APPROACHES)
    return result


def test_fallback_scenario_gives_both_modes_and_no_stuck_pod(fallback: ComparisonResult) -> None:
    params = fallback.params
    assert (params.nodes, params.pods_per_node, params.group_sets) == (3, 12, 3)
    crd = fallback.runs["crd"].metrics
    assert crd.pods_stuck == 0 and crd.pods_ready == crd.pods_total == 36
    shared, by_fallback = crd.extra[PODS_SHARED_KEY], crd.extra[PODS_FALLBACK_KEY]
    branch = crd.extra[PODS_BRANCH_KEY]
    assert isinstance(shared, int) and isinstance(by_fallback, int) and isinstance(branch, int)
    assert shared > 0 and by_fallback > 0
    assert shared + branch == crd.pods_total and by_fallback == branch  # every SGP pod asked for SharedENI
    # one free slot per node: at most one set per node is shared (12 / 3 = 4 pods)
    assert shared <= params.nodes * params.pods_per_node // params.group_sets
    base = fallback.runs["annotation"].metrics  # RC: 9 branch ENIs per m5.large, 12 pods per node
    assert base.pods_stuck == 3 * params.nodes
    assert list(base.stuck_reasons) == [
        "Pending: every vpc.amazonaws.com/pod-eni its node advertises (9) is taken: one branch ENI per pod"
    ]
    checks = {t.target: t.met for t in fallback.targets if t.target.startswith("shared-eni-fallback")}
    assert checks == {
        "shared-eni-fallback: crd: no pod stuck": True,
        "shared-eni-fallback: crd pods on both modes (SharedENI, and BranchENI by fallback)": True,
    }


def test_shared_eni_is_refused_where_it_does_not_apply() -> None:
    runner = CliRunner()
    outcome = runner.invoke(app, ["compare", "--scenario", "prefix-exhaustion", "--shared-eni"])
    assert outcome.exit_code == 2
    assert outcome.stderr.strip() == (
        "Error: --shared-eni applies to the scenarios batch-scale-up, admission-conflict, rollout-churn, "
        "shared-eni-fallback; not to prefix-exhaustion"
    )
    assert outcome.stdout == ""  # refused before anything ran
    with pytest.raises(ValidationError, match="--shared-eni applies to the scenarios"):
        scenario_params(ScenarioName.CONTROLLER_RESTART, crd_shared_eni=True)


def test_cli_shared_eni_json_has_the_targets_and_the_line() -> None:
    runner = CliRunner()
    args = ["compare", "--scenario", "batch-scale-up", "--shared-eni", "--scale", "0.05", "--serial"]
    outcome = runner.invoke(app, [*args, "--output", "json"])
    assert outcome.exit_code == 0, outcome.output
    data = json.loads(outcome.stdout.splitlines()[0])
    assert data["params"]["crd_shared_eni"] is True
    assert set(data["approaches"]) == {"annotation", "crd", CRD_BRANCH}
    assert [r["approach"] for r in data["shared_eni_comparison"]["rows"]] == ["crd", CRD_BRANCH, "annotation"]
    assert {t["target"] for t in data["targets"]} >= set(SHARED_TARGETS)


def test_pods_waiting_for_hours_write_their_status_only_until_the_wait_is_steady() -> None:
    """crd-branch in shared-eni-fallback leaves 30 pods waiting on m5.large's 9 branch ENIs for the whole
    14,400 s horizon. Each used to write its PNA status and post an Event on every retry (7,559 PNA
    writes and 7,359 Events): once the backoff is at its cap nothing new is written, and the Event is
    told again once per 10 min so it outlives the API server's 1 h Event TTL."""
    result, _ = run_comparison(ScenarioName.SHARED_ENI_FALLBACK, seed=1, approaches=(CRD_BRANCH,))
    m = result.runs[CRD_BRANCH].metrics
    assert m.pods_stuck == 30
    pods = m.pods_total
    # A create and an Allocated status per ready pod, and about 6 statuses per waiting pod (the attempts
    # below the cap, then the steady one).
    assert m.k8s_writes_by_kind["PodNetworkAllocation"] <= 2 * pods + 10 * m.pods_stuck
    horizon = result.params.horizon_s
    assert m.k8s_writes_by_kind.get("Event", 0) <= m.pods_stuck * (10 + horizon / 600)
