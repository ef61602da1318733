"""What one approach did in one scenario: per-pod outcomes, EC2 calls over time, API writes, ENIs.

`MetricsRecorder` is fed during the run (pods created / network-ready / Ready, every EC2 request);
at the end `summarise` turns it and the API server's counters into an `ApproachMetrics` (pydantic),
the object that crosses into the report and results.json.

Accounting rules (the same for every approach):
- A stuck pod counts in the percentiles with the run's horizon as its time: a percentile over only
  the pods that became ready would reward an approach for leaving the slow ones stuck.
- EC2: every request that reached EC2 is an attempt; attempts are split into successes, throttles
  and other errors. `mutating_calls_per_pod_start` is mutating attempts / pods started in the window.
- The floor (controller/research/floor.py) is the approach's own ENI path through EC2's buckets.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field

from controller.adapters.ec2_observer import CallOutcome
from controller.clock import Clock
from controller.core.token_bucket import BucketSpec
from controller.research.floor import EniPath, floor_percentile, per_pod_floors

MUTATING_EXCLUDED_PREFIXES = ("Describe", "Get", "List", "Search")
SERIES_BIN_S = 5.0


def is_mutating(action: str) -> bool:
    return not action.startswith(MUTATING_EXCLUDED_PREFIXES)


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of an ascending list; None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def normalise_reason(reason: str, pod_key: str) -> str:
    """The reason with the pod's own name replaced by NAME, so identical causes group together."""
    name = pod_key.split("/", 1)[-1]
    return reason.replace(f'"{name}"', '"NAME"').replace(pod_key, "NAMESPACE/NAME")


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


class PodOutcome(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pod: str
    node: str
    created_at_s: float
    ready_at_s: float | None = None
    stuck_reason: str | None = None


class EniAccounting(BaseModel):
    """ENIs created − ENIs deleted = in use + pooled + leaked (checked, not assumed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    created: int
    deleted: int
    in_use: int = Field(description="attached to a node as trunk/pod ENI, or serving a pod")
    pooled: int = Field(description="held by the allocator for later: warm, cooling down, queued for delete")
    leaked: int = Field(description="exist in the VPC, made by the allocator, unknown to its state")
    leaked_ids: tuple[str, ...] = ()

    @property
    def balanced(self) -> bool:
        return self.created - self.deleted == self.in_use + self.pooled + self.leaked


class SeriesPoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    t_s: float
    value: float


class ApproachMetrics(BaseModel):
    """The numbers for one approach in one scenario (everything here is deterministic)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approach: str
    implementation: str
    pods_total: int
    pods_ready: int
    pods_stuck: int
    stuck_reasons: dict[str, int]
    stuck_pods: list[PodOutcome]
    p50_ready_s: float | None = Field(description="time to network-ready, stuck pods counted as the horizon")
    p95_ready_s: float | None
    p99_ready_s: float | None = Field(description="time to network-ready, stuck pods counted as the horizon")
    max_ready_s: float | None
    ready_only_p50_s: float | None = Field(description="over the pods that became network-ready only")
    ready_only_p99_s: float | None
    pods_pod_ready: int = Field(description="pods whose containers started and passed readiness")
    pod_ready_p50_s: float | None = Field(description="time to pod Ready, stuck pods counted as the horizon")
    pod_ready_p100_s: float | None
    ec2_calls: dict[str, int] = Field(description="attempts per action (every request that reached EC2)")
    ec2_calls_total: int
    ec2_attempts_total: int
    ec2_successes: dict[str, int]
    ec2_successes_total: int
    ec2_errors_total: int = Field(description="attempts that failed with an error other than a throttle")
    ec2_mutating_calls: int
    ec2_throttled: dict[str, int]
    ec2_throttled_total: int
    mutating_calls_per_pod_start: float | None
    floor_path: str | None
    floor_p99_s: float | None = Field(description="EC2 bucket floor of the p99 pod on this approach's path")
    ratio_to_floor: float | None = Field(description="p99_ready_s / floor_p99_s")
    pod_writes: int
    k8s_writes: int
    k8s_writes_by_kind: dict[str, int]
    objects_created: int
    conflicts_409: int
    invalid_422: int
    enis: EniAccounting
    simulated_end_s: float
    ready_times_s: list[float] = Field(description="time to network-ready of every ready pod, sorted")
    ec2_series: dict[str, list[SeriesPoint]] = Field(
        description="EC2 requests and throttled requests per second, binned"
    )
    ready_series: list[SeriesPoint] = Field(description="pods network-ready over time")
    extra: dict[str, float | int | str] = Field(default_factory=dict)


class MetricsRecorder:
    """Fed during a run. Times are the virtual clock's; pods are measured from creation."""

    def __init__(self, clock: Clock, *, origin_s: float = 0.0) -> None:
        self._clock = clock
        self.origin_s = origin_s
        self.created: dict[str, tuple[str, float]] = {}  # pod key -> (node, created at)
        self.ready: dict[str, float] = {}
        self.pod_ready: dict[str, float] = {}
        self.ec2_calls: Counter[str] = Counter()
        self.ec2_successes: Counter[str] = Counter()
        self.ec2_throttled: Counter[str] = Counter()
        self.ec2_errors: Counter[str] = Counter()
        self.ec2_bins: Counter[tuple[int, str]] = Counter()  # (bin, "calls"|"throttled")
        self.pending: dict[str, None] = {}  # created, not yet ready, in creation order
        self.network_ready_listeners: list[Callable[[str], None]] = []
        self.pod_ready_listeners: list[Callable[[str], None]] = []

    def reset_origin(self) -> None:
        """Start measuring afresh (rollout-churn measures the rollout, not the warm-up)."""
        self.origin_s = self._clock.now()
        self.created.clear()
        self.ready.clear()
        self.pod_ready.clear()
        self.pending.clear()
        self.ec2_calls.clear()
        self.ec2_successes.clear()
        self.ec2_throttled.clear()
        self.ec2_errors.clear()
        self.ec2_bins.clear()

    def pod_created(self, pod_key: str, node: str) -> None:
        self.created[pod_key] = (node, self._clock.now())
        self.pending[pod_key] = None

    def pod_network_ready(self, pod_key: str) -> None:
        if pod_key in self.pending:
            self.ready[pod_key] = self._clock.now()
            del self.pending[pod_key]
            for listener in list(self.network_ready_listeners):
                listener(pod_key)

    def pod_became_ready(self, pod_key: str) -> None:
        """The pod's containers started and its readiness probe passed (the workload's kubelet says so)."""
        if pod_key in self.ready and pod_key not in self.pod_ready:
            self.pod_ready[pod_key] = self._clock.now()
            for listener in list(self.pod_ready_listeners):
                listener(pod_key)

    def is_ready(self, pod_key: str) -> bool:
        return pod_key in self.ready

    def ec2_call(self, action: str, outcome: CallOutcome) -> None:
        """An `Ec2CallObserver`: one EC2 request and how it ended."""
        self.ec2_calls[action] += 1
        time_bin = int((self._clock.now() - self.origin_s) // SERIES_BIN_S)
        self.ec2_bins[(time_bin, "calls")] += 1
        if outcome == "throttled":
            self.ec2_throttled[action] += 1
            self.ec2_bins[(time_bin, "throttled")] += 1
        elif outcome == "ok":
            self.ec2_successes[action] += 1
        else:
            self.ec2_errors[action] += 1


def _series(values: Iterable[float], *, origin: float) -> list[SeriesPoint]:
    points = []
    for count, t in enumerate(sorted(values), start=1):
        points.append(SeriesPoint(t_s=round(t - origin, 3), value=count))
    return points


def summarise(
    *,
    approach: str,
    implementation: str,
    recorder: MetricsRecorder,
    stuck_reason_of: Mapping[str, str],
    api_stats: Mapping[str, object],
    allocator_clients: Iterable[str],
    enis: EniAccounting,
    end_s: float,
    horizon_s: float,
    floor_path: EniPath | None = None,
    trunks_in_window: int = 0,
    buckets: Mapping[str, BucketSpec] | None = None,
    extra: Mapping[str, float | int | str] | None = None,
) -> ApproachMetrics:
    """Build the result. `api_stats` is ApiServer.stats; only `allocator_clients` are counted as the
    approach's own Kubernetes traffic (the workload's creates and bindings are the same for both).
    Stuck pods count as `horizon_s` in the percentiles; the floor is computed when `floor_path` is given."""
    from controller.research.api_server import ClientStats  # local: keep this module import-light

    durations = sorted(recorder.ready[key] - recorder.created[key][1] for key in recorder.ready)
    stuck_count = len(recorder.created) - len(recorder.ready)
    with_stuck = sorted(durations + [horizon_s] * stuck_count)
    pod_ready_durations = sorted(
        recorder.pod_ready[key] - recorder.created[key][1] for key in recorder.pod_ready
    )
    pod_ready_with_stuck = sorted(
        pod_ready_durations + [horizon_s] * (len(recorder.created) - len(pod_ready_durations))
    )
    p99 = percentile(with_stuck, 99)
    floor_p99: float | None = None
    if floor_path is not None and buckets is not None and recorder.created:
        offsets = [created_at - recorder.origin_s for _, created_at in recorder.created.values()]
        floor_p99 = floor_percentile(per_pod_floors(offsets, trunks_in_window, floor_path, buckets), 99)
    ratio = p99 / floor_p99 if p99 is not None and floor_p99 else None
    mutating = sum(n for action, n in recorder.ec2_calls.items() if is_mutating(action))
    stuck: list[PodOutcome] = []
    reasons: Counter[str] = Counter()
    for key, (node, created_at) in recorder.created.items():
        if key in recorder.ready:
            continue
        reason = stuck_reason_of.get(key, "unknown: the allocator reported no reason")
        reasons[normalise_reason(reason, key)] += 1
        stuck.append(
            PodOutcome(
                pod=key,
                node=node,
                created_at_s=round(created_at - recorder.origin_s, 3),
                stuck_reason=reason,
            )
        )
    pod_writes = writes = created = c409 = c422 = 0
    by_kind: Counter[str] = Counter()
    for name in allocator_clients:
        stats = api_stats.get(name)
        if not isinstance(stats, ClientStats):
            continue
        pod_writes += stats.pod_writes
        writes += stats.writes
        created += stats.objects_created
        c409 += stats.conflicts_409
        c422 += stats.invalid_422
        by_kind.update(stats.writes_by_kind)
    max_bin = max((b for b, _ in recorder.ec2_bins), default=-1)
    ec2_series = {
        kind: [
            SeriesPoint(t_s=b * SERIES_BIN_S, value=recorder.ec2_bins[(b, kind)] / SERIES_BIN_S)
            for b in range(max_bin + 1)
        ]
        for kind in ("calls", "throttled")
    }
    ready_abs = [recorder.ready[key] for key in recorder.ready]
    return ApproachMetrics(
        approach=approach,
        implementation=implementation,
        pods_total=len(recorder.created),
        pods_ready=len(recorder.ready),
        pods_stuck=len(stuck),
        stuck_reasons=dict(sorted(reasons.items())),
        stuck_pods=sorted(stuck, key=lambda p: p.pod),
        p50_ready_s=_r(percentile(with_stuck, 50)),
        p95_ready_s=_r(percentile(with_stuck, 95)),
        p99_ready_s=_r(p99),
        max_ready_s=_r(with_stuck[-1] if with_stuck else None),
        ready_only_p50_s=_r(percentile(durations, 50)),
        ready_only_p99_s=_r(percentile(durations, 99)),
        pods_pod_ready=len(recorder.pod_ready),
        pod_ready_p50_s=_r(percentile(pod_ready_with_stuck, 50)),
        pod_ready_p100_s=_r(pod_ready_with_stuck[-1] if pod_ready_with_stuck else None),
        ec2_calls=dict(sorted(recorder.ec2_calls.items())),
        ec2_calls_total=sum(recorder.ec2_calls.values()),
        ec2_attempts_total=sum(recorder.ec2_calls.values()),
        ec2_successes=dict(sorted(recorder.ec2_successes.items())),
        ec2_successes_total=sum(recorder.ec2_successes.values()),
        ec2_errors_total=sum(recorder.ec2_errors.values()),
        ec2_mutating_calls=mutating,
        ec2_throttled=dict(sorted(recorder.ec2_throttled.items())),
        ec2_throttled_total=sum(recorder.ec2_throttled.values()),
        mutating_calls_per_pod_start=round(mutating / len(recorder.created), 4) if recorder.created else None,
        floor_path=floor_path.name if floor_path is not None else None,
        floor_p99_s=_r(floor_p99),
        ratio_to_floor=_r(ratio),
        pod_writes=pod_writes,
        k8s_writes=writes,
        k8s_writes_by_kind=dict(sorted(by_kind.items())),
        objects_created=created,
        conflicts_409=c409,
        invalid_422=c422,
        enis=enis,
        simulated_end_s=round(end_s - recorder.origin_s, 3),
        ready_times_s=[round(d, 4) for d in durations],
        ec2_series=ec2_series,
        ready_series=_series(ready_abs, origin=recorder.origin_s),
        extra=dict(sorted((extra or {}).items())),
    )
