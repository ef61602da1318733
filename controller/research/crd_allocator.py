"""The crd approach: netalloc's own controller runtime, driven by the simulated control plane.

Nothing here allocates, orchestrates or retries. The crd side is `controller.k8s.runtime.ControllerRuntime`
as `netalloc run` starts it: its caches, its one rate-limited work queue with per-item backoff, its
workers and reconcilers (pod binding, allocation, release, node pools, leaks, subnet reports), with the
shipped `ControllerConfig` defaults. `controller.research.sim_kube` gives it the simulated API server as
its `KubePort` and delivers the watch events kopf would. EC2 is the simulated VPC behind the same client
as `netalloc run` gives the boto3 adapter: the runtime's own pacer (one bucket per action, a token per
logical call, pods before refills; `controller.engine.ec2_pacing`), no client-wide limiter, and one
attempt per call, so the engine's `RetryPolicy` is the one retry layer.

What is left here is the harness's view: the node agent (the CNI side, which reads PNAs and survives the
controller's restarts) marks a pod network-ready when its PNA says Allocated, and the questions the
harness asks (stuck reasons, ENIs owned) are answered from the API server and the runtime's pools.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from controller.clock import Clock
from controller.core.allocation_model import AllocationMode
from controller.core.allocation_state import AllocationState, AllocationStatus
from controller.core.errors import ErrorClass
from controller.core.instance_limits import InstanceLimits, limits_for
from controller.core.node_pool import BranchState
from controller.core.pool_planner import next_action_due
from controller.core.retry_policy import RetryPolicy
from controller.engine.ec2_pacing import PacedEc2
from controller.k8s.informers import REFS
from controller.k8s.pna_mapping import read_status_body
from controller.k8s.reconcilers.context import ControllerConfig
from controller.k8s.runtime import ControllerRuntime
from controller.ports.ec2 import Ec2Port, InstanceTypeInfo
from controller.research.api_server import ApiServer, KubeObject
from controller.research.approach import Ec2ClientFacts
from controller.research.metrics import MetricsRecorder
from controller.research.sim_kube import SimKube
from controller.research.virtual_time import spawn
from controller.settings import PoolSettings

PNA = "PodNetworkAllocation"
NODE_POOL = "NodeNetworkPool"
NAMESPACE = "Namespace"
MANAGED_LABEL = {"netalloc.dev/managed": "true"}  # ControllerConfig.namespace_selector's default
HEAP_TRIM_S = 1e9  # malloc_trim gives nothing back in a simulation: never
# `extra_metrics` with SharedENI on: what the Allocated PNAs hold at the end, by mode.
PODS_SHARED_KEY = "pods_shared_eni_at_end"
PODS_FALLBACK_KEY = "pods_branch_eni_by_fallback_at_end"
PODS_BRANCH_KEY = "pods_branch_eni_at_end"
SHARED_ENI_FALLBACK_REASON = "SharedEniFallback"  # controller.engine.allocation_driver's status reason


def status_from_object(data: Mapping[str, Any]) -> AllocationStatus | None:
    """A PNA status as the runtime writes it (controller.k8s.pna_mapping), or None."""
    return read_status_body(data).status


class CrdAllocator:
    """netalloc in the simulation. `crash()` stops the runtime and forgets all in-memory state."""

    name = "crd"
    implementation = (
        "netalloc: controller.k8s.runtime.ControllerRuntime (caches, one work queue, workers, reconcilers) "
        "over controller.engine and controller.core, with the shipped ControllerConfig"
    )

    def __init__(
        self,
        *,
        api: ApiServer,
        ec2: Ec2Port,
        clock: Clock,
        settings: PoolSettings,
        policy: RetryPolicy,
        seed: int,
        instance_types: Mapping[str, InstanceTypeInfo],
        branch_limits: Mapping[str, int],
        cluster_name: str,
        recorder: MetricsRecorder,
        k8s_client_qps: float | None,
        k8s_client_burst: int,
        mode: AllocationMode = AllocationMode.BRANCH_ENI,
        zone_of: Callable[[str], str] | None = None,
        namespace: str = "apps",
    ) -> None:
        self.api = api
        # As `netalloc run --ec2 aws` builds its port: no client-wide limiter (Boto3Ec2 with qps=None),
        # one attempt per call; the runtime paces each action and its RetryPolicy is the one retry layer.
        self.ec2 = ec2
        self.clock = clock
        self.settings = settings
        self.policy = policy
        self.seed = seed
        self.instance_types = instance_types
        self.branch_limits = branch_limits
        self.cluster_name = cluster_name
        self.recorder = recorder
        self.k8s_client_qps = k8s_client_qps
        self.k8s_client_burst = k8s_client_burst
        self.mode = mode
        self._zone_of = zone_of or (lambda _instance_id: "sim-1a")
        self.namespace = namespace  # the workload's, which the cluster admin labels for netalloc
        self.generation = 0
        self.first_shortage_at_s: float | None = None  # a PNA first said it found no /28
        self.exhaustion_known_at_s: float | None = None  # a NodeNetworkPool first said SubnetFragmented
        self.runtime: ControllerRuntime | None = None
        self.kube: SimKube | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ensure_namespace_labelled()
        # The node agent (CNI side) reads PNAs; it is not the controller and survives its restarts.
        self._agent_watch = api.watch(PNA, self._agent_on_pna)
        self._pool_watch = api.watch(NODE_POOL, self._on_pool)

    def _ensure_namespace_labelled(self) -> None:
        """The cluster admin's step: label the workload's namespace for netalloc (done before it starts)."""
        if self.api.peek(NAMESPACE, "", self.namespace) is None:
            self.api.apply_create(
                KubeObject(kind=NAMESPACE, namespace="", name=self.namespace, labels=MANAGED_LABEL)
            )

    def config(self) -> ControllerConfig:
        return ControllerConfig(
            cluster_name=self.cluster_name,
            pool=self.settings,
            policy=self.policy,
            heap_trim_interval_s=HEAP_TRIM_S,
            # The runtime's own client-side limit (none unless set), not one the harness adds.
            kube_client_qps=self.k8s_client_qps,
            kube_client_burst=self.k8s_client_burst,
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.generation += 1
        rng = random.Random((self.seed * 104729 + self.generation) ^ zlib.crc32(b"netalloc"))
        client = self.api.client("netalloc", qps=None, burst=None)  # the limit is the runtime's (config)
        self.kube = SimKube(self.api, client, zone_of=self._zone_of)

        async def lookup_limits(instance_type: str) -> InstanceLimits:
            return limits_for(self.instance_types[instance_type], self.branch_limits)

        self.runtime = ControllerRuntime(
            config=self.config(),
            ec2=self.ec2,
            limits_for=lookup_limits,
            kube=self.kube,
            clock=self.clock,
            seed=rng.getrandbits(32),
        )
        runtime, kube = self.runtime, self.kube

        async def run() -> None:
            await runtime.start()  # lists every kind, then the workers start
            kube.watch(REFS, runtime.on_event)

        spawn(run(), name="netalloc-runtime", registry=self._tasks)

    async def crash(self) -> None:
        """The controller process dies: its loops stop, its in-memory state is gone."""
        if self.kube is not None:
            self.kube.stop_watches()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.runtime is not None:
            await self.runtime.stop()
        self.runtime = None

    def restart(self) -> None:
        self.start()

    # ------------------------------------------------------------------ the node agent and the pools
    def _agent_on_pna(self, event: str, pna: KubeObject) -> None:
        if event == "DELETED":
            return
        status = pna.status
        if status.get("state") == AllocationState.ALLOCATED.value:
            self.recorder.pod_network_ready(f"{pna.namespace}/{pna.name}")
        if self.first_shortage_at_s is None and _short_of_prefixes(status):
            self.first_shortage_at_s = self.clock.now()

    def _on_pool(self, event: str, pool: KubeObject) -> None:
        if self.exhaustion_known_at_s is not None or event == "DELETED":
            return
        for condition in pool.status.get("conditions") or ():
            if condition.get("type") == "SubnetFragmented" and condition.get("status") == "True":
                self.exhaustion_known_at_s = self.clock.now()

    # ------------------------------------------------------------------ what the harness asks
    def next_action_due(self) -> float | None:
        """`ReportsNextAction`: now while work is queued or running, pods wait, or a pool has work;
        else the first cool-down or excess timer of any pool (`pool_planner.next_action_due`); None
        when quiet. The periodic passes that find nothing to do are not counted."""
        runtime = self.runtime
        if runtime is None:
            return None
        now = self.clock.now()
        if len(runtime.queue) or runtime.queue.in_flight or runtime.ctx.seeking:
            return now
        due: list[float] = []
        for network in runtime.networks.values():
            if network.busy() or network.orphaned_enis:
                return now
            when = next_action_due(network.pool, now)
            if when is not None:
                due.append(when)
        return min(due) if due else None

    def cooldown_s(self) -> float:
        return self.settings.branch_cooldown_s

    def ec2_client_facts(self) -> Ec2ClientFacts:
        """Checked, not asserted: the running runtime's EC2 port is the pacer (`PacedEc2`) at the share
        `netalloc run` uses by default, over a port with no limiter of its own."""
        runtime = self.runtime
        share = runtime.config.ec2_pacing_share if runtime is not None else 0.0
        shipped = ControllerConfig.model_fields["ec2_pacing_share"].default
        same = runtime is not None and isinstance(runtime.ctx.ec2, PacedEc2) and share == shipped
        return Ec2ClientFacts(
            description=(
                "netalloc's runtime pacer (controller.engine.ec2_pacing): one bucket per EC2 action at "
                f"{share:g} of the account's, a token per call, pods before "
                "warm-pool work; one attempt per call (RetryPolicy is the only retry layer)"
            ),
            same_as_boto3_adapter=same,
        )

    def _status(self, namespace: str, name: str) -> AllocationStatus | None:
        pna = self.api.peek(PNA, namespace, name)
        return status_from_object(pna.status) if pna is not None else None

    def gave_up_on(self, key: str) -> bool:
        namespace, name = key.split("/", 1)
        status = self._status(namespace, name)
        return status is not None and status.state is AllocationState.FAILED

    def busy(self) -> bool:
        """Work queued or running in the runtime, or a pool's background refill in flight."""
        runtime = self.runtime
        if runtime is None:
            return False
        if len(runtime.queue) or runtime.queue.in_flight:
            return True
        return any(network.busy() for network in runtime.networks.values())

    def stuck_reason(self, pod: KubeObject | None, key: str) -> str:
        if pod is None:
            return "pod deleted before it was network-ready"
        pna = self.api.peek(PNA, pod.namespace, pod.name)
        if pna is None:
            return "no PodNetworkAllocation yet"
        status = status_from_object(pna.status)
        if status is None:
            return "PodNetworkAllocation created, no status yet"
        return f"{status.state.value}/{status.reason}: {status.message}"

    def shows_capacity_reason(self, pod: KubeObject) -> bool:
        status = self._status(pod.namespace, pod.name)
        if status is None:
            return False
        return status.state is AllocationState.WAITING_FOR_CAPACITY or (
            status.last_error is not None and status.last_error.error_class is ErrorClass.CAPACITY
        )

    def owned_eni_ids(self) -> tuple[set[str], set[str]]:
        """(in use, pooled): trunks, attached pod-IP ENIs and pod-held branches; warm and cooling
        branches and ENIs waiting for deletion."""
        in_use: set[str] = set()
        pooled: set[str] = set()
        networks = self.runtime.networks if self.runtime is not None else {}
        for network in networks.values():
            pool = network.pool
            if pool.trunk_eni_id is not None:
                in_use.add(pool.trunk_eni_id)
            in_use.update(eni_id for eni_id, eni in pool.enis.items() if not eni.primary)
            for eni_id, branch in pool.branches.items():
                (in_use if branch.state is BranchState.ASSIGNED else pooled).add(eni_id)
            pooled.update(network.orphaned_enis)
        return in_use, pooled

    def extra_metrics(self) -> dict[str, float | int | str]:
        warm = cooling = 0
        networks = self.runtime.networks if self.runtime is not None else {}
        for network in networks.values():
            counts = network.pool.branch_counts()
            warm += counts.get(BranchState.WARM, 0)
            cooling += counts.get(BranchState.COOLING, 0)
        known, shortage = self.exhaustion_known_at_s, self.first_shortage_at_s
        extra: dict[str, float | int | str] = {
            "branch_enis_warm_at_end": warm,
            "branch_enis_cooling_at_end": cooling,
            "exhaustion_known_at_s": round(known, 3) if known is not None else "never",
            "first_prefix_shortage_at_s": round(shortage, 3) if shortage is not None else "none",
        }
        if self.settings.shared_eni_for_pod_sg:  # only then: the other runs' metrics stay as they were
            extra.update(self._pods_by_mode())
        return extra

    def _pods_by_mode(self) -> dict[str, int]:
        """Allocated PNAs by what they hold, read from the API server as a user would (kubectl): on a
        shared ENI, on a branch ENI because the set had no shared ENI address (status reason
        SharedEniFallback; the spec follows what is held, so it no longer says SharedENI), on a branch
        ENI at all."""
        shared = fallback = branch = 0
        for pna in self.api.list_kind(PNA):
            status = status_from_object(pna.status)
            if status is None or status.state is not AllocationState.ALLOCATED or status.resources is None:
                continue
            held = status.resources.mode
            if held is AllocationMode.SHARED_ENI:
                shared += 1
            elif held is AllocationMode.BRANCH_ENI:
                branch += 1
                fallback += status.reason == SHARED_ENI_FALLBACK_REASON
        return {PODS_SHARED_KEY: shared, PODS_FALLBACK_KEY: fallback, PODS_BRANCH_KEY: branch}


def _short_of_prefixes(status: Mapping[str, Any]) -> bool:
    """The PNA found no /28: it was served by the fallback, or waits for capacity."""
    if status.get("reason") == "PrefixFallback":
        return True
    error = status.get("lastError") or {}
    return status.get("state") == AllocationState.WAITING_FOR_CAPACITY.value and error.get("code") in (
        "InsufficientCidrBlocks",
        "InvalidParameterValue",
    )
