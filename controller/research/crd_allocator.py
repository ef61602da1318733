"""The crd approach: netalloc's own core and engine driven by the simulated control plane.

Nothing here re-implements allocation. Per node, netalloc's `NodeNetwork` (controller/engine)
registers the node (trunk and pool pre-allocation by `controller.core.pool_planner`); per pod, a
PodNetworkAllocation object is created and `controller.engine.allocation_driver.allocation_step`
moves its `AllocationStatus` (controller/core/allocation_state) one step at a time; each changed
status is written to the PNA's status subresource with optimistic concurrency. The node's CNI
reads the PNA (a watch), never a pod annotation, so pods are only ever watched: no pod write, no
pod admission webhook on the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from collections.abc import Coroutine, Mapping
from typing import Any

from controller.adapters.rate_limiter import RateLimiter
from controller.clock import Clock
from controller.core.allocation_model import AllocationMode, AllocationRequest
from controller.core.allocation_state import AllocationState, AllocationStatus
from controller.core.errors import Ec2Error, ErrorClass
from controller.core.instance_limits import limits_for
from controller.core.node_pool import BranchState
from controller.core.pool_planner import plan_pool
from controller.core.retry_policy import RetryPolicy
from controller.core.subnet_report import subnet_report
from controller.engine.allocation_driver import allocation_step, release_step
from controller.engine.node_network import NodeNetwork, open_node_network
from controller.ports.ec2 import Ec2Port, InstanceTypeInfo
from controller.research.api_server import (
    NODE,
    POD,
    AlreadyExistsError,
    ApiClient,
    ApiServer,
    ConflictError,
    KubeObject,
    NotFoundApiError,
    Watch,
)
from controller.research.client_limited_ec2 import ClientLimitedEc2
from controller.research.metrics import MetricsRecorder
from controller.research.sdk_client import SdkRetryingClient
from controller.research.security_group_policy import SGP, security_groups_for_pod
from controller.research.virtual_time import spawn
from controller.settings import PoolSettings

PNA = "PodNetworkAllocation"
NODE_POOL = "NodeNetworkPool"


def pod_key(obj: KubeObject) -> str:
    return f"{obj.namespace}/{obj.name}"


def status_to_object(status: AllocationStatus) -> dict[str, Any]:
    return status.model_dump(mode="json")


def status_from_object(data: Mapping[str, Any]) -> AllocationStatus | None:
    return AllocationStatus.model_validate(data) if data else None


class CrdAllocator:
    """netalloc in the simulation. `crash()` cancels everything and forgets all in-memory state."""

    name = "crd"
    implementation = (
        "netalloc: controller.engine.NodeNetwork + controller.engine.allocation_driver + "
        "controller.core (pool_planner, node_pool, allocation_state, retry_policy)"
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
        k8s_client_burst: int | None,
        pool_loop_s: float = 30.0,
        mode: AllocationMode = AllocationMode.BRANCH_ENI,
    ) -> None:
        self.api = api
        self.raw_ec2 = ec2
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
        self.pool_loop_s = pool_loop_s
        self.mode = mode
        self.generation = 0
        self.first_shortage_at_s: float | None = None  # a pod first found no /28 (fallback or wait)
        self.exhaustion_known_at_s: float | None = None  # netalloc's subnet report first said so
        self.subnet_report_interval_s = 30.0
        self._reset_memory()
        # The node agent (CNI side) reads PNAs; it is not the controller and survives its restarts.
        self._agent_watch = api.watch(PNA, self._agent_on_pna)

    # ------------------------------------------------------------------ lifecycle
    def _reset_memory(self) -> None:
        self.generation += 1
        self.networks: dict[str, NodeNetwork] = {}
        self.node_ready: dict[str, asyncio.Event] = {}
        self.node_cache: dict[str, KubeObject] = {}
        self.pod_cache: dict[str, KubeObject] = {}
        self.pna_by_node: dict[str, dict[str, KubeObject]] = {}
        self.policies: dict[str, list[KubeObject]] = {}
        self.drivers: dict[str, asyncio.Task[None]] = {}
        self.statuses: dict[str, AllocationStatus] = {}
        self.gave_up: set[str] = set()
        self._in_step: set[str] = set()
        self._pool_wake: dict[str, asyncio.Event] = {}
        self._pool_registered = asyncio.Event()
        self._busy_ops = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watches: list[Watch] = []
        self._rng = random.Random((self.seed * 104729 + self.generation) ^ zlib.crc32(b"netalloc"))

    def start(self) -> None:
        # netalloc's boto3 adapter defaults (Boto3Ec2.from_config): 12 QPS / burst 18, 3 attempts.
        self.sdk = SdkRetryingClient(
            clock=self.clock,
            limiter=RateLimiter.per_second(12.0, 18, self.clock),
            rng=random.Random(self._rng.getrandbits(64)),
            max_attempts=3,
            min_retry_delay_s=0.030,
            min_throttle_delay_s=0.5,
        )
        self.ec2: Ec2Port = ClientLimitedEc2(self.raw_ec2, self.sdk)
        self.client: ApiClient = self.api.client(
            "netalloc", qps=self.k8s_client_qps, burst=self.k8s_client_burst
        )
        self._spawn(self._subnet_reports(), "netalloc-subnet-reports")
        self._watches = [
            self.api.watch(SGP, self._on_policy),
            self.api.watch(PNA, self._on_pna),
            self.api.watch(NODE, self._on_node),
            self.api.watch(POD, self._on_pod),
        ]

    async def crash(self) -> None:
        """The controller process dies: tasks stop mid-flight, in-memory state is gone."""
        for watch in self._watches:
            watch.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for network in self.networks.values():
            await network.close()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._reset_memory()

    def restart(self) -> None:
        self.start()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return spawn(coro, name=name, registry=self._tasks)

    # ------------------------------------------------------------------ informers
    def _on_policy(self, event: str, policy: KubeObject) -> None:
        policies = [p for p in self.policies.get(policy.namespace, []) if p.name != policy.name]
        if event != "DELETED":
            policies.append(policy)
        self.policies[policy.namespace] = policies

    def _on_pna(self, event: str, pna: KubeObject) -> None:
        key = pod_key(pna)
        by_node = self.pna_by_node.setdefault(str(pna.spec.get("nodeName", "")), {})
        if event == "DELETED":
            by_node.pop(key, None)
        else:
            by_node[key] = pna

    def _on_node(self, event: str, node: KubeObject) -> None:
        if event == "DELETED":
            self.node_cache.pop(node.name, None)
            return
        self.node_cache[node.name] = node
        if node.name not in self.node_ready:
            self.node_ready[node.name] = asyncio.Event()
            self._spawn(self._register_node(node.name), f"netalloc-register-{node.name}")

    def _on_pod(self, event: str, pod: KubeObject) -> None:
        key = pod_key(pod)
        if event == "DELETED":
            self.pod_cache.pop(key, None)
            self._spawn(self._release(key, pod), f"netalloc-release-{key}")
            return
        self.pod_cache[key] = pod
        if pod.spec.get("nodeName") and key not in self.drivers:
            self.drivers[key] = self._spawn(self._drive(key), f"netalloc-drive-{key}")

    def _agent_on_pna(self, event: str, pna: KubeObject) -> None:
        if event == "DELETED":
            return
        if pna.status.get("state") == AllocationState.ALLOCATED.value:
            self.recorder.pod_network_ready(pod_key(pna))

    # ------------------------------------------------------------------ subnets
    async def _subnet_reports(self) -> None:
        """The controller's fragmentation report (controller.core.subnet_report), through the same
        limited EC2 client: when did netalloc first know the subnet had no /28 left?"""
        while True:
            subnets = {(n.pool.subnet_id, n.pool.subnet_cidr) for n in self.networks.values()}
            for subnet_id, cidr in sorted(subnets):
                nodes = sum(1 for n in self.networks.values() if n.pool.subnet_id == subnet_id)
                try:
                    interfaces = await self.ec2.describe_network_interfaces(subnet_id=subnet_id)
                    reservations = await self.ec2.describe_subnet_cidr_reservations(subnet_id)
                except Ec2Error:
                    continue
                report = subnet_report(
                    subnet_id=subnet_id,
                    cidr=cidr,
                    interfaces=interfaces,
                    reservations=reservations,
                    threshold=max(self.settings.subnet_fragmentation_threshold, nodes),
                )
                if self.exhaustion_known_at_s is None and (
                    report.fragmented or report.free_prefix_blocks == 0
                ):
                    self.exhaustion_known_at_s = self.clock.now()
            self._pool_registered.clear()
            with contextlib.suppress(TimeoutError):  # as the controller: a new pool asks for a report
                await asyncio.wait_for(self._pool_registered.wait(), self.subnet_report_interval_s)

    # ------------------------------------------------------------------ nodes
    async def _register_node(self, node_name: str) -> None:
        node = self.node_cache[node_name]
        instance_id = str(node.spec["providerID"])
        rng = random.Random(self._rng.getrandbits(64))

        async def lookup_limits(instance_type: str) -> Any:
            return limits_for(self.instance_types[instance_type], self.branch_limits)

        while True:
            try:
                network = await open_node_network(
                    ec2=self.ec2,
                    clock=self.clock,
                    limits_for=lookup_limits,
                    settings=self.settings,
                    node_name=node_name,
                    instance_id=instance_id,
                    cluster_name=self.cluster_name,
                    rng=rng,
                )
                break
            except Exception:
                await self.clock.sleep(rng.uniform(0.5, 2.0))
        self.networks[node_name] = network
        # NodeNetwork.register() = recover_from_ec2() + reconcile(); between the two, re-bind what
        # existing PNAs record (after a restart) so the planner never mistakes a held branch for a warm one.
        await network.recover_from_ec2()
        for pna in sorted(self.pna_by_node.get(node_name, {}).values(), key=lambda p: p.name):
            status = status_from_object(pna.status)
            if status is not None and status.resources is not None:
                network.restore(f"{pna.namespace}/{pna.name}/{pna.spec['podUID']}", status.resources)
        network.registered = True
        self._pool_registered.set()
        # Pre-allocation may fall short (throttling, an exhausted subnet): allocations still proceed and
        # surface the error in their own PNA; the pool loop keeps trying to reach the targets.
        await network.reconcile()
        await self._write_pool_status(node_name, network, create=True)
        self.node_ready[node_name].set()
        self._spawn(self._pool_loop(node_name, network, rng), f"netalloc-pool-{node_name}")

    async def _pool_loop(self, node_name: str, network: NodeNetwork, rng: random.Random) -> None:
        """The periodic pool pass: expire cool-downs, release excess, top up; write the NodeNetworkPool
        status when its numbers changed. While the pool is quiet (nothing cooling, nothing missing,
        nothing in excess) the loop sleeps until an allocation or a release wakes it: a periodic pass
        would find nothing to do, and skipping it saves a million idle wake-ups at 1,000 nodes."""
        wake = self._pool_wake.setdefault(node_name, asyncio.Event())
        last = _pool_signature(network)
        while True:
            if _pool_is_quiet(network):
                await wake.wait()
            wake.clear()
            await self.clock.sleep(self.pool_loop_s * rng.uniform(0.9, 1.1))
            self._busy_ops += 1
            try:
                await network.reconcile()
            finally:
                self._busy_ops -= 1
            current = _pool_signature(network)
            if current != last:
                await self._write_pool_status(node_name, network, create=False)
                last = current

    def _wake_pool(self, node_name: str) -> None:
        wake = self._pool_wake.get(node_name)
        if wake is not None:
            wake.set()

    async def _write_pool_status(self, node_name: str, network: NodeNetwork, *, create: bool) -> None:
        status = network.pool.status().model_dump(mode="json")
        key = (NODE_POOL, "", node_name)
        for _ in range(5):
            try:
                existing = self.api.peek(*key)
                if existing is None:
                    await self.client.create(KubeObject(kind=NODE_POOL, namespace="", name=node_name))
                    existing = self.api.peek(*key)
                    assert existing is not None
                await self.client.update_status(
                    KubeObject(
                        kind=NODE_POOL,
                        namespace="",
                        name=node_name,
                        resource_version=existing.resource_version,
                        status=status,
                    )
                )
                return
            except (ConflictError, AlreadyExistsError):
                continue

    # ------------------------------------------------------------------ allocations
    async def _ensure_pna(self, pod: KubeObject, request: AllocationRequest) -> KubeObject:
        existing = self.api.peek(PNA, pod.namespace, pod.name)
        if existing is not None and existing.spec.get("podUID") == pod.uid:
            return existing
        obj = KubeObject(
            kind=PNA,
            namespace=pod.namespace,
            name=pod.name,
            labels={"netalloc.dev/node": request.node_name},
            spec={
                "podName": pod.name,
                "podUID": pod.uid,
                "nodeName": request.node_name,
                "mode": request.mode.value,
                "securityGroupIds": list(request.security_group_ids),
            },
        )
        try:
            return await self.client.create(obj)
        except AlreadyExistsError:
            return await self.client.get(PNA, pod.namespace, pod.name)

    def _request_for(self, pod: KubeObject) -> AllocationRequest | None:
        groups: tuple[str, ...] = ()
        if self.mode is AllocationMode.BRANCH_ENI:
            groups = security_groups_for_pod(pod, self.policies.get(pod.namespace, []))
            if not groups:
                return None
        return AllocationRequest(
            key=f"{pod.namespace}/{pod.name}/{pod.uid}",
            node_name=str(pod.spec["nodeName"]),
            mode=self.mode,
            security_group_ids=groups,
        )

    async def _drive(self, key: str) -> None:
        pod = self.pod_cache.get(key)
        if pod is None:
            return
        request = self._request_for(pod)
        if request is None:
            return
        pna = await self._ensure_pna(pod, request)
        status = status_from_object(pna.status) or AllocationStatus.new(self.clock.now())
        self.statuses[key] = status
        ready = self.node_ready.get(request.node_name)
        if ready is None:
            ready = self.node_ready[request.node_name] = asyncio.Event()
        await ready.wait()
        network = self.networks[request.node_name]
        while key in self.pod_cache:
            self._in_step.add(key)
            try:
                result = await allocation_step(status, request, network, policy=self.policy, rng=self._rng)
            finally:
                self._in_step.discard(key)
            if result.attempted:
                self._wake_pool(request.node_name)
            if result.attempted and self.first_shortage_at_s is None and _short_of_prefixes(result.status):
                self.first_shortage_at_s = self.clock.now()
            if result.status != status:
                status = result.status
                self.statuses[key] = status
                pna = await self._write_status(pna, status)
            if status.state is AllocationState.FAILED:
                self.gave_up.add(key)
            if result.retry_in is None or key not in self.pod_cache:
                return
            await self.clock.sleep(result.retry_in)

    async def _write_status(self, pna: KubeObject, status: AllocationStatus) -> KubeObject:
        """PUT the status with the resourceVersion we hold; on 409 re-read and write again."""
        body = status_to_object(status)
        current = pna
        for _ in range(10):
            try:
                return await self.client.update_status(
                    KubeObject(
                        kind=PNA,
                        namespace=current.namespace,
                        name=current.name,
                        resource_version=current.resource_version,
                        status=body,
                    )
                )
            except ConflictError:
                current = await self.client.get(PNA, pna.namespace, pna.name)
        raise RuntimeError(f"could not write the status of {pna.namespace}/{pna.name}")

    async def _release(self, key: str, pod: KubeObject) -> None:
        self._busy_ops += 1
        try:
            await self._release_pna(key, pod)
        finally:
            self._busy_ops -= 1

    async def _release_pna(self, key: str, pod: KubeObject) -> None:
        driver = self.drivers.pop(key, None)
        if driver is not None and not driver.done():
            # Never cancel an allocation step half-way (that could strand an ENI): let it finish;
            # a driver that is only waiting is cancelled.
            if key not in self._in_step:
                driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await driver
        node_name = str(pod.spec.get("nodeName", ""))
        pna = self.api.peek(PNA, pod.namespace, pod.name)
        if pna is None or pna.spec.get("podUID") != pod.uid:
            return
        status = self.statuses.pop(key, None) or status_from_object(pna.status)
        if status is not None and status.state not in (AllocationState.PENDING,):
            network = self.networks.get(node_name)
            while True:
                result = await release_step(
                    status,
                    f"{pod.namespace}/{pod.name}/{pod.uid}",
                    network,
                    policy=self.policy,
                    rng=self._rng,
                    now=self.clock.now(),
                )
                status = result.status
                if result.retry_in is None:
                    break
                pna = await self._write_status(pna, status)
                await self.clock.sleep(result.retry_in)
        self._wake_pool(node_name)
        with contextlib.suppress(NotFoundApiError):
            await self.client.delete(pna.key)

    # ------------------------------------------------------------------ what the harness asks
    def gave_up_on(self, key: str) -> bool:
        return key in self.gave_up

    def busy(self) -> bool:
        """An allocation step, a release or a pool pass is in flight, here or in a NodeNetwork's own
        background refill (read from its private task handles: the engine has no public 'busy')."""
        if self._in_step or self._busy_ops:
            return True
        for network in self.networks.values():
            for task in (getattr(network, "_refill", None), getattr(network, "_background", None)):
                if isinstance(task, asyncio.Future) and not task.done():
                    return True
        return False

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
        pna = self.api.peek(PNA, pod.namespace, pod.name)
        status = status_from_object(pna.status) if pna is not None else None
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
        for network in self.networks.values():
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
        for network in self.networks.values():
            counts = network.pool.branch_counts()
            warm += counts.get(BranchState.WARM, 0)
            cooling += counts.get(BranchState.COOLING, 0)
        known, shortage = self.exhaustion_known_at_s, self.first_shortage_at_s
        return {
            "branch_enis_warm_at_end": warm,
            "branch_enis_cooling_at_end": cooling,
            "exhaustion_known_at_s": round(known, 3) if known is not None else "never",
            "first_prefix_shortage_at_s": round(shortage, 3) if shortage is not None else "none",
        }


def _short_of_prefixes(status: AllocationStatus) -> bool:
    """The attempt found no /28: it was served by the fallback, or waits for capacity."""
    if status.reason == "PrefixFallback":
        return True
    error = status.last_error
    return (
        status.state is AllocationState.WAITING_FOR_CAPACITY
        and error is not None
        and error.code
        in (
            "InsufficientCidrBlocks",
            "InvalidParameterValue",
        )
    )


def _pool_signature(network: NodeNetwork) -> tuple[int, ...]:
    pool = network.pool
    counts = pool.branch_counts()
    return (
        counts[BranchState.WARM],
        counts[BranchState.ASSIGNED],
        counts[BranchState.COOLING],
        len(pool.enis),
        pool.free_ip_count(),
        len(pool.ip_holders),
        len(pool.cooling_ips),
    )


def _pool_is_quiet(network: NodeNetwork) -> bool:
    """Nothing for a periodic pass to do: no cool-down to expire, no ENI waiting for deletion, and
    netalloc's own planner has no action for the pool (asked, not re-derived here)."""
    pool = network.pool
    if pool.cooling_ips or network.orphaned_enis or pool.branch_counts()[BranchState.COOLING]:
        return False
    return plan_pool(pool, network.clock.now()).empty
