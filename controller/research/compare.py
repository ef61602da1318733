"""`run_comparison`: both approaches through the same scenario, each in its own virtual-time run.

Every run is deterministic for a seed: virtual time, seeded `random.Random` instances, ordered
containers, no threads and no wall-clock read inside the simulation. Wall time and peak memory are
measured outside it and kept apart (`RunPerformance`), so `results.json` is byte-identical per seed.
"""

from __future__ import annotations

import multiprocessing
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from pydantic import BaseModel, ConfigDict

from controller.core.allocation_model import AllocationMode
from controller.core.retry_policy import RetryPolicy
from controller.research.annotation_allocator import AnnotationAllocator
from controller.research.api_server import POD, pod_invalid_message
from controller.research.approach import Approach
from controller.research.baseline_params import BaselineParams
from controller.research.crd_allocator import CrdAllocator
from controller.research.ipamd_baseline import IpamdBaseline
from controller.research.metrics import ApproachMetrics, MetricsRecorder, summarise
from controller.research.scenarios import ScenarioName, ScenarioParams, scenario_params
from controller.research.security_group_policy import pod_eni_webhook, prestop_policy_webhook
from controller.research.sim_kube import zone_lookup
from controller.research.sim_world import SimWorld
from controller.research.virtual_time import run_virtual
from controller.research.workload import Workload, WorkloadOutcome
from controller.settings import PoolSettings

APPROACHES = ("annotation", "crd")
CLUSTER_NAME = "sim"
ACCOUNTING_DRAIN_S = 60.0
QUIESCE_LIMIT_S = 600.0
INVALID_MARKER = "is invalid: spec: Forbidden: pod updates may not change fields"


class TargetCheck(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    target: str
    measured: str
    met: bool | None  # None: not measurable in this scenario/run


class ApproachRun(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    metrics: ApproachMetrics
    workload: WorkloadOutcome


class ComparisonResult(BaseModel):
    """Everything in results.json: deterministic for (scenario parameters, seed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scenario: ScenarioName
    seed: int
    params: ScenarioParams
    baseline_params: BaselineParams
    runs: dict[str, ApproachRun]
    targets: list[TargetCheck]
    exact_422_message_example: str


class RunPerformance(BaseModel):
    """The simulation's own cost. Not deterministic, so never written into results.json."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    wall_s: dict[str, float]
    total_wall_s: float
    peak_rss_mb: float


def _peak_rss_mb() -> float:
    """Peak resident memory of this process and of any worker process (max RSS)."""
    peak = max(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    )
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _make_approach(
    name: str,
    params: ScenarioParams,
    world: SimWorld,
    recorder: MetricsRecorder,
    seed: int,
    baseline: BaselineParams,
) -> tuple[Approach, list[str]]:
    api = world.api
    if params.prestop_fraction > 0:
        api.webhooks.append(prestop_policy_webhook())
    if name == "annotation":
        if params.prefix_delegation:
            return IpamdBaseline(api=api, ec2=world.vpc, clock=world.clock, seed=seed, recorder=recorder), []
        api.webhooks.append(pod_eni_webhook(world.policies))
        rc = AnnotationAllocator(
            api=api,
            ec2=world.vpc,
            clock=world.clock,
            params=baseline,
            seed=seed,
            instance_types=world.instance_types,
            branch_limits=world.branch_limits,
            cluster_name=CLUSTER_NAME,
            recorder=recorder,
        )
        return rc, ["rc", "rc-clientset"]
    if params.prefix_delegation:
        settings = PoolSettings(
            enable_prefix_delegation=True, prefix_fallback_to_secondary_ip=params.crd_prefix_fallback
        )
        mode = AllocationMode.PREFIX_IP
    else:
        settings = PoolSettings(enable_pod_eni=True, warm_branch_eni_target=params.crd_warm_branch_eni_target)
        mode = AllocationMode.BRANCH_ENI
    crd = CrdAllocator(
        api=api,
        ec2=world.vpc,
        clock=world.clock,
        settings=settings,
        policy=RetryPolicy(),
        seed=seed,
        instance_types=world.instance_types,
        branch_limits=world.branch_limits,
        cluster_name=CLUSTER_NAME,
        recorder=recorder,
        k8s_client_qps=params.crd_k8s_client_qps,
        k8s_client_burst=params.crd_k8s_client_burst,
        mode=mode,
        zone_of=zone_lookup(world.vpc.instances),
    )
    return crd, ["netalloc"]


async def _run_one(name: str, params: ScenarioParams, seed: int, baseline: BaselineParams) -> ApproachRun:
    from controller.clock import LoopClock

    recorder = MetricsRecorder(LoopClock())
    world = SimWorld(params=params, seed=seed, recorder=recorder, baseline=baseline)
    approach, clients = _make_approach(name, params, world, recorder, seed, baseline)
    workload = Workload(params=params, world=world, approach=approach, recorder=recorder, seed=seed)
    outcome = await workload.run()
    # Let in-flight EC2 work finish before the ENIs are counted (pod metrics are already final):
    # wait a little, then until the allocator is between operations (at most QUIESCE_LIMIT_S).
    await world.clock.sleep(ACCOUNTING_DRAIN_S)
    quiesce_deadline = world.clock.now() + QUIESCE_LIMIT_S
    while approach.busy() and world.clock.now() < quiesce_deadline:
        await world.clock.sleep(1.0)
    reasons: dict[str, str] = {}
    for key in recorder.pending:
        namespace, pod_name = key.split("/", 1)
        reasons[key] = approach.stuck_reason(world.api.peek(POD, namespace, pod_name), key)
    in_use, pooled = approach.owned_eni_ids()
    metrics = summarise(
        approach=name,
        implementation=approach.implementation,
        recorder=recorder,
        stuck_reason_of=reasons,
        api_stats=world.api.stats,
        allocator_clients=clients,
        enis=world.eni_accounting(in_use, pooled),
        end_s=outcome.end_s,
        extra=approach.extra_metrics(),
    )
    return ApproachRun(metrics=metrics, workload=outcome)


def _run_timed(
    name: str, params: ScenarioParams, seed: int, baseline: BaselineParams
) -> tuple[ApproachRun, float]:
    started = time.perf_counter()
    run = run_virtual(_run_one(name, params, seed, baseline))
    return run, round(time.perf_counter() - started, 3)


def _targets(
    params: ScenarioParams, runs: dict[str, ApproachRun], baseline: BaselineParams
) -> list[TargetCheck]:
    base = runs["annotation"].metrics
    crd = runs["crd"].metrics
    checks: list[TargetCheck] = []
    if params.name is ScenarioName.ADMISSION_CONFLICT:
        stuck_422 = sum(n for reason, n in base.stuck_reasons.items() if INVALID_MARKER in reason)
        checks.append(
            TargetCheck(
                target="annotation: pods stuck with the 422 reason",
                measured=f"{stuck_422} of {base.pods_total}",
                met=stuck_422 > 0,
            )
        )
        checks.append(
            TargetCheck(
                target="crd: no pod stuck", measured=f"{crd.pods_stuck} stuck", met=crd.pods_stuck == 0
            )
        )
    if params.name is ScenarioName.BATCH_SCALE_UP:
        gate_pods = base.pods_total
        measured = (
            f"{base.pods_ready} of {gate_pods} SGP pods Ready after {base.max_ready_s} s (simulated); "
            f"published release gate: {baseline.release_gate_pods} pods within {baseline.release_gate_s:g} s"
        )
        met = (
            None
            if gate_pods != baseline.release_gate_pods
            else base.max_ready_s is not None
            and base.pods_ready == gate_pods
            and base.max_ready_s <= baseline.release_gate_s
        )
        checks.append(
            TargetCheck(target="baseline matches RC's published release gate", measured=measured, met=met)
        )
    if params.name is ScenarioName.ROLLOUT_CHURN:
        starts = max(1, crd.pods_total)
        per_start = crd.ec2_mutating_calls / starts
        checks.append(
            TargetCheck(
                target="rollout-churn: crd makes ≤ 0.1 mutating EC2 calls per pod start",
                measured=f"{per_start:.3f} ({crd.ec2_mutating_calls} calls / {crd.pods_total} pod starts); "
                f"annotation: {base.ec2_mutating_calls / max(1, base.pods_total):.3f}",
                met=per_start <= 0.1,
            )
        )
        if base.p99_ready_s is not None and crd.p99_ready_s:
            ratio = base.p99_ready_s / crd.p99_ready_s
            checks.append(
                TargetCheck(
                    target="rollout-churn: crd p99 time-to-ready ≥ 20× lower than the baseline's",
                    measured=f"{ratio:.1f}× (annotation {base.p99_ready_s} s, crd {crd.p99_ready_s} s)",
                    met=ratio >= 20,
                )
            )
    if params.name is ScenarioName.PREFIX_EXHAUSTION:
        for name, run in runs.items():
            waiting = run.workload.waiting_at_checkpoint or 0
            shown = run.workload.waiting_with_capacity_reason or 0
            checks.append(
                TargetCheck(
                    target=f"prefix-exhaustion: no pod waits without its capacity reason ({name})",
                    measured=f"{shown} of {waiting} waiting pods at t={params.free_at_s:g} s show it",
                    met=shown == waiting,
                )
            )
            extra = run.metrics.extra
            known, shortage = extra.get("exhaustion_known_at_s"), extra.get("first_prefix_shortage_at_s")
            if isinstance(known, int | float) and isinstance(shortage, int | float):
                lead = f"{shortage - known:.1f} s before the first pod found no /28 (known at t={known:g} s)"
            elif isinstance(known, int | float):
                lead = f"at t={known:g} s; no pod ever found no /28"
            else:
                lead = f"never (the first pod found no /28 at t={shortage} s)"
            checks.append(
                TargetCheck(
                    target=f"prefix-exhaustion: knew about the exhaustion before a pod was hit ({name})",
                    measured=lead,
                    met=isinstance(known, int | float)
                    and (not isinstance(shortage, int | float) or known <= shortage),
                )
            )
            checks.append(
                TargetCheck(
                    target=f"prefix-exhaustion: all pods ready once space frees ({name})",
                    measured=f"{run.metrics.pods_ready} of {run.metrics.pods_total}",
                    met=run.metrics.pods_ready == run.metrics.pods_total,
                )
            )
    for name, run in runs.items():
        accounting = run.metrics.enis
        checks.append(
            TargetCheck(
                target=f"ENI conservation ({name}): created − deleted = in use + pooled + leaked",
                measured=f"{accounting.created} − {accounting.deleted} = {accounting.in_use} + "
                f"{accounting.pooled} + {accounting.leaked}",
                met=accounting.balanced,
            )
        )
    return checks


def run_comparison(
    scenario: ScenarioName | str,
    seed: int = 1,
    scale: float = 1.0,
    *,
    approaches: tuple[str, ...] = APPROACHES,
    baseline: BaselineParams | None = None,
    parallel: bool = False,
    **overrides: object,
) -> tuple[ComparisonResult, RunPerformance]:
    """Run `scenario` for each approach; returns the deterministic result and the run's own cost."""
    params = scenario_params(scenario, scale=scale, **overrides)
    baseline = baseline or BaselineParams()
    runs: dict[str, ApproachRun] = {}
    wall: dict[str, float] = {}
    started = time.perf_counter()
    if parallel and len(approaches) > 1:
        # One process per approach (each run is independent and single-threaded): wall time is the
        # slower approach's, not the sum. Results are the same as in-process: same seed, same bytes.
        context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ProcessPoolExecutor(max_workers=len(approaches), mp_context=context) as pool:
            futures = {name: pool.submit(_run_timed, name, params, seed, baseline) for name in approaches}
            for name in approaches:
                runs[name], wall[name] = futures[name].result()
    else:
        for name in approaches:
            runs[name], wall[name] = _run_timed(name, params, seed, baseline)
    targets = _targets(params, runs, baseline) if set(runs) == set(APPROACHES) else []
    result = ComparisonResult(
        scenario=params.name,
        seed=seed,
        params=params,
        baseline_params=baseline,
        runs=runs,
        targets=targets,
        exact_422_message_example=pod_invalid_message("NAME"),
    )
    performance = RunPerformance(
        wall_s=wall,
        total_wall_s=round(time.perf_counter() - started, 3),
        peak_rss_mb=round(_peak_rss_mb(), 1),
    )
    return result, performance
