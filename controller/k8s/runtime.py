"""The controller's runtime: what the kopf handlers call. Thin glue between Kubernetes and the engine.

- Pods, Nodes, Namespaces and SecurityGroupPolicies are only watched (kopf `on.event`, which writes
  nothing); the runtime keeps the little it needs of them in memory.
- For each managed, scheduled pod the runtime creates a PodNetworkAllocation owned by the pod, with
  netalloc's release finalizer set at creation. All progress lives in the PNA's status.
- A work queue serialises work per PNA; each pass makes one state-machine step (the engine's
  allocation driver) and writes the status only when it changed. Retries are scheduled from the
  status's `nextAttemptTime`, never by ad-hoc sleeps.
- The in-memory status by allocation key is the truth between writes (Karpenter's lesson): a
  failed status write never causes a second allocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controller.clock import Clock, WallClock
from controller.core import tags as tagging
from controller.core.allocation_model import AssignedResources
from controller.core.allocation_state import AllocationState, AllocationStatus, SpecChanged, transition
from controller.core.instance_limits import InstanceLimits
from controller.core.pod_selection import (
    LabelSelector,
    SecurityGroupPolicy,
    allocation_mode,
    is_managed_pod,
    security_groups_for,
)
from controller.core.retry_policy import RetryPolicy
from controller.engine.allocation_driver import allocation_step, release_step
from controller.engine.node_network import NodeNetwork, open_node_network
from controller.k8s.kube_api import KubeApi
from controller.k8s.nnp_mapping import new_nnp, nnp_status, parse_provider_id
from controller.k8s.pna_mapping import (
    RELEASE_FINALIZER,
    new_pna,
    request_from_pna,
    status_from_k8s,
    status_to_k8s,
)
from controller.observability import Metrics
from controller.ports.ec2 import Ec2Port
from controller.settings import PoolSettings

logger = logging.getLogger("netalloc.controller")
JsonObject = dict[str, Any]
ObjectKey = tuple[str, str]  # (namespace, name)


class ControllerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cluster_name: str = Field(default="netalloc", min_length=1)
    namespace_selector: str = "netalloc.dev/managed=true"
    pool: PoolSettings = Field(default_factory=PoolSettings)
    workers: int = Field(default=16, ge=1)
    reconcile_interval_s: float = Field(default=10.0, gt=0)
    leak_passes: int = Field(default=2, ge=1, description="sweeps an unknown tagged ENI must survive")
    node_wait_s: float = Field(
        default=2.0, gt=0, description="recheck delay while a node's pool is not ready"
    )


InstanceHook = Callable[[str, str, str], Awaitable[None]]  # node name, instance id, instance type


class ControllerRuntime:
    def __init__(
        self,
        *,
        config: ControllerConfig,
        ec2: Ec2Port,
        limits_for: Callable[[str], Awaitable[InstanceLimits]],
        kube: KubeApi,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        on_new_instance: InstanceHook | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self.ec2 = ec2
        self.limits_for = limits_for
        self.kube = kube
        self.metrics = metrics or Metrics()
        self.clock = clock or WallClock()
        self.on_new_instance = on_new_instance
        self.selector = LabelSelector.parse(config.namespace_selector)
        self.policy = RetryPolicy()
        self.rng = random.Random(seed)
        # caches of watched objects
        self.namespace_labels: dict[str, dict[str, str]] = {}
        self.policies: dict[ObjectKey, SecurityGroupPolicy] = {}
        self.pods: dict[ObjectKey, JsonObject] = {}
        self.nodes_with_pool: set[str] = set()
        # our own objects
        self.pnas: dict[ObjectKey, JsonObject] = {}
        self.statuses: dict[str, AllocationStatus] = {}  # allocation key -> latest status
        self.written: dict[ObjectKey, JsonObject] = {}  # the status body we last wrote
        self.created_at: dict[ObjectKey, float] = {}  # when this controller first saw the PNA
        self._creating: set[ObjectKey] = set()  # PNAs requested from the API, not yet seen
        # seconds from PNA creation to Allocated, the most recent ones, for reports and benchmarks
        self.latencies: deque[float] = deque(maxlen=100_000)
        self.waiting_by_node: dict[str, set[ObjectKey]] = {}  # WaitingForCapacity PNAs, to wake
        self.networks: dict[str, NodeNetwork] = {}
        self._pool_written: dict[str, JsonObject] = {}  # NodeNetworkPool status last written, per node
        self.recorded: dict[str, dict[str, AssignedResources]] = {}  # node -> key -> held, from PNAs
        # the work queue
        self._queue: asyncio.Queue[ObjectKey] = asyncio.Queue()
        self._queued: set[ObjectKey] = set()
        self._active: set[ObjectKey] = set()
        self._again: set[ObjectKey] = set()
        self._timers: dict[ObjectKey, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._leak_seen: dict[str, int] = {}
        self.started = asyncio.Event()

    # ----- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Prime caches and learn what existing PNAs hold, before any allocation is served."""
        for ns in await self.kube.list_namespaces():
            self.namespace_labels[ns["metadata"]["name"]] = dict(ns["metadata"].get("labels") or {})
        for body in await self.kube.list_security_group_policies():
            policy = SecurityGroupPolicy.from_k8s(body)
            self.policies[(policy.namespace, policy.name)] = policy
        for pna in await self.kube.list_pnas():
            key = (pna["metadata"]["namespace"], pna["metadata"]["name"])
            self.pnas[key] = pna
            status = status_from_k8s(pna)
            if status is not None and status.resources is not None:
                request = request_from_pna(pna)
                self.statuses[request.key] = status
                self.recorded.setdefault(request.node_name, {})[request.key] = status.resources
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._worker()) for _ in range(self.config.workers)]
        self._tasks.append(loop.create_task(self._periodic()))
        self.started.set()

    async def stop(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for network in self.networks.values():
            await network.close()

    # ----- watched objects ----------------------------------------------------------------------------
    def on_namespace(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        name = body["metadata"]["name"]
        if event_type == "DELETED":
            self.namespace_labels.pop(name, None)
            return
        labels = dict(body["metadata"].get("labels") or {})
        changed = self.namespace_labels.get(name) != labels
        self.namespace_labels[name] = labels
        if changed:
            for (namespace, _), pod in list(self.pods.items()):
                if namespace == name:
                    self._pod_changed(pod)

    def on_security_group_policy(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        policy = SecurityGroupPolicy.from_k8s(body)
        if event_type == "DELETED":
            self.policies.pop((policy.namespace, policy.name), None)
        else:
            self.policies[(policy.namespace, policy.name)] = policy

    def on_pod(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self.pods.pop(key, None)
            self._pod_gone(key, meta.get("uid"))
            return
        self.pods[key] = dict(body)
        self._pod_changed(body)

    def _pod_changed(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        key = (meta["namespace"], meta["name"])
        existing = self.pnas.get(key)
        if existing is not None and existing["spec"].get("podUID") != meta.get("uid"):
            self._pod_gone(key, existing["spec"].get("podUID"))  # a new pod with an old name
            return
        labels = self.namespace_labels.get(meta["namespace"], {})
        if not is_managed_pod(pod, labels, self.selector):
            phase = (pod.get("status") or {}).get("phase")
            if existing is not None and (meta.get("deletionTimestamp") or phase in ("Succeeded", "Failed")):
                self._pod_gone(key, meta.get("uid"))
            return
        if existing is None and key not in self._creating:
            self._creating.add(key)
            groups = security_groups_for(pod, self.policies.values())
            mode = allocation_mode(groups, self.config.pool.enable_prefix_delegation)
            asyncio.get_running_loop().create_task(
                self._create_pna(new_pna(pod=pod, mode=mode, security_group_ids=groups))
            )

    async def _create_pna(self, body: JsonObject) -> None:
        try:
            await self.kube.create_pna(body)
        except Exception:
            key = (body["metadata"]["namespace"], body["metadata"]["name"])
            self._creating.discard(key)  # the next pod event tries again
            logger.exception("could not create PodNetworkAllocation %s/%s", *key)

    def _pod_gone(self, key: ObjectKey, uid: str | None) -> None:
        pna = self.pnas.get(key)
        if pna is None or pna["metadata"].get("deletionTimestamp"):
            return
        asyncio.get_running_loop().create_task(
            self.kube.delete_pna(key[0], key[1], uid=pna["metadata"].get("uid"))
        )

    def on_node(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        name = meta["name"]
        if event_type == "DELETED" or meta.get("deletionTimestamp"):
            if name in self.nodes_with_pool:
                self.nodes_with_pool.discard(name)
                asyncio.get_running_loop().create_task(self.kube.delete_nnp(name))
            return
        if name in self.nodes_with_pool:
            return
        parsed = parse_provider_id((body.get("spec") or {}).get("providerID") or "")
        labels = meta.get("labels") or {}
        instance_type = labels.get("node.kubernetes.io/instance-type") or labels.get(
            "beta.kubernetes.io/instance-type"
        )
        if parsed is None or not instance_type:
            return  # not an EC2 node: pods there get no PNA progress and say so
        self.nodes_with_pool.add(name)
        asyncio.get_running_loop().create_task(
            self._create_nnp(dict(body), parsed.instance_id, instance_type)
        )

    async def _create_nnp(self, node: JsonObject, instance_id: str, instance_type: str) -> None:
        name = node["metadata"]["name"]
        try:
            if self.on_new_instance is not None:
                await self.on_new_instance(name, instance_id, instance_type)
            instance = await self.ec2.describe_instance(instance_id)
            body = new_nnp(
                node=node,
                instance_id=instance_id,
                instance_type=instance_type,
                subnet_id=instance.subnet_id,
                settings=self.config.pool,
            )
            await self.kube.create_nnp(body)
        except Exception:
            self.nodes_with_pool.discard(name)
            logger.exception("could not create NodeNetworkPool %s", name)

    # ----- NodeNetworkPools ----------------------------------------------------------------------------
    async def register_pool(self, nnp: Mapping[str, Any]) -> JsonObject:
        """Build the node's runtime, adopt what EC2 and the PNAs say it holds, pre-allocate. Idempotent."""
        spec = nnp["spec"]
        node = spec["nodeName"]
        if node in self.networks:
            return nnp_status(self.networks[node], ready=True)
        network = await open_node_network(
            ec2=self.ec2,
            clock=self.clock,
            limits_for=self.limits_for,
            settings=self.config.pool,
            node_name=node,
            instance_id=spec["instanceId"],
            cluster_name=self.config.cluster_name,
            rng=random.Random(self.rng.getrandbits(32)),
        )
        lost: list[str] = []
        report = await network.register(self.recorded.pop(node, {}), lost=lost)
        for allocation_key in lost:
            logger.warning("%s: %s holds resources the pool no longer has", node, allocation_key)
        self.networks[node] = network
        self._update_pool_metrics(network)
        for object_key, pna in list(self.pnas.items()):  # pods that were waiting for this node
            if pna["spec"].get("nodeName") == node:
                self.enqueue(object_key)
        if report.failed:
            logger.warning("%s: pre-allocation incomplete: %s", node, [f.code for f in report.failed])
        return nnp_status(network, ready=not report.failed)

    async def drain_pool(self, nnp: Mapping[str, Any]) -> list[str]:
        node = nnp["spec"]["nodeName"]
        network = self.networks.pop(node, None)
        self.nodes_with_pool.discard(node)
        if network is None:
            return []
        problems = await network.drain()
        for key, pna in list(self.pnas.items()):
            if pna["spec"].get("nodeName") == node:
                self.enqueue(key)
        return problems

    # ----- PodNetworkAllocations -----------------------------------------------------------------------
    def on_pna(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        if event_type == "DELETED":
            gone = self.pnas.pop(key, None)
            if gone is not None:
                self.waiting_by_node.get(gone["spec"].get("nodeName", ""), set()).discard(key)
            self.written.pop(key, None)
            self.created_at.pop(key, None)
            timer = self._timers.pop(key, None)
            if timer is not None:
                timer.cancel()
            return
        previous = self.pnas.get(key)
        self.pnas[key] = dict(body)
        self.created_at.setdefault(key, self.clock.now())
        self._creating.discard(key)
        if (
            previous is not None
            and not meta.get("deletionTimestamp")
            and previous["metadata"].get("generation") == meta.get("generation")
            and (body.get("status") or {}) == self.written.get(key)
        ):
            return  # the echo of our own status write
        self.enqueue(key)

    def enqueue(self, key: ObjectKey) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _enqueue_after(self, key: ObjectKey, delay: float) -> None:
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._timer_fired, key)

    def _timer_fired(self, key: ObjectKey) -> None:
        self._timers.pop(key, None)
        self.enqueue(key)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                await self._process(key)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("processing %s/%s failed; retrying", *key)
                self._enqueue_after(key, 5.0)
            finally:
                self._active.discard(key)
                if key in self._again:
                    self._again.discard(key)
                    self.enqueue(key)

    async def _process(self, key: ObjectKey) -> None:
        pna = self.pnas.get(key)
        if pna is None:
            return
        request = request_from_pna(pna)
        meta = pna["metadata"]
        status = (
            self.statuses.get(request.key) or status_from_k8s(pna) or AllocationStatus.new(self.clock.now())
        )
        network = self.networks.get(request.node_name)
        if meta.get("deletionTimestamp"):
            await self._release(key, pna, request.key, status, network)
            return
        if network is None:
            await self._write_status(key, pna, status, waiting_for_node=request.node_name)
            self._enqueue_after(key, self.config.node_wait_s)
            return
        generation = int(meta.get("generation") or 1)
        if generation > status.observed_generation and status.state in (
            AllocationState.PENDING,
            AllocationState.FAILED,
            AllocationState.RETRYING,
            AllocationState.WAITING_FOR_CAPACITY,
        ):
            status = transition(
                status,
                SpecChanged(generation=generation),
                now=self.clock.now(),
                policy=self.policy,
                rng=self.rng,
            )
        before = status.state
        result = await allocation_step(status, request, network, policy=self.policy, rng=self.rng)
        self.statuses[request.key] = result.status
        self._note_waiting(key, request.node_name, result.status)
        if result.status.state is not before or result.attempted:
            self._record_transition(key, pna, before, result.status)
        await self._write_status(key, pna, result.status)
        if result.retry_in is not None:
            self._enqueue_after(key, result.retry_in)

    async def _release(
        self,
        key: ObjectKey,
        pna: Mapping[str, Any],
        allocation_key: str,
        status: AllocationStatus,
        network: NodeNetwork | None,
    ) -> None:
        result = await release_step(
            status, allocation_key, network, policy=self.policy, rng=self.rng, now=self.clock.now()
        )
        self.statuses[allocation_key] = result.status
        if result.status.state is not AllocationState.RELEASED:
            await self._write_status(key, pna, result.status)
            self._enqueue_after(key, result.retry_in or 1.0)
            return
        self.statuses.pop(allocation_key, None)
        self.metrics.transitions.labels(
            from_state=status.state.value, to_state="Released", reason="Released"
        ).inc()
        remaining = [f for f in pna["metadata"].get("finalizers") or [] if f != RELEASE_FINALIZER]
        await self.kube.set_pna_finalizers(key[0], key[1], remaining)
        if network is not None:
            self._wake_waiting(network.node_name)

    def _wake_waiting(self, node: str) -> None:
        """Capacity was returned on this node: waiting allocations there try again now."""
        for key in list(self.waiting_by_node.get(node, ())):
            self.enqueue(key)

    def _note_waiting(self, key: ObjectKey, node: str, status: AllocationStatus) -> None:
        waiting = self.waiting_by_node.setdefault(node, set())
        if status.state is AllocationState.WAITING_FOR_CAPACITY:
            waiting.add(key)
        else:
            waiting.discard(key)

    async def _write_status(
        self,
        key: ObjectKey,
        pna: Mapping[str, Any],
        status: AllocationStatus,
        *,
        waiting_for_node: str | None = None,
    ) -> None:
        body = status_to_k8s(status)
        if waiting_for_node is not None:
            body["message"] = (
                f"waiting for node {waiting_for_node}'s NodeNetworkPool: the node is not registered yet, "
                "has no EC2 providerID or instance-type label, or its pool failed to initialise"
            )
            body["reason"] = "NodePoolNotReady"
        if self.written.get(key) == body:
            return
        self.written[key] = body
        if not await self.kube.patch_pna_status(key[0], key[1], body):
            self.written.pop(key, None)

    def _record_transition(
        self, key: ObjectKey, pna: Mapping[str, Any], before: AllocationState, status: AllocationStatus
    ) -> None:
        self.metrics.transitions.labels(
            from_state=before.value, to_state=status.state.value, reason=status.reason
        ).inc()
        mode = pna["spec"].get("mode", "")
        if status.state is AllocationState.ALLOCATED:
            started = self.created_at.get(key)
            if started is not None:
                elapsed = self.clock.now() - started
                self.latencies.append(elapsed)
                self.metrics.allocation_latency.labels(mode=mode, outcome="allocated").observe(elapsed)
        elif status.state is AllocationState.FAILED:
            self.metrics.allocation_latency.labels(mode=mode, outcome="failed").observe(
                self.clock.now() - self.created_at.get(key, self.clock.now())
            )
        warning = status.state in (
            AllocationState.FAILED,
            AllocationState.WAITING_FOR_CAPACITY,
            AllocationState.RETRYING,
        )
        if status.state is not before or warning:
            resources = status.resources
            message = status.message
            if resources is not None:
                message = f"{resources.mode.value} {resources.ip} on {resources.eni_id}" + (
                    f" VLAN {resources.vlan_id}" if resources.vlan_id else ""
                )
            asyncio.get_running_loop().create_task(
                self.kube.post_event(
                    pna, event_type="Warning" if warning else "Normal", reason=status.reason, message=message
                )
            )

    # ----- periodic reconcile and leak collection ------------------------------------------------------
    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.config.reconcile_interval_s)
            try:
                await self.reconcile_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("periodic reconcile failed")

    async def reconcile_once(self) -> dict[str, int]:
        """Top pools up or trim them, refresh NodeNetworkPool status, collect leaked ENIs."""
        for network in list(self.networks.values()):
            report = await network.reconcile()
            self._update_pool_metrics(network)
            await self._write_pool_status(network, ready=not report.failed)
            if report.completed:
                self._wake_waiting(network.node_name)
        states = Counter(s.state.value for s in self.statuses.values())
        self.metrics.set_pnas_by_state({state.value: states.get(state.value, 0) for state in AllocationState})
        deleted = await self.collect_leaks()
        return {"leaked_enis_deleted": deleted}

    async def _write_pool_status(self, network: NodeNetwork, *, ready: bool) -> None:
        """Patch the NodeNetworkPool status only when something in it changed (timestamps aside)."""
        body = nnp_status(network, ready=ready)
        comparable = {**body, "conditions": [{**c, "lastTransitionTime": ""} for c in body["conditions"]]}
        if self._pool_written.get(network.node_name) == comparable:
            return
        self._pool_written[network.node_name] = comparable
        if not await self.kube.patch_nnp_status(network.node_name, body):
            self._pool_written.pop(network.node_name, None)

    async def collect_leaks(self) -> int:
        """Delete ENIs tagged for this cluster that no pool knows, once seen in consecutive sweeps."""
        tagged = await self.ec2.describe_network_interfaces(
            tags={tagging.TAG_CLUSTER: self.config.cluster_name}
        )
        known: set[str] = set()
        for network in self.networks.values():
            pool = network.pool
            known.update(pool.enis)
            known.update(pool.branches)
            if pool.trunk_eni_id:
                known.add(pool.trunk_eni_id)
        seen_now: dict[str, int] = {}
        deleted = 0
        for eni in tagged:
            owner = eni.tags.get(tagging.TAG_OWNER, "")
            if eni.eni_id in known or (owner in self.nodes_with_pool and owner not in self.networks):
                continue  # in a pool, or its node's pool is still being built
            if eni.interface_type.value == "branch" and eni.status == "in-use":
                continue  # associated branch of a pool being rebuilt; its trunk's pool adopts or drains it
            count = self._leak_seen.get(eni.eni_id, 0) + 1
            seen_now[eni.eni_id] = count
            if count >= self.config.leak_passes:
                try:
                    if eni.attachment is not None:
                        await self.ec2.detach_network_interface(eni.attachment.attachment_id, force=True)
                    await self.ec2.delete_network_interface(eni.eni_id)
                    deleted += 1
                    seen_now.pop(eni.eni_id)
                    self.metrics.leaked_enis_deleted.inc()
                    logger.info("deleted leaked ENI %s (owner %s)", eni.eni_id, owner or "?")
                except Exception:
                    logger.exception("could not delete leaked ENI %s", eni.eni_id)
        self._leak_seen = seen_now
        return deleted

    def _update_pool_metrics(self, network: NodeNetwork) -> None:
        status = network.pool.status()
        node = network.node_name
        self.metrics.pool_free_ips.labels(node=node).set(status.free_ips)
        self.metrics.pool_used_ips.labels(node=node).set(status.used_ips)
        self.metrics.pool_warm_branches.labels(node=node).set(status.branch_warm)
        self.metrics.pool_branches_in_use.labels(node=node).set(status.branch_in_use)

    # ----- introspection ------------------------------------------------------------------------------------
