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

from pydantic import BaseModel, ConfigDict, Field

from controller.adapters.sim_vpc import DEFAULT_ACTION_BUCKETS
from controller.core.allocation_model import AllocationMode
from controller.core.retry_policy import RetryPolicy
from controller.research.annotation_allocator import AnnotationAllocator
from controller.research.api_server import POD, pod_invalid_first_line
from controller.research.approach import Approach, Ec2ClientFacts, ReportsCooldown, ReportsEc2Client
from controller.research.baseline_params import BaselineParams
from controller.research.crd_allocator import PNA, PODS_FALLBACK_KEY, PODS_SHARED_KEY, CrdAllocator
from controller.research.floor import NETALLOC_PATH, RC_PATH
from controller.research.ipamd_baseline import IpamdBaseline
from controller.research.metrics import ApproachMetrics, MetricsRecorder, is_mutating, summarise
from controller.research.scenarios import ScenarioName, ScenarioParams, scenario_params
from controller.research.security_group_policy import pod_eni_webhook, prestop_policy_webhook
from controller.research.sim_kube import zone_lookup
from controller.research.sim_world import SimWorld
from controller.research.virtual_time import run_virtual
from controller.research.workload import Workload, WorkloadOutcome
from controller.settings import PoolSettings

APPROACHES = ("annotation", "crd")
# With SharedENI on the crd side: the crd side once more as it runs without sharing (branch ENIs),
# so shared, branch and the baseline are measured in the same scenario and seed.
CRD_BRANCH = "crd-branch"
CLUSTER_NAME = "sim"
ACCOUNTING_DRAIN_S = 60.0
QUIESCE_LIMIT_S = 600.0
# The harness's own API clients (the workload writes straight to the server): every other client in a
# run's API server belongs to the approach, whatever it names them, so its writes and Events count.
HARNESS_CLIENTS = frozenset({"kube-scheduler"})
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
    cooldown_s: float | None = Field(default=None, description="branch ENI cool-down the approach ran with")
    ec2_client: Ec2ClientFacts | None = Field(
        default=None,
        description="the approach's own description of its simulated EC2 client (None: none given)",
    )
    quiet_at_accounting: bool | None = None
    release_gate_p100_s: float | None = Field(
        default=None, description="batch-scale-up at RC's gate size: time until the last pod is Ready"
    )
    release_gate_target_s: float | None = None


class ModeFigures(BaseModel):
    """One run's figures in the line that sets shared crd, branch crd and the baseline side by side."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approach: str
    allocation: str = Field(description="how the run gives SGP pods their groups")
    p50_ready_s: float | None
    p99_ready_s: float | None
    mutating_calls_per_pod_start: float | None
    ec2_mutating_calls: int
    mutating_calls_per_node: float
    k8s_writes: int
    k8s_write_floor_s: float | None = Field(
        description="the run's Kubernetes writes / its client's QPS, the time those writes alone take "
        "at the limit (reads and the burst left out); None: that client has no limit"
    )
    pna_writes: int | None = Field(description="crd runs: PodNetworkAllocation writes (create, status)")
    pna_write_floor_s: float | None = Field(
        description="crd runs: PodNetworkAllocation writes / the client's QPS, the pods' own share"
    )


class SharedEniComparison(BaseModel):
    """Shared crd, branch crd and the baseline in one scenario and seed (the runs' own counts)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nodes: int
    k8s_client_qps: float | None = Field(description="crd's client-side limit (None: none, as shipped)")
    baseline_k8s_client_qps: float = Field(description="RC's client limit (field notes §2)")
    rows: list[ModeFigures]


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
    shared_eni_comparison: SharedEniComparison | None = None


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
) -> tuple[Approach, list[str], float | None]:
    """The approach, the API client names it is known to use, and its configured cool-down."""
    api = world.api
    if params.prestop_fraction > 0:
        api.webhooks.append(prestop_policy_webhook())
    if name == "annotation":
        if params.prefix_delegation:
            ipamd = IpamdBaseline(api=api, ec2=world.vpc, clock=world.clock, seed=seed, recorder=recorder)
            return ipamd, [], None
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
        return rc, ["rc", "rc-clientset"], baseline.branch_cooldown_s
    if params.prefix_delegation:
        settings = PoolSettings(
            enable_prefix_delegation=True, prefix_fallback_to_secondary_ip=params.crd_prefix_fallback
        )
        mode = AllocationMode.PREFIX_IP
    elif _shared_eni_run(name, params):
        settings = PoolSettings(
            shared_eni_for_pod_sg=True,
            enable_pod_eni=params.crd_shared_eni_branch_fallback,
            warm_branch_eni_target=params.crd_warm_branch_eni_target,
        )
        mode = AllocationMode.SHARED_ENI
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
        namespace=params.namespace,
    )
    return crd, ["netalloc"], settings.branch_cooldown_s


def _shared_eni_run(name: str, params: ScenarioParams) -> bool:
    """The crd run (not crd-branch) of a scenario with SharedENI on."""
    return name == "crd" and params.crd_shared_eni


def approaches_for(params: ScenarioParams) -> tuple[str, ...]:
    """The runs of a scenario: both approaches, plus the branch-ENI crd run when crd shares ENIs."""
    return (*APPROACHES, CRD_BRANCH) if params.crd_shared_eni else APPROACHES


async def _run_one(name: str, params: ScenarioParams, seed: int, baseline: BaselineParams) -> ApproachRun:
    from controller.clock import LoopClock

    recorder = MetricsRecorder(LoopClock())
    world = SimWorld(params=params, seed=seed, recorder=recorder, baseline=baseline)
    approach, _, configured_cooldown = _make_approach(name, params, world, recorder, seed, baseline)
    workload = Workload(params=params, world=world, approach=approach, recorder=recorder, seed=seed)
    outcome = await workload.run()
    # Let in-flight EC2 work finish before the ENIs are counted (pod metrics are already final):
    # wait a little, then until the approach is quiet (its hook) or idle (at most QUIESCE_LIMIT_S).
    # EC2 calls made meanwhile (delete queues draining) still count.
    await world.clock.sleep(ACCOUNTING_DRAIN_S)
    quiet = await workload.wait_quiet(world.clock.now() + QUIESCE_LIMIT_S)
    reasons: dict[str, str] = {}
    for key in recorder.pending:
        namespace, pod_name = key.split("/", 1)
        reasons[key] = approach.stuck_reason(world.api.peek(POD, namespace, pod_name), key)
    in_use, pooled = approach.owned_eni_ids()
    # The floor is a branch-ENI path's: a SharedENI run has none (no number rather than a wrong one).
    branch_path = not params.prefix_delegation and not _shared_eni_run(name, params)
    path = (RC_PATH if name == "annotation" else NETALLOC_PATH) if branch_path else None
    metrics = summarise(
        approach=name,
        implementation=approach.implementation,
        recorder=recorder,
        stuck_reason_of=reasons,
        api_stats=world.api.stats,
        allocator_clients=[n for n in sorted(world.api.stats) if n not in HARNESS_CLIENTS],
        enis=world.eni_accounting(in_use, pooled),
        end_s=outcome.end_s,
        horizon_s=params.horizon_s,
        floor_path=path,
        trunks_in_window=0 if params.name is ScenarioName.ROLLOUT_CHURN else params.nodes,
        buckets=DEFAULT_ACTION_BUCKETS,
        extra=approach.extra_metrics(),
    )
    gate_applies = (
        params.name is ScenarioName.BATCH_SCALE_UP and metrics.pods_total == baseline.release_gate_pods
    )
    cooldown = approach.cooldown_s() if isinstance(approach, ReportsCooldown) else configured_cooldown
    return ApproachRun(
        metrics=metrics,
        workload=outcome,
        cooldown_s=cooldown,
        ec2_client=approach.ec2_client_facts() if isinstance(approach, ReportsEc2Client) else None,
        quiet_at_accounting=quiet,
        release_gate_p100_s=metrics.pod_ready_p100_s if gate_applies else None,
        release_gate_target_s=baseline.release_gate_s if gate_applies else None,
    )


def _run_timed(
    name: str, params: ScenarioParams, seed: int, baseline: BaselineParams
) -> tuple[ApproachRun, float]:
    started = time.perf_counter()
    run = run_virtual(_run_one(name, params, seed, baseline))
    return run, round(time.perf_counter() - started, 3)


ALLOCATION_OF = {
    "annotation": "branch ENI per pod (RC, annotation)",
    "crd": "SharedENI: one ENI per node and group set",
    CRD_BRANCH: "branch ENI per pod (netalloc)",
}


def write_floor_s(writes: int, qps: float | None) -> float | None:
    """How long `writes` Kubernetes writes take at `qps` alone (None: no client limit)."""
    return None if qps is None else round(writes / qps, 1)


def shared_eni_comparison(
    params: ScenarioParams, runs: dict[str, ApproachRun], baseline: BaselineParams | None = None
) -> SharedEniComparison:
    """The shared/branch/baseline line, in that order, from the runs present; each run's write floor at
    its own client limit (RC's for the baseline)."""
    baseline = baseline or BaselineParams()
    rows = []
    for name in ("crd", CRD_BRANCH, "annotation"):
        if name not in runs:
            continue
        m = runs[name].metrics
        crd = name != "annotation"
        pna_writes = m.k8s_writes_by_kind.get(PNA, 0) if crd else None
        qps = params.crd_k8s_client_qps if crd else baseline.k8s_client_qps
        rows.append(
            ModeFigures(
                approach=name,
                allocation=ALLOCATION_OF[name],
                p50_ready_s=m.p50_ready_s,
                p99_ready_s=m.p99_ready_s,
                mutating_calls_per_pod_start=m.mutating_calls_per_pod_start,
                ec2_mutating_calls=m.ec2_mutating_calls,
                mutating_calls_per_node=round(m.ec2_mutating_calls / params.nodes, 2),
                k8s_writes=m.k8s_writes,
                k8s_write_floor_s=write_floor_s(m.k8s_writes, qps),
                pna_writes=pna_writes,
                pna_write_floor_s=write_floor_s(pna_writes, qps) if pna_writes is not None else None,
            )
        )
    return SharedEniComparison(
        nodes=params.nodes,
        k8s_client_qps=params.crd_k8s_client_qps,
        baseline_k8s_client_qps=baseline.k8s_client_qps,
        rows=rows,
    )


def _shared_eni_targets(params: ScenarioParams, runs: dict[str, ApproachRun]) -> list[TargetCheck]:
    """Issue 12's targets for SharedENI: batch-scale-up's speed and EC2 cost, the fallback's modes."""
    base, crd = runs["annotation"].metrics, runs["crd"].metrics
    checks: list[TargetCheck] = []
    if params.name is ScenarioName.BATCH_SCALE_UP:
        qps = params.crd_k8s_client_qps
        pna_writes = crd.k8s_writes_by_kind.get(PNA, 0)
        writes = (
            f"; at {qps:g} QPS its {pna_writes} PodNetworkAllocation writes alone take "
            f"{write_floor_s(pna_writes, qps):g} s, all its {crd.k8s_writes} writes "
            f"{write_floor_s(crd.k8s_writes, qps):g} s"
            if qps is not None
            else ""
        )
        checks.append(
            TargetCheck(
                target="shared ENI: crd p99 time-to-network-ready ≤ 20 s",
                measured=f"p99 {crd.p99_ready_s} s (p50 {crd.p50_ready_s} s){writes}",
                met=None if crd.p99_ready_s is None else crd.p99_ready_s <= 20.0,
            )
        )
        ratio = base.p99_ready_s / crd.p99_ready_s if base.p99_ready_s and crd.p99_ready_s else None
        checks.append(
            TargetCheck(
                target="shared ENI: crd p99 ≥ 10× lower than the baseline's",
                measured=f"{ratio:.1f}× (annotation {base.p99_ready_s} s, crd {crd.p99_ready_s} s)"
                if ratio is not None
                else f"annotation {base.p99_ready_s} s, crd {crd.p99_ready_s} s",
                met=None if ratio is None else ratio >= 10.0,
            )
        )
        per_node = crd.ec2_mutating_calls / params.nodes
        actions = ", ".join(f"{n} {a}" for a, n in crd.ec2_calls.items() if is_mutating(a))
        checks.append(
            TargetCheck(
                target="shared ENI: crd makes ≤ 3 mutating EC2 calls per node",
                measured=f"{per_node:.2f} ({crd.ec2_mutating_calls} calls / {params.nodes} nodes: {actions})",
                met=per_node <= 3.0,
            )
        )
    if params.name is ScenarioName.SHARED_ENI_FALLBACK:
        checks.append(
            TargetCheck(
                target="shared-eni-fallback: crd: no pod stuck",
                measured=f"{crd.pods_stuck} stuck of {crd.pods_total}",
                met=crd.pods_stuck == 0,
            )
        )
        shared, fallback = crd.extra.get(PODS_SHARED_KEY, 0), crd.extra.get(PODS_FALLBACK_KEY, 0)
        checks.append(
            TargetCheck(
                target="shared-eni-fallback: crd pods on both modes (SharedENI, and BranchENI by fallback)",
                measured=f"{shared} SharedENI, {fallback} BranchENI (SharedEniFallback) of {crd.pods_total}",
                met=isinstance(shared, int) and isinstance(fallback, int) and shared > 0 and fallback > 0,
            )
        )
    return checks


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
    if params.name in (ScenarioName.BATCH_SCALE_UP, ScenarioName.ADMISSION_CONFLICT):
        for label, attr in (("p50", "p50_ready_s"), ("p99", "p99_ready_s")):
            mine, theirs = getattr(crd, attr), getattr(base, attr)
            checks.append(
                TargetCheck(
                    target=f"crd {label} time-to-ready (stuck counted) at or below the baseline's",
                    measured=f"crd {mine} s, annotation {theirs} s",
                    met=None if mine is None or theirs is None else mine <= theirs,
                )
            )
        checks.append(
            TargetCheck(
                target="crd p99 ≤ 1.15 × the EC2 floor on its path",
                measured=f"{crd.ratio_to_floor}× (p99 {crd.p99_ready_s} s, floor {crd.floor_p99_s} s)"
                if crd.floor_path is not None
                else f"no floor: it is a branch-ENI path's, crd ran SharedENI (p99 {crd.p99_ready_s} s)",
                met=None if crd.ratio_to_floor is None else crd.ratio_to_floor <= 1.15,
            )
        )
    if params.name is ScenarioName.BATCH_SCALE_UP:
        gate_pods = base.pods_total
        gate = runs["annotation"].release_gate_p100_s
        measured = (
            f"{base.pods_pod_ready} of {gate_pods} SGP pods Ready, the last after {gate} s (simulated, "
            f"pod Ready, stuck pods at the horizon); RC's published release gate: "
            f"{baseline.release_gate_pods} pods within {baseline.release_gate_s:g} s"
        )
        met = None if gate is None else gate <= baseline.release_gate_s
        checks.append(
            TargetCheck(target="baseline matches RC's published release gate", measured=measured, met=met)
        )
    if params.name is ScenarioName.ROLLOUT_CHURN:
        per_start = crd.mutating_calls_per_pod_start or 0.0
        checks.append(
            TargetCheck(
                target="rollout-churn: crd makes ≤ 0.1 mutating EC2 calls per pod start",
                measured=f"{per_start:.3f} ({crd.ec2_mutating_calls} calls / {crd.pods_total} pod starts; "
                f"counted until quiet: {runs['crd'].workload.drained}); "
                f"annotation: {base.mutating_calls_per_pod_start}",
                met=per_start <= 0.1 and runs["crd"].workload.drained is True,
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
    if params.crd_shared_eni:
        checks += _shared_eni_targets(params, runs)
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
    approaches: tuple[str, ...] | None = None,
    baseline: BaselineParams | None = None,
    parallel: bool = False,
    **overrides: object,
) -> tuple[ComparisonResult, RunPerformance]:
    """Run `scenario` for each approach (default: `approaches_for` the scenario); returns the
    deterministic result and the run's own cost."""
    params = scenario_params(scenario, scale=scale, **overrides)
    approaches = approaches_for(params) if approaches is None else approaches
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
    both = set(APPROACHES) <= set(runs)
    targets = _targets(params, runs, baseline) if both else []
    comparison = shared_eni_comparison(params, runs, baseline) if params.crd_shared_eni and both else None
    result = ComparisonResult(
        scenario=params.name,
        seed=seed,
        params=params,
        baseline_params=baseline,
        runs=runs,
        targets=targets,
        exact_422_message_example=pod_invalid_first_line("NAME"),
        shared_eni_comparison=comparison,
    )
    performance = RunPerformance(
        wall_s=wall,
        total_wall_s=round(time.perf_counter() - started, 3),
        peak_rss_mb=round(_peak_rss_mb(), 1),
    )
    return result, performance
