"""The simulated cluster around the allocator: nodes joining, pods arriving, a scheduler, a rolling
update, other tenants in the subnet, a controller crash. Identical for every approach.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import random
import zlib
from collections import deque
from collections.abc import Coroutine
from typing import Any

from pydantic import BaseModel, ConfigDict

from controller.clock import Clock
from controller.research.api_server import (
    NODE,
    POD,
    ApiClient,
    ApiServer,
    KubeObject,
    NotFoundApiError,
    ObjectKey,
)
from controller.research.approach import Approach, ReportsNextAction
from controller.research.baseline_params import HAS_TRUNK_ATTACHED_LABEL, POD_ENI_RESOURCE
from controller.research.metrics import MetricsRecorder
from controller.research.scenarios import ScenarioName, ScenarioParams
from controller.research.security_group_policy import PRESTOP_POLICY_LABEL, make_policy
from controller.research.sim_world import SimWorld
from controller.research.virtual_time import spawn

TARGET_NODE_LABEL = "sim/target-node"
APP_LABEL = "app"
GROUP_SET_LABEL = "sim/group-set"  # which SecurityGroupPolicy selects the pod, with more than one set
QUIET_POLL_S = 1.0
QUIET_FALLBACK_S = 180.0  # without a quietness hook: 60 s cool-down-sized wait ×3, marked unverified
QUIET_LIMIT_S = 3600.0


def node_is_ready(node: KubeObject) -> bool:
    """The Node's Ready condition is True (the scheduler places pods on Ready nodes only)."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in node.status.get("conditions", ())
    )


def group_set_value(index: int) -> str:
    return f"set-{index}"


def _ready_status(ready: bool) -> dict[str, Any]:
    return {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}


class WorkloadOutcome(BaseModel):
    """What the workload saw besides the per-pod metrics."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    end_s: float
    settled: bool
    waiting_at_checkpoint: int | None = None
    waiting_with_capacity_reason: int | None = None
    warmup_ready: int | None = None
    warmup_end_s: float | None = None
    quiet_hook: bool = False
    quiet_before_rollout: bool | None = None
    drained: bool | None = None
    drained_at_s: float | None = None


class Scheduler:
    """Binds each pod to the node the workload chose for it, once that node can take it: a pod that
    requests `vpc.amazonaws.com/pod-eni` waits until the node advertises that resource, and never
    more of them than advertised. Bindings are not pod UPDATEs: no pod webhook sees them."""

    def __init__(self, api: ApiServer) -> None:
        self.api = api
        self.client: ApiClient = api.client("kube-scheduler", qps=None, burst=None)
        self.pending: dict[str, deque[KubeObject]] = {}
        self.bound_eni_pods: dict[str, int] = {}
        self.nodes: dict[str, KubeObject] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        api.watch(NODE, self._on_node)
        api.watch(POD, self._on_pod)

    def _on_node(self, event: str, node: KubeObject) -> None:
        if event == "DELETED":
            self.nodes.pop(node.name, None)
            return
        self.nodes[node.name] = node
        self._try_bind(node.name)

    def _on_pod(self, event: str, pod: KubeObject) -> None:
        target = pod.labels.get(TARGET_NODE_LABEL, "")
        if event == "DELETED":
            if pod.spec.get("nodeName") and _requests_pod_eni(pod):
                self.bound_eni_pods[target] = self.bound_eni_pods.get(target, 0) - 1
                self._try_bind(target)
            return
        if event == "ADDED" and not pod.spec.get("nodeName"):
            self.pending.setdefault(target, deque()).append(pod)
            self._try_bind(target)

    def _try_bind(self, node_name: str) -> None:
        node = self.nodes.get(node_name)
        queue = self.pending.get(node_name)
        if node is None or not queue or not node_is_ready(node):
            return
        capacity_text = node.status.get("capacity", {}).get(POD_ENI_RESOURCE)
        capacity = int(capacity_text) if capacity_text is not None else 0
        while queue:
            pod = queue[0]
            if _requests_pod_eni(pod):
                if self.bound_eni_pods.get(node_name, 0) >= capacity:
                    return
                self.bound_eni_pods[node_name] = self.bound_eni_pods.get(node_name, 0) + 1
            queue.popleft()
            spawn(self._bind(pod.key, node_name), name="bind", registry=self._tasks)

    async def _bind(self, key: ObjectKey, node_name: str) -> None:
        with contextlib.suppress(NotFoundApiError):
            await self.client.bind(key, node_name)


def _requests_pod_eni(pod: KubeObject) -> bool:
    containers = pod.spec.get("containers", [])
    return bool(containers) and POD_ENI_RESOURCE in containers[0].get("resources", {}).get("limits", {})


class Workload:
    """Drives one scenario against one approach in one virtual-time run."""

    def __init__(
        self,
        *,
        params: ScenarioParams,
        world: SimWorld,
        approach: Approach,
        recorder: MetricsRecorder,
        seed: int,
    ) -> None:
        self.params = params
        self.world = world
        self.api = world.api
        self.clock: Clock = world.clock
        self.approach = approach
        self.recorder = recorder
        self._rng = random.Random(seed ^ zlib.crc32(b"workload"))
        self._pod_counter = 0
        self._node_names: list[str] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.scheduler = Scheduler(self.api)
        self.terminating: set[str] = set()
        recorder.network_ready_listeners.append(self._kubelet_starts_containers)

    # ------------------------------------------------------------------ building blocks
    def register_nodes(self, count: int) -> None:
        """Nodes register now; aws-node marks each and it turns Ready `node_ready_gap_s` later (field
        notes §7); the kubelet then reports the Node status every `kubelet_status_report_s`."""
        gap = self.params.node_ready_gap_s
        for index in range(count):
            name = f"node-{index:04d}"
            instance = self.world.launch_node_instance()
            labels = {"node.kubernetes.io/instance-type": self.params.instance_type}
            if gap <= 0:
                labels[HAS_TRUNK_ATTACHED_LABEL] = "false"
            self.api.apply_create(
                KubeObject(
                    kind=NODE,
                    namespace="",
                    name=name,
                    labels=labels,
                    spec={"providerID": instance.instance_id},
                    status=_ready_status(gap <= 0),
                )
            )
            self._node_names.append(name)
            self._spawn(self._kubelet_node_status(name, gap))

    async def _kubelet_node_status(self, name: str, gap: float) -> None:
        if gap > 0:
            await self.clock.sleep(gap)
            # aws-node marks the node for RC (field notes §2) and the node turns Ready together.
            self.api.apply_merge_patch(
                (NODE, "", name),
                {"metadata": {"labels": {HAS_TRUNK_ATTACHED_LABEL: "false"}}, "status": _ready_status(True)},
            )
        beat = 0
        while True:
            await self.clock.sleep(self.params.kubelet_status_report_s)
            beat += 1
            if self.api.peek(NODE, "", name) is None:
                return
            self.api.apply_merge_patch((NODE, "", name), {"status": {"kubeletHeartbeat": beat}})

    def _kubelet_starts_containers(self, key: str) -> None:
        """Network ready → the container starts → the readiness probe passes → pod Ready."""
        delay = self.params.container_start_s + self.params.readiness_s
        asyncio.get_running_loop().call_later(delay, self._pod_ready, key)

    def _pod_ready(self, key: str) -> None:
        namespace, name = key.split("/", 1)
        if key not in self.terminating and self.api.peek(POD, namespace, name) is not None:
            self.recorder.pod_became_ready(key)

    def create_policies(self) -> None:
        """One SecurityGroupPolicy per group set. With one set it is "web-sgp" selecting app=web, as
        before there were sets; with more, "web-sgp-<i>" also selects the pod's GROUP_SET_LABEL."""
        sets = self.world.pod_security_groups
        for index, group in enumerate(sets):
            name, selector = "web-sgp", {APP_LABEL: "web"}
            if len(sets) > 1:
                name, selector = f"web-sgp-{index}", {**selector, GROUP_SET_LABEL: group_set_value(index)}
            policy = make_policy(self.params.namespace, name, selector, [group])
            self.world.policies.setdefault(policy.namespace, []).append(policy)
            self.api.apply_create(policy)

    def create_pod(self, node_name: str, *, version: str = "v1", group_set: int = 0) -> str:
        """A pod of `group_set` (an index into the world's pod security groups)."""
        self._pod_counter += 1
        name = f"web-{version}-{self._pod_counter:06d}"
        labels = {APP_LABEL: "web", TARGET_NODE_LABEL: node_name, "version": version}
        if self.params.group_sets > 1:
            labels[GROUP_SET_LABEL] = group_set_value(group_set % self.params.group_sets)
        if self.params.prestop_fraction and self._rng.random() < self.params.prestop_fraction:
            labels[PRESTOP_POLICY_LABEL] = "true"
        pod = KubeObject(
            kind=POD,
            namespace=self.params.namespace,
            name=name,
            labels=labels,
            spec={
                "containers": [
                    {"name": "app", "image": f"web:{version}", "resources": {"limits": {"cpu": "100m"}}}
                ],
                "serviceAccountName": "default",
                "terminationGracePeriodSeconds": 30,
            },
        )
        stored = self.api.apply_create(pod)
        key = f"{stored.namespace}/{stored.name}"
        self.recorder.pod_created(key, node_name)
        return key

    def delete_pod(self, key: str) -> None:
        """Graceful deletion: the pod terminates for `termination_s`, then it is gone (DELETED)."""
        namespace, name = key.split("/", 1)
        if self.api.peek(POD, namespace, name) is None or key in self.terminating:
            return
        self.terminating.add(key)
        self.api.apply_graceful_delete((POD, namespace, name))  # watchers see it terminating
        asyncio.get_running_loop().call_later(self.params.termination_s, self._pod_gone, key)

    def _pod_gone(self, key: str) -> None:
        self.terminating.discard(key)
        namespace, name = key.split("/", 1)
        if self.api.peek(POD, namespace, name) is not None:
            self.api.apply_delete((POD, namespace, name))

    async def wait_quiet(self, deadline: float) -> bool | None:
        """Wait until no pod is terminating and the approach says it is quiet (`ReportsNextAction`).
        True: quiet; False: the deadline came first; None: the approach has no hook, so after it is
        idle a fixed `QUIET_FALLBACK_S` is waited and quietness is unverified."""
        while self.terminating and self.clock.now() < deadline:
            await self.clock.sleep(QUIET_POLL_S)
        if not isinstance(self.approach, ReportsNextAction):
            while self.approach.busy() and self.clock.now() < deadline:
                await self.clock.sleep(QUIET_POLL_S)
            await self.clock.sleep(max(0.0, min(QUIET_FALLBACK_S, deadline - self.clock.now())))
            return None
        while self.clock.now() < deadline:
            if self.approach.next_action_due() is None and not self.approach.busy():
                return True
            await self.clock.sleep(QUIET_POLL_S)
        return False

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        spawn(coro, name="workload", registry=self._tasks)

    def settled(self) -> bool:
        return all(self.approach.gave_up_on(key) for key in self.recorder.pending)

    async def wait_settled(self, deadline: float, check_every_s: float = 1.0) -> bool:
        while self.clock.now() < deadline:
            if self.settled():
                return True
            await self.clock.sleep(check_every_s)
        return self.settled()

    async def _crash_and_restart(self, at_s: float, delay_s: float) -> None:
        await self.clock.sleep(max(0.0, at_s - self.clock.now()))
        await self.approach.crash()
        await self.clock.sleep(delay_s)
        self.approach.restart()

    # ------------------------------------------------------------------ scenarios
    async def run(self) -> WorkloadOutcome:
        name = self.params.name
        if name is ScenarioName.PREFIX_EXHAUSTION:
            return await self._prefix_exhaustion()
        if name is ScenarioName.ROLLOUT_CHURN:
            return await self._rollout()
        return await self._batch()

    async def _batch(self) -> WorkloadOutcome:
        params = self.params
        self.create_policies()
        self.approach.start()
        self.register_nodes(params.nodes)
        for node in self._node_names:
            for index in range(params.pods_per_node):
                self.create_pod(node, group_set=index)  # a node's pods take the sets in turn
        if params.crash_at_s is not None:
            self._spawn(self._crash_and_restart(params.crash_at_s, params.restart_delay_s))
            # Do not call the run settled before the restart happened.
            await self.clock.sleep(params.crash_at_s + params.restart_delay_s)
        settled = await self.wait_settled(params.horizon_s)
        return WorkloadOutcome(end_s=self.clock.now(), settled=settled)

    async def _prefix_exhaustion(self) -> WorkloadOutcome:
        params = self.params
        world = self.world
        self.approach.start()
        self.register_nodes(params.nodes)
        taken = world.vpc.fragment(
            world.subnet_id, keep_free_per_block=params.fragment_keep_free_per_block, seed=world.seed
        )
        blocks: dict[int, list[str]] = {}
        for address in taken:
            block = int(ipaddress.IPv4Address(address)) // 16
            blocks.setdefault(block, []).append(address)
        ordered = sorted(blocks)
        # Spread the initially free /28s through the subnet: every k-th fragmented block is freed.
        stride = max(1, len(ordered) // max(1, params.initial_free_prefixes))
        initially_free = ordered[::stride][: params.initial_free_prefixes]
        for block in initially_free:
            world.vpc.vacate(world.subnet_id, blocks.pop(block))
        arrivals = [
            self._node_names[i % len(self._node_names)] for i in range(params.nodes * params.pods_per_node)
        ]
        self._spawn(self._arrive(arrivals, params.pod_interval_s))
        await self.clock.sleep(params.free_at_s)
        waiting = [key for key in self.recorder.pending]
        with_reason = 0
        for key in waiting:
            namespace, name = key.split("/", 1)
            pod = self.api.peek(POD, namespace, name)
            if pod is not None and self.approach.shows_capacity_reason(pod):
                with_reason += 1
        remaining = sorted(blocks)
        to_free = remaining[: math.ceil(len(remaining) * params.free_block_fraction)]
        for block in to_free:
            world.vpc.vacate(world.subnet_id, blocks.pop(block))
        settled = await self.wait_settled(params.horizon_s)
        return WorkloadOutcome(
            end_s=self.clock.now(),
            settled=settled,
            waiting_at_checkpoint=len(waiting),
            waiting_with_capacity_reason=with_reason,
        )

    async def _arrive(self, nodes: list[str], interval_s: float) -> None:
        for node in nodes:
            self.create_pod(node)
            if interval_s > 0:
                await self.clock.sleep(interval_s)

    async def _rollout(self) -> WorkloadOutcome:
        """Warm up, wait until the approach is quiet, then a rolling update (max surge 25%, max
        unavailable 0): an old pod is deleted (gracefully) only when a new one is Ready. Counting
        runs until every new pod is Ready and the approach is quiet again (delete queues drained)."""
        params = self.params
        self.create_policies()
        self.approach.start()
        self.register_nodes(params.nodes)
        nodes = self._node_names
        old = [self.create_pod(nodes[i % len(nodes)], version="v1") for i in range(params.replicas)]
        await self.wait_settled(params.horizon_s)
        warmup_ready = len(self.recorder.ready)
        quiet_before = await self.wait_quiet(self.clock.now() + QUIET_LIMIT_S)
        warmup_end = self.clock.now()
        self.recorder.reset_origin()
        surge = max(1, math.ceil(params.replicas * params.max_surge_fraction))
        ready_events: asyncio.Queue[str] = asyncio.Queue()
        self.recorder.pod_ready_listeners.append(ready_events.put_nowait)
        to_delete = deque(old)
        created = 0
        new_in_flight = 0
        node_cycle = 0

        def start_new() -> None:
            nonlocal created, new_in_flight, node_cycle
            self.create_pod(nodes[node_cycle % len(nodes)], version="v2")
            node_cycle += 1
            created += 1
            new_in_flight += 1

        while created < min(surge, params.replicas):
            start_new()
        deadline = self.clock.now() + params.horizon_s
        while (created < params.replicas or new_in_flight) and self.clock.now() < deadline:
            try:
                await asyncio.wait_for(ready_events.get(), timeout=max(0.0, deadline - self.clock.now()))
            except TimeoutError:
                break
            new_in_flight -= 1
            if to_delete:
                self.delete_pod(to_delete.popleft())
            if created < params.replicas:
                start_new()
            if new_in_flight and self.settled():
                break
        self.recorder.pod_ready_listeners.remove(ready_events.put_nowait)
        while to_delete:  # the rollout's end: the last old pods go
            self.delete_pod(to_delete.popleft())
        settled = await self.wait_settled(deadline)
        end = self.clock.now()
        drained = await self.wait_quiet(end + QUIET_LIMIT_S)
        return WorkloadOutcome(
            end_s=end,
            settled=settled,
            warmup_ready=warmup_ready,
            warmup_end_s=warmup_end,
            quiet_hook=isinstance(self.approach, ReportsNextAction),
            quiet_before_rollout=quiet_before,
            drained=drained,
            drained_at_s=round(self.clock.now() - self.recorder.origin_s, 3),
        )
