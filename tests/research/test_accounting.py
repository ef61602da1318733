"""The accounting rules, the same for every approach: stuck pods in percentiles, EC2 attempts apart,
the floor, the Kubernetes client limit and Events, cool-downs, quiet rollouts, the pod lifecycle."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controller.adapters.sim_vpc import DEFAULT_ACTION_BUCKETS
from controller.clock import LoopClock, ManualClock
from controller.core.token_bucket import BucketSpec
from controller.k8s.reconcilers.context import ControllerConfig
from controller.research.api_server import EVENT, NODE, POD, ApiServer, KubeObject, LatencyModel
from controller.research.baseline_params import BaselineParams
from controller.research.compare import HARNESS_CLIENTS, ComparisonResult, run_comparison
from controller.research.floor import NETALLOC_PATH, RC_PATH, branch_floor_s, per_pod_floors
from controller.research.metrics import ApproachMetrics, EniAccounting, MetricsRecorder, summarise
from controller.research.report import render_markdown, summary_object
from controller.research.scenarios import ScenarioName, scenario_params
from controller.research.virtual_time import run_virtual
from controller.research.workload import Scheduler, _ready_status
from controller.settings import PoolSettings

NO_ENIS = EniAccounting(created=0, deleted=0, in_use=0, pooled=0, leaked=0)


def _recorder_with(ready_after: list[float], stuck: int) -> MetricsRecorder:
    clock = ManualClock()
    recorder = MetricsRecorder(clock)
    for index in range(len(ready_after) + stuck):
        recorder.pod_created(f"ns/p{index}", "n")
    for index, after in sorted(enumerate(ready_after), key=lambda pair: pair[1]):
        clock.advance(after - clock.now())
        recorder.pod_network_ready(f"ns/p{index}")
    return recorder


def _summary(recorder: MetricsRecorder, **kwargs: Any) -> ApproachMetrics:
    return summarise(
        approach="x",
        implementation="x",
        recorder=recorder,
        stuck_reason_of={},
        api_stats={},
        allocator_clients=[],
        enis=NO_ENIS,
        end_s=0.0,
        horizon_s=1000.0,
        **kwargs,
    )


def test_stuck_pods_count_as_the_horizon_in_the_percentiles() -> None:
    metrics = _summary(_recorder_with([1.0, 2.0, 3.0], stuck=2))
    assert metrics.p50_ready_s == 3.0  # nearest rank 3 of 5: stuck pods are the two largest
    assert metrics.p99_ready_s == 1000.0 and metrics.max_ready_s == 1000.0
    assert metrics.ready_only_p99_s == 3.0  # what the old, ready-only figure would have said


def test_ec2_attempts_successes_throttles_and_errors_are_counted_apart() -> None:
    recorder = _recorder_with([1.0], stuck=0)
    for outcome in ("ok", "ok", "throttled", "error"):
        recorder.ec2_call("CreateNetworkInterface", outcome)  # type: ignore[arg-type]
    recorder.ec2_call("DescribeNetworkInterfaces", "ok")
    metrics = _summary(recorder)
    assert metrics.ec2_attempts_total == 5
    assert (metrics.ec2_successes_total, metrics.ec2_throttled_total, metrics.ec2_errors_total) == (3, 1, 1)
    assert metrics.ec2_mutating_calls == 4 and metrics.mutating_calls_per_pod_start == 4.0


def test_the_floor_is_the_field_notes_figures_with_ec2s_buckets() -> None:
    # field notes §7: 1,000 pods, 50 trunks: the 500th ~90 s (netalloc) / ~100 s (RC), 1,000th 190/200.
    buckets = DEFAULT_ACTION_BUCKETS
    assert branch_floor_s(500, 50, NETALLOC_PATH, buckets) == pytest.approx(90.0)
    assert branch_floor_s(500, 50, RC_PATH, buckets) == pytest.approx(100.0)
    assert branch_floor_s(1000, 50, NETALLOC_PATH, buckets) == pytest.approx(190.0)
    assert branch_floor_s(1000, 50, RC_PATH, buckets) == pytest.approx(200.0)


def test_the_floor_follows_the_bucket_refill_and_the_pod_creation_times() -> None:
    slower = dict(DEFAULT_ACTION_BUCKETS)
    slower["AssociateTrunkInterface"] = BucketSpec(capacity=50, refill_per_s=2.5)
    assert branch_floor_s(550, 0, NETALLOC_PATH, slower) == pytest.approx(200.0)  # (550 − 50) / 2.5
    # A pod created later is owed less: its floor is F(k) minus its creation offset.
    assert per_pod_floors([0.0, 0.0, 100.0], 0, RC_PATH, {**DEFAULT_ACTION_BUCKETS, **_tiny()}) == [
        0.0,
        1.0,
        0.0,
    ]


def _tiny() -> dict[str, BucketSpec]:
    return {a: BucketSpec(capacity=1, refill_per_s=1) for a in RC_PATH.per_branch}


def test_summary_computes_floor_p99_and_ratio_from_the_path() -> None:
    recorder = _recorder_with([10.0] * 100, stuck=0)
    metrics = _summary(recorder, floor_path=RC_PATH, trunks_in_window=0, buckets=_tiny())
    assert metrics.floor_p99_s == 98.0  # branch 99 of 100: (99 − 1) / 1
    assert metrics.ratio_to_floor == pytest.approx(10.0 / 98.0, abs=1e-3)


def test_each_approach_runs_with_its_own_shipped_kubernetes_client_limit() -> None:
    params = scenario_params(ScenarioName.BATCH_SCALE_UP)
    baseline = BaselineParams()
    assert (baseline.k8s_client_qps, baseline.k8s_client_burst) == (20.0, 30)  # RC's (field notes §2)
    shipped = ControllerConfig(cluster_name="c1")
    assert params.crd_k8s_client_qps == shipped.kube_client_qps is None  # netalloc ships none
    assert params.crd_k8s_client_burst == shipped.kube_client_burst


def test_events_of_any_client_the_approach_opens_are_counted() -> None:
    async def main() -> ApproachMetrics:
        loop = asyncio.get_running_loop()
        api = ApiServer(LoopClock(), schedule_at=loop.call_at, seed=1, latency=LatencyModel(0.01, 0.02))
        api.client("netalloc-runtime-events", qps=20, burst=30).event((POD, "ns", "p"), "Allocated", "ok")
        api.client("kube-scheduler", qps=None, burst=None)
        clients = [n for n in sorted(api.stats) if n not in HARNESS_CLIENTS]
        return summarise(
            approach="crd",
            implementation="x",
            recorder=MetricsRecorder(LoopClock()),
            stuck_reason_of={},
            api_stats=api.stats,
            allocator_clients=clients,
            enis=NO_ENIS,
            end_s=0.0,
            horizon_s=1.0,
        )

    metrics = run_virtual(main())
    assert metrics.k8s_writes_by_kind == {EVENT: 1}


def test_scheduler_binds_only_to_ready_nodes() -> None:
    async def main() -> tuple[str, str]:
        loop = asyncio.get_running_loop()
        api = ApiServer(LoopClock(), schedule_at=loop.call_at, seed=1, latency=LatencyModel(0.01, 0.02))
        Scheduler(api)
        api.apply_create(KubeObject(kind=NODE, namespace="", name="n1", status=_ready_status(False)))
        api.apply_create(
            KubeObject(kind=POD, namespace="ns", name="p", labels={"sim/target-node": "n1"}, spec={})
        )
        await asyncio.sleep(5)
        before = api.peek(POD, "ns", "p")
        api.apply_merge_patch((NODE, "", "n1"), {"status": _ready_status(True)})
        await asyncio.sleep(5)
        after = api.peek(POD, "ns", "p")
        assert before is not None and after is not None
        return str(before.spec.get("nodeName", "")), str(after.spec.get("nodeName", ""))

    assert run_virtual(main()) == ("", "n1")


@pytest.fixture(scope="module")
def rollout() -> ComparisonResult:
    result, _ = run_comparison(ScenarioName.ROLLOUT_CHURN, seed=1, scale=0.03)
    return result


def test_rollout_starts_quiet_and_counts_until_the_delete_queues_drained(rollout: ComparisonResult) -> None:
    base = rollout.runs["annotation"]
    assert base.workload.quiet_before_rollout is True and base.workload.drained is True
    # Every replaced pod's branch ENI was disassociated and deleted inside the counted window.
    assert base.metrics.ec2_calls["DeleteNetworkInterface"] == base.metrics.pods_total
    assert base.metrics.ec2_calls["DisassociateTrunkInterface"] == base.metrics.pods_total
    crd = rollout.runs["crd"]  # its runtime says when it is quiet (pools' timers, queue, pods waiting)
    assert crd.workload.quiet_hook is True and crd.workload.quiet_before_rollout is True
    assert crd.workload.drained is True


def test_pod_lifecycle_ready_is_network_ready_plus_container_start_and_readiness(
    rollout: ComparisonResult,
) -> None:
    params = rollout.params
    for run in rollout.runs.values():
        metrics = run.metrics
        assert metrics.pods_pod_ready == metrics.pods_ready
        lag = params.container_start_s + params.readiness_s
        assert metrics.pod_ready_p50_s is not None and metrics.p50_ready_s is not None
        assert metrics.pod_ready_p50_s >= metrics.p50_ready_s + lag - 1e-6


def test_termination_grace_delays_the_delete_event() -> None:
    params = scenario_params(ScenarioName.BATCH_SCALE_UP, nodes=1, pods_per_node=1, termination_s=30)

    async def main() -> tuple[bool, bool]:
        from controller.research.compare import _make_approach
        from controller.research.sim_world import SimWorld
        from controller.research.workload import Workload

        recorder = MetricsRecorder(LoopClock())
        world = SimWorld(params=params, seed=1, recorder=recorder, baseline=BaselineParams())
        approach, _, _ = _make_approach("annotation", params, world, recorder, 1, BaselineParams())
        workload = Workload(params=params, world=world, approach=approach, recorder=recorder, seed=1)
        key = workload.create_pod("node-0000")
        workload.delete_pod(key)
        await asyncio.sleep(29.9)
        during = world.api.peek(POD, *key.split("/")) is not None
        await asyncio.sleep(0.2)
        gone = world.api.peek(POD, *key.split("/")) is None
        return during, gone

    assert run_virtual(main()) == (True, True)


def test_cooldowns_are_reported_side_by_side(rollout: ComparisonResult) -> None:
    summary = summary_object(rollout)
    assert summary["approaches"]["annotation"]["cooldown_s"] == BaselineParams().branch_cooldown_s
    assert summary["approaches"]["crd"]["cooldown_s"] == PoolSettings().branch_cooldown_s
    report = render_markdown(rollout, None)
    assert "Cool-downs side by side" in report and "minimum 30 s" in report


def test_an_ec2_client_claim_is_made_only_as_the_approach_reports_it(rollout: ComparisonResult) -> None:
    report = render_markdown(rollout, None)
    assert "same 12 QPS / burst 18 bucket and 3 SDK attempts as its boto3 adapter" not in report
    assert rollout.runs["annotation"].ec2_client is not None
    crd = rollout.runs["crd"].ec2_client
    assert crd is not None and crd.same_as_boto3_adapter  # checked by the crd side against its runtime
    assert f"EC2 client (crd): {crd.description} — checked" in report
    silent = {**rollout.runs, "crd": rollout.runs["crd"].model_copy(update={"ec2_client": None})}
    report = render_markdown(rollout.model_copy(update={"runs": silent}), None)
    assert "EC2 client (crd): not reported by the approach" in report  # no hook, no claim


def test_every_approach_carries_the_issue_keys_in_json(rollout: ComparisonResult) -> None:
    summary = summary_object(rollout)
    for approach in summary["approaches"].values():
        for key in (
            "p50_ready_s",
            "p99_ready_s",
            "mutating_calls_per_pod_start",
            "floor_p99_s",
            "ratio_to_floor",
        ):
            assert key in approach
    assert summary["approaches"]["annotation"]["mutating_calls_per_pod_start"] == pytest.approx(5.0)


def test_release_gate_figure_is_the_last_pod_ready_beside_rcs_300_s() -> None:
    result, _ = run_comparison(ScenarioName.BATCH_SCALE_UP, seed=1, approaches=("annotation",))
    run = result.runs["annotation"]
    assert run.release_gate_target_s == 300.0
    assert run.release_gate_p100_s == run.metrics.pod_ready_p100_s is not None
    small, _ = run_comparison(ScenarioName.BATCH_SCALE_UP, seed=1, scale=0.05, approaches=("annotation",))
    assert small.runs["annotation"].release_gate_p100_s is None  # 50 pods is not the gate's 1,000
