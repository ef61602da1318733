"""What every reconciler shares: configuration, the ports, the caches, the node pools and the Event recorder.

Reconcilers are level-triggered: each pass reads the caches (what the API server said last) and the
pools (what EC2 said, plus what the PNAs record), acts, and returns when it wants to look again. A
reconciler never keeps a fact of its own between passes that the API server or EC2 could contradict.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from controller.clock import Clock, WallClock
from controller.core.errors import Ec2Error
from controller.core.instance_limits import InstanceLimits
from controller.core.pod_selection import LabelSelector
from controller.core.retry_policy import RetryPolicy
from controller.core.subnet_report import SubnetReport
from controller.engine.node_network import NodeNetwork, capacity_error
from controller.k8s.cache import ClusterState
from controller.k8s.kube_api import KubePort
from controller.observability import Metrics
from controller.ports.ec2 import Ec2Port
from controller.settings import PoolSettings

logger = logging.getLogger("netalloc.controller")

# Names that more than one cluster is likely to share. The leak collector deletes every ENI tagged
# with the cluster name that no current node owns, so two clusters sharing a name would delete each
# other's ENIs: the controller refuses to start with any of these.
PLACEHOLDER_CLUSTER_NAMES = frozenset({"netalloc", "my-cluster", "cluster", "default", "example", "changeme"})


class ClusterNameError(ValueError):
    """The cluster name is missing or a placeholder; the message says how to set it."""


def check_cluster_name(name: str) -> str:
    if not name or name.strip().lower() in PLACEHOLDER_CLUSTER_NAMES:
        raise ClusterNameError(
            f"CLUSTER_NAME {name!r} is a default or placeholder: netalloc tags every ENI with it and "
            "deletes tagged ENIs that no node of this cluster owns, so two clusters sharing it would "
            "delete each other's ENIs. Set CLUSTER_NAME (deploy/configmap.yaml, or --cluster-name) to "
            "this cluster's own name, the one in iam-policy.json's netalloc.dev/cluster conditions"
        )
    return name


class ControllerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster_name: str = Field(min_length=1)
    namespace_selector: str = "netalloc.dev/managed=true"
    pool: PoolSettings = Field(default_factory=PoolSettings)
    workers: int = Field(default=16, ge=1)
    reconcile_interval_s: float = Field(default=10.0, gt=0, description="each node pool's periodic pass")
    resync_interval_s: float = Field(default=300.0, gt=0, description="full relist of every watched kind")
    relist_gap_s: float = Field(default=2.0, gt=0, description="at most one relist per kind this often")
    pool_status_interval_s: float = Field(
        default=10.0,
        ge=0,
        description="pool counts that moved are written this long after a pass first saw them move (once, "
        "coalesced); a change of conditions, trunk, limits or ENIs is written at once",
    )
    heap_trim_interval_s: float = Field(
        default=5.0, gt=0, description="how often freed C-heap pages are given back (glibc malloc_trim)"
    )
    leak_interval_s: float = Field(default=60.0, gt=0, description="the cluster-wide leak sweep")
    subnet_report_interval_s: float = Field(default=60.0, gt=0, description="subnet fragmentation reports")
    leak_passes: int = Field(default=2, ge=1, description="sweeps an unknown tagged ENI must survive")
    policy: RetryPolicy = Field(default_factory=RetryPolicy)
    ec2_pacing_share: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="pace each EC2 action to this share of its account bucket (field notes §4); 0: off",
    )
    kube_client_qps: float | None = Field(
        default=None,
        gt=0,
        description="client-side limit on Kubernetes requests (KUBE_CLIENT_QPS); None: none, APF's job "
        "(controller-runtime's default since kubernetes-sigs/controller-runtime#3119)",
    )
    kube_client_burst: int = Field(default=30, ge=1, description="KUBE_CLIENT_BURST: the bucket's capacity")
    error_backoff_base_s: float = Field(default=0.05, gt=0, description="per-item backoff after an error")
    error_backoff_max_s: float = Field(default=60.0, gt=0)

    @field_validator("cluster_name")
    @classmethod
    def _not_a_placeholder(cls, value: str) -> str:
        return check_cluster_name(value)


class Result(BaseModel):
    """What a reconcile pass asks for: look again after `requeue_after` seconds (None: on the next event)."""

    model_config = ConfigDict(frozen=True)

    requeue_after: float | None = None

    @classmethod
    def after(cls, seconds: float | None) -> Result:
        return cls(requeue_after=seconds)


class PoolPhase(StrEnum):
    NOT_READY = "NotReady"  # not registered yet, or registration failed (the error says why)
    REGISTERED = "Registered"  # built from EC2 and the PNAs; serves allocations
    DRAINED = "Drained"  # the node is gone and everything it held was given back


@dataclass
class PoolEntry:
    node_name: str
    phase: PoolPhase = PoolPhase.NOT_READY
    instance_id: str = ""
    network: NodeNetwork | None = None
    error: Ec2Error | None = None
    failures: int = 0


class PoolRegistry:
    """The node pools this process has built, and why the others are not ready."""

    def __init__(self) -> None:
        self._entries: dict[str, PoolEntry] = {}

    def entry(self, node_name: str) -> PoolEntry:
        return self._entries.setdefault(node_name, PoolEntry(node_name))

    def get(self, node_name: str) -> PoolEntry | None:
        return self._entries.get(node_name)

    def network(self, node_name: str) -> NodeNetwork | None:
        entry = self._entries.get(node_name)
        return entry.network if entry is not None and entry.phase is PoolPhase.REGISTERED else None

    def networks(self) -> dict[str, NodeNetwork]:
        return {
            name: entry.network
            for name, entry in self._entries.items()
            if entry.phase is PoolPhase.REGISTERED and entry.network is not None
        }

    def registered(self, network: NodeNetwork, instance_id: str) -> None:
        entry = self.entry(network.node_name)
        entry.phase, entry.network, entry.instance_id = PoolPhase.REGISTERED, network, instance_id
        entry.error, entry.failures = None, 0

    def not_ready(self, node_name: str, error: Ec2Error, *, count_failure: bool = True) -> PoolEntry:
        entry = self.entry(node_name)
        entry.phase, entry.network, entry.error = PoolPhase.NOT_READY, None, error
        entry.failures = entry.failures + 1 if count_failure else entry.failures
        return entry

    def drained(self, node_name: str, instance_id: str) -> None:
        entry = self.entry(node_name)
        entry.phase, entry.network, entry.instance_id = PoolPhase.DRAINED, None, instance_id
        entry.error, entry.failures = None, 0

    def forget(self, node_name: str) -> None:
        self._entries.pop(node_name, None)


class EventRecorder:
    """Kubernetes Events, best effort and in the background; the same message for the same object is
    posted once per `dedup_s` (client-go's aggregation window, 10 min), so a pod waiting for capacity
    does not flood the API server, yet its reason outlives the API server's 1 h Event TTL.

    Time is the controller's clock, so the simulation's virtual hours are deduplicated as real ones."""

    def __init__(self, kube: KubePort, *, clock: Clock | None = None, dedup_s: float = 600.0) -> None:
        self.kube = kube
        self.clock: Clock = clock or WallClock()
        self.dedup_s = dedup_s
        self._recent: dict[tuple[str, str, str], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.posted = 0

    def post(self, involved: Mapping[str, Any], *, warning: bool, reason: str, message: str) -> None:
        uid = str((involved.get("metadata") or {}).get("uid") or (involved.get("metadata") or {}).get("name"))
        key = (uid, reason, message)
        now = self.clock.now()
        if now - self._recent.get(key, -1e18) < self.dedup_s:
            return
        if len(self._recent) > 10_000:
            self._recent = {k: t for k, t in self._recent.items() if now - t < self.dedup_s}
        self._recent[key] = now
        self.posted += 1
        task = asyncio.get_running_loop().create_task(
            self.kube.post_event(
                involved, event_type="Warning" if warning else "Normal", reason=reason, message=message
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        """Wait for the Events already posted (tests and a clean shutdown)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


LimitsLookup = Callable[[str], Awaitable[InstanceLimits]]
InstanceHook = Callable[[str, str, str], Awaitable[None]]  # node name, instance id, instance type


@dataclass
class Context:
    config: ControllerConfig
    kube: KubePort
    ec2: Ec2Port
    limits_for: LimitsLookup
    clock: Clock
    metrics: Metrics
    state: ClusterState
    pools: PoolRegistry
    events: EventRecorder
    rng: random.Random
    enqueue: Callable[[Any], None]
    enqueue_rate_limited: Callable[[Any], None] | None = None  # with the item's backoff (None: enqueue)
    on_new_instance: InstanceHook | None = None
    selector: LabelSelector = field(default_factory=LabelSelector)
    first_seen: dict[str, float] = field(default_factory=dict)  # allocation key -> when we saw its PNA
    # PNAs whose pods wait on an allocation step (no status yet, Pending, Allocating, Retrying): while
    # there are any, warm-pool refills leave the EC2 tokens to them (`controller.engine.ec2_pacing`).
    seeking: set[tuple[str, str]] = field(default_factory=set)
    # seconds from a PNA's first sighting to Allocated, the most recent ones, for reports and benchmarks
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    subnets: dict[str, SubnetReport] = field(default_factory=dict)  # subnet id -> its last report

    def update_pool_metrics(self, network: NodeNetwork) -> None:
        status = network.pool.status()
        node = network.node_name
        self.metrics.pool_free_ips.labels(node=node).set(status.free_ips)
        self.metrics.pool_used_ips.labels(node=node).set(status.used_ips)
        self.metrics.pool_warm_branches.labels(node=node).set(status.branch_warm)
        self.metrics.pool_branches_in_use.labels(node=node).set(status.branch_in_use)

    def unavailable(self, node_name: str) -> Ec2Error:
        """Why a node's pool cannot serve now, as the capacity error its waiting PNAs show."""
        entry = self.pools.get(node_name)
        node = self.state.nodes.get(node_name)
        if node is None:
            why = f"node {node_name} does not exist (yet): its pool is made when the Node registers"
        elif entry is not None and entry.error is not None:
            why = f"{entry.error.code}: {entry.error.message}"
        else:
            why = "the pool is being built from EC2 (trunk, addresses, warm branch ENIs)"
        return capacity_error("NodePoolNotReady", f"node {node_name}'s NodeNetworkPool is not ready: {why}")

    def pool_is_gone(self, node_name: str) -> bool:
        """The node's pool was drained (or its node and record are gone): nothing it held is held."""
        entry = self.pools.get(node_name)
        if entry is not None and entry.phase is PoolPhase.DRAINED:
            return True
        if entry is not None and entry.phase is PoolPhase.REGISTERED:
            return False
        return (
            self.state.nodes.synced
            and self.state.nnps.synced
            and self.state.nodes.get(node_name) is None
            and self.state.nnps.get(node_name) is None
        )

    def cluster_id(self) -> str:
        """This cluster's identity for ENI tags: the UID of its kube-system namespace ("" if unseen)."""
        system = self.state.namespaces.get("kube-system")
        return system.uid if system is not None else ""

    def managed_namespace(self, namespace: str) -> bool:
        ns = self.state.namespaces.get(namespace)
        return ns is not None and self.selector.matches(ns.labels)
