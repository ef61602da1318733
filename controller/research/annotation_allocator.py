"""The annotation baseline: the AWS VPC resource controller's security-groups-for-pods path.

Modelled on RC (field notes §2, parameters in `BaselineParams`):
- Nodes: only once aws-node has marked the node (label `vpc.amazonaws.com/has-trunk-attached`, field
  notes §2 "RC starts a trunk only after aws-node has marked the node"), a node worker (10 of them, 1
  requeue, then the node waits for its next Node event: field notes §2 "Concurrency") runs the trunk
  sequence (field notes §2 "Trunk at node init"): DescribeInstances, DescribeSubnets, CreateNetworkInterface
  (type trunk) → CreateNetworkInterfacePermission → AttachNetworkInterface at the highest free device
  index → ModifyNetworkInterfaceAttribute(DeleteOnTermination) → DescribeNetworkInterfaces polled from 1 s
  until `attached`; then the node advertises `vpc.amazonaws.com/pod-eni` capacity (a Node status patch);
  the scheduler places SGP pods only then.
- Pods: a rate-limited work queue (client-go semantics) and 30 workers. Per pod: read it from the
  cache, then from the API server; SGP groups; capacity check (in use + delete queue ≥ branch limit:
  requeue after the cool-down); first free VLAN (1..120); CreateNetworkInterface →
  CreateNetworkInterfacePermission → AssociateTrunkInterface; then a JSON merge patch of the pod's
  `vpc.amazonaws.com/pod-eni` annotation. That patch is a pod UPDATE: it passes every mutating
  webhook and pod-update validation, and a spec-mutating policy turns it into a 422. On failure
  the ENI goes to the front of the delete queue, a `BranchENIAnnotationFailed` event is recorded and
  the job is requeued; after 5 requeues it is forgotten. A failed permission or association also puts
  the new ENI at the front of the delete queue (field notes §2 "A failed association puts the ENI at
  the front of the delete queue").
- Deletion: the pod's branch ENI waits the cool-down, then the per-node delete queue (every 30 s)
  sends DisassociateTrunkInterface + DeleteNetworkInterface (the latter in its own retry loop, 100 ms
  base: field notes §2); 3 failed deletes and it is forgotten.
- EC2: `RcEc2` (rc_ec2.py): two clients of 12 QPS / burst 18, each attempt takes a token, the
  aws-sdk-go-v2 standard retryer with its retry token bucket (field notes §2 "EC2 clients", "SDK").
- Leaks: per-node reconcile every 1–15 min (pods gone from the cache free their ENIs); a cluster sweep
  every 30 min deletes `available` branch ENIs of ours seen in two consecutive sweeps.
- Restart: memory is lost; trunks are found again in EC2, branch ENIs associated to a trunk are
  matched to pod annotations, unmatched ones are queued for deletion; an ENI created but never
  associated is only found by the cluster sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import zlib
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.clock import Clock
from controller.core.errors import Ec2Error, NotFoundError
from controller.engine.work_queue import RateLimitingQueue
from controller.ports.ec2 import InstanceTypeInfo, InterfaceType
from controller.research.api_server import (
    NODE,
    POD,
    ApiClient,
    ApiError,
    ApiServer,
    ConflictError,
    KubeObject,
    Watch,
)
from controller.research.approach import Ec2ClientFacts
from controller.research.baseline_params import (
    ANNOTATION_FAILED_PREFIX,
    CNI_NO_ADDRESS_MESSAGE,
    HAS_TRUNK_ATTACHED_LABEL,
    POD_ENI_ANNOTATION,
    POD_ENI_RESOURCE,
    REASON_BRANCH_ENI_ANNOTATION_FAILED,
    BaselineParams,
)
from controller.research.metrics import MetricsRecorder
from controller.research.rc_ec2 import RcEc2, RcEc2Port, StandardRetryerParams
from controller.research.security_group_policy import SGP, security_groups_for_pod
from controller.research.virtual_time import spawn

RC_OWNER_TAG = "eks:eni:owner"
RC_OWNER_VALUE = "eks-vpc-resource-controller"
RC_INSTANCE_TAG = "vpcresources.k8s.aws/instance-id"  # simulation detail: lets a restart find the trunk
RC_CLUSTER_TAG_PREFIX = "kubernetes.io/cluster/"

REASON_SECURITY_GROUP_REQUESTED = "SecurityGroupRequested"
REASON_RESOURCE_ALLOCATED = "ResourceAllocated"
REASON_BRANCH_ALLOCATION_FAILED = "BranchAllocationFailed"
MAX_DELETE_RETRIES = 3  # RC's trunk.MaxDeleteRetries
CONFLICT_RETRY_STEPS = 4  # client-go retry.DefaultBackoff: 4 steps, 10 ms, ×5, jitter 0.1
CONFLICT_RETRY_BASE_S = 0.010


class AtMaxCapacity(Exception):
    """RC's ErrCurrentlyAtMaxCapacity: in use + delete queue = branch limit."""


@dataclass
class BranchRecord:
    eni_id: str
    vlan_id: int
    association_id: str  # "" when the association never happened (nothing to disassociate)
    pod_uid: str
    delete_after: float = 0.0
    delete_failures: int = 0


@dataclass
class TrunkState:
    node_name: str
    instance_id: str
    trunk_eni_id: str
    branch_limit: int
    subnet_id: str
    subnet_cidr: str
    used_vlans: set[int] = field(default_factory=set)
    by_pod_uid: dict[str, list[BranchRecord]] = field(default_factory=dict)
    delete_queue: deque[BranchRecord] = field(default_factory=deque)
    queue_tick_origin: float = 0.0
    queue_job_armed: bool = False

    def first_free_vlan(self, max_vlan: int) -> int | None:
        for vlan in range(1, max_vlan + 1):
            if vlan not in self.used_vlans:
                return vlan
        return None

    def branch_count(self) -> int:
        return sum(len(records) for records in self.by_pod_uid.values()) + len(self.delete_queue)


Job = tuple[str, str, str]  # ("create", ns, name) | ("delete", node, uid) | ("queue", node, "")


def pod_key(pod: KubeObject) -> str:
    return f"{pod.namespace}/{pod.name}"


def wants_branch_eni(pod: KubeObject) -> bool:
    containers = pod.spec.get("containers", [])
    if not containers:
        return False
    limits = containers[0].get("resources", {}).get("limits", {})
    return POD_ENI_RESOURCE in limits


class AnnotationAllocator:
    """RC, as a set of asyncio tasks on the simulation loop. `crash()` loses all in-memory state."""

    name = "annotation"
    implementation = "model of aws/amazon-vpc-resource-controller-k8s (security groups for pods)"

    def __init__(
        self,
        *,
        api: ApiServer,
        ec2: RcEc2Port,
        clock: Clock,
        params: BaselineParams,
        seed: int,
        instance_types: Mapping[str, InstanceTypeInfo],
        branch_limits: Mapping[str, int],
        cluster_name: str,
        recorder: MetricsRecorder,
        account_id: str = "123456789012",
    ) -> None:
        self.api = api
        self.ec2 = ec2
        self.clock = clock
        self.params = params
        self.seed = seed
        self.instance_types = instance_types
        self.branch_limits = branch_limits
        self.cluster_name = cluster_name
        self.recorder = recorder
        self.account_id = account_id
        self.generation = 0
        self.sdk_totals: dict[str, int] = {}
        self.node_inits_forgotten = 0
        self.jobs_forgotten = 0
        self.enis_forgotten_in_delete_queue = 0
        self._reset_memory()
        # The CNI on each node: it reads the pod annotation (a kubelet-side view; survives RC restarts).
        self._cni_watch = api.watch(POD, self._cni_on_pod)

    # ------------------------------------------------------------------ lifecycle
    def _reset_memory(self) -> None:
        self.generation += 1
        self.trunks: dict[str, TrunkState] = {}
        self.pod_cache: dict[str, KubeObject] = {}
        self.pods_by_node: dict[str, dict[str, KubeObject]] = {}
        self.node_cache: dict[str, KubeObject] = {}
        self.policies: dict[str, list[KubeObject]] = {}
        self.gave_up: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watches: list[Watch] = []
        self._sweep_sightings: dict[str, int] = {}
        self._trunk_init_failures: dict[str, int] = {}
        rng_seed = (self.seed * 7919 + self.generation) ^ zlib.crc32(b"rc")
        self._rng = random.Random(rng_seed)

    def start(self) -> None:
        params = self.params
        clock = self.clock
        self.k8s_cache_client: ApiClient = self.api.client(
            "rc", qps=params.k8s_client_qps, burst=params.k8s_client_burst
        )
        # RC reads pods "directly from the API server" through a clientset built from the same
        # rest config: its own limiter with the same QPS/burst.
        self.k8s_direct_client: ApiClient = self.api.client(
            "rc-clientset", qps=params.k8s_client_qps, burst=params.k8s_client_burst
        )
        self.sdk = RcEc2(
            self.ec2,
            clock=clock,
            seed=self.seed * 7 + self.generation,
            qps=params.ec2_client_qps,
            burst=params.ec2_client_burst,
            retryer=StandardRetryerParams(
                max_attempts=params.sdk_max_attempts,
                max_backoff_s=params.sdk_max_backoff_s,
                model_retry_quota=params.sdk_retry_quota,
            ),
            account_id=self.account_id,
        )
        self.queue: RateLimitingQueue[Job] = RateLimitingQueue(
            clock,
            base_delay_s=params.queue_base_delay_s,
            max_delay_s=params.queue_max_delay_s,
            overall_qps=params.queue_overall_qps,
            overall_burst=params.queue_overall_burst,
        )
        self.node_queue: RateLimitingQueue[str] = RateLimitingQueue(
            clock,
            base_delay_s=params.queue_base_delay_s,
            max_delay_s=params.queue_max_delay_s,
            overall_qps=params.queue_overall_qps,
            overall_burst=params.queue_overall_burst,
        )
        self._watches = [
            self.api.watch(SGP, self._on_policy),
            self.api.watch(NODE, self._on_node),
            self.api.watch(POD, self._on_pod),
        ]
        for index in range(params.pod_workers):
            self._spawn(self._pod_worker(), f"rc-pod-worker-{index}")
        for index in range(params.node_init_workers):
            self._spawn(self._node_worker(), f"rc-node-worker-{index}")
        self._spawn(self._cluster_sweep_loop(), "rc-cluster-sweep")

    async def crash(self) -> None:
        """The controller process dies: tasks stop mid-flight, in-memory state is gone."""
        for watch in self._watches:
            watch.stop()
        self.queue.shutdown()
        self.node_queue.shutdown()
        for task in list(self._tasks):
            task.cancel()
        for key, value in self.sdk.stats().items():
            self.sdk_totals[key] = self.sdk_totals.get(key, 0) + value
        self._reset_memory()

    def restart(self) -> None:
        self.start()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        spawn(coro, name=name, registry=self._tasks)

    # ------------------------------------------------------------------ informers
    def _on_policy(self, event: str, policy: KubeObject) -> None:
        policies = [p for p in self.policies.get(policy.namespace, []) if p.name != policy.name]
        if event != "DELETED":
            policies.append(policy)
        self.policies[policy.namespace] = policies

    def _on_node(self, event: str, node: KubeObject) -> None:
        if event == "DELETED":
            self.node_cache.pop(node.name, None)
            return
        self.node_cache[node.name] = node
        if node.name not in self.trunks and HAS_TRUNK_ATTACHED_LABEL in node.labels:
            self.node_queue.add(node.name)

    def _on_pod(self, event: str, pod: KubeObject) -> None:
        key = pod_key(pod)
        node_of_pod = str(pod.spec.get("nodeName") or "")
        if node_of_pod:
            on_node = self.pods_by_node.setdefault(node_of_pod, {})
            if event == "DELETED":
                on_node.pop(key, None)
            else:
                on_node[key] = pod
        if event == "DELETED":
            self.pod_cache.pop(key, None)
            node = pod.spec.get("nodeName")
            if node and wants_branch_eni(pod):
                self.queue.add(("delete", str(node), pod.uid))
            return
        self.pod_cache[key] = pod
        if pod.spec.get("nodeName") and wants_branch_eni(pod) and POD_ENI_ANNOTATION not in pod.annotations:
            self.gave_up.discard(key)
            self.queue.add(("create", pod.namespace, pod.name))

    def _cni_on_pod(self, event: str, pod: KubeObject) -> None:
        if event != "DELETED" and pod.spec.get("nodeName") and POD_ENI_ANNOTATION in pod.annotations:
            self.recorder.pod_network_ready(pod_key(pod))

    # ------------------------------------------------------------------ node initialisation
    async def _node_worker(self) -> None:
        while True:
            node_name = await self.node_queue.get()
            try:
                await self._init_trunk(node_name)
                self.node_queue.forget(node_name)
            except (Ec2Error, ApiError):
                if self.node_queue.num_requeues(node_name) >= self.params.node_max_requeues:
                    # field notes §2: a failed node init waits for the next node event.
                    self.node_queue.forget(node_name)
                    self.node_inits_forgotten += 1
                else:
                    self.node_queue.add_rate_limited(node_name)
            finally:
                self.node_queue.done(node_name)

    async def _init_trunk(self, node_name: str) -> None:
        node = self.node_cache.get(node_name)
        if node is None or node_name in self.trunks:
            return
        instance_id = str(node.spec["providerID"])
        instance = await self.sdk.describe_instance(instance_id)
        type_info = self.instance_types[instance.instance_type]
        branch_limit = self.branch_limits.get(instance.instance_type, 0)
        subnet = await self.sdk.describe_subnet(instance.subnet_id)
        # InitTrunk: the instance's interfaces (a DescribeInstances) tell whether a trunk exists.
        interfaces = await self.sdk.instance_interfaces(instance_id)
        trunk_eni = next((e for e in interfaces if e.interface_type is InterfaceType.TRUNK), None)
        if trunk_eni is None:
            trunk_id = await self._create_and_attach_trunk(
                instance_id, instance.subnet_id, list(instance.security_group_ids), type_info.max_enis - 1
            )
        else:
            trunk_id = trunk_eni.eni_id
        trunk = TrunkState(
            node_name=node_name,
            instance_id=instance_id,
            trunk_eni_id=trunk_id,
            branch_limit=branch_limit,
            subnet_id=instance.subnet_id,
            subnet_cidr=subnet.cidr_block,
            queue_tick_origin=self.clock.now(),
        )
        if trunk_eni is not None:
            await self._recover_branches(trunk)
        self.trunks[node_name] = trunk
        self._spawn(self._node_reconcile_loop(node_name), f"rc-reconcile-{node_name}")
        if trunk.delete_queue:
            self._arm_delete_queue(trunk)
        # Advertise the extended resource: the scheduler places SGP pods on this node from now on.
        await self.k8s_cache_client.merge_patch(
            (NODE, "", node_name),
            {
                "metadata": {"labels": {HAS_TRUNK_ATTACHED_LABEL: "true"}},
                "status": {"capacity": {POD_ENI_RESOURCE: str(branch_limit)}},
            },
        )

    async def _create_and_attach_trunk(
        self, instance_id: str, subnet_id: str, groups: list[str], device_index: int
    ) -> str:
        """helper.go CreateAndAttachNetworkInterface for a trunk: create → permission (trunk type) →
        attach (the highest free device index on a fresh node) → DeleteOnTermination → wait attached.
        A failed permission or attach deletes the ENI; a failed modify or wait detaches and deletes it."""
        sdk = self.sdk
        eni = await sdk.create_network_interface(
            subnet_id=subnet_id,
            security_group_ids=groups,
            interface_type=InterfaceType.TRUNK,
            tags=self._tags(instance_id),
        )
        try:
            await sdk.create_permission(eni.eni_id)
            attachment_id = await sdk.attach(eni.eni_id, instance_id=instance_id, device_index=device_index)
        except Ec2Error:
            with contextlib.suppress(Ec2Error):
                await sdk.delete_network_interface(eni.eni_id)
            raise
        try:
            await sdk.set_delete_on_termination(eni.eni_id, attachment_id)
            await sdk.wait_until_attached(eni.eni_id)
        except Exception:
            with contextlib.suppress(Ec2Error):
                await sdk.detach(attachment_id)
                await sdk.delete_network_interface(eni.eni_id)
            raise
        return eni.eni_id

    async def _recover_branches(self, trunk: TrunkState) -> None:
        """After a restart: associated branch ENIs are matched to pod annotations; the rest are queued."""
        associations = await self.sdk.describe_trunk_associations(trunk.trunk_eni_id)
        annotated: dict[str, tuple[str, int]] = {}
        for pod in self.pods_by_node.get(trunk.node_name, {}).values():
            value = pod.annotations.get(POD_ENI_ANNOTATION)
            if value:
                for entry in json.loads(value):
                    annotated[str(entry["eniId"])] = (pod.uid, int(entry["vlanId"]))
        now = self.clock.now()
        for association in associations:
            trunk.used_vlans.add(association.vlan_id)
            record = BranchRecord(
                eni_id=association.branch_eni_id,
                vlan_id=association.vlan_id,
                association_id=association.association_id,
                pod_uid=annotated.get(association.branch_eni_id, ("", 0))[0],
                delete_after=now,
            )
            if record.pod_uid:
                trunk.by_pod_uid.setdefault(record.pod_uid, []).append(record)
            else:
                trunk.delete_queue.append(record)

    def _tags(self, instance_id: str) -> dict[str, str]:
        return {
            RC_OWNER_TAG: RC_OWNER_VALUE,
            RC_INSTANCE_TAG: instance_id,
            RC_CLUSTER_TAG_PREFIX + self.cluster_name: "owned",
        }

    # ------------------------------------------------------------------ pod jobs
    async def _pod_worker(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                requeue_after = await self._process(job)
            except (Ec2Error, ApiError, AtMaxCapacity, LookupError):
                if self.queue.num_requeues(job) >= self.params.max_requeues:
                    self.queue.forget(job)
                    self.jobs_forgotten += 1
                    if job[0] == "create":
                        self.gave_up.add(f"{job[1]}/{job[2]}")
                else:
                    self.queue.add_rate_limited(job)
            else:
                if requeue_after is not None:
                    self.queue.add_after(job, requeue_after)
                else:
                    self.queue.forget(job)
            finally:
                self.queue.done(job)

    async def _process(self, job: Job) -> float | None:
        kind = job[0]
        if kind == "create":
            return await self._create_and_annotate(job[1], job[2])
        if kind == "delete":
            self._push_to_cooldown(job[1], job[2])
            return None
        await self._process_delete_queue(job[1])
        return None

    async def _create_and_annotate(self, namespace: str, name: str) -> float | None:
        key = f"{namespace}/{name}"
        pod = self.pod_cache.get(key)
        if pod is None:
            raise LookupError(f"failed to find pod {key}")
        if POD_ENI_ANNOTATION in pod.annotations:
            return None
        pod = await self.k8s_direct_client.get(POD, namespace, name)
        if POD_ENI_ANNOTATION in pod.annotations:
            return None
        groups = security_groups_for_pod(pod, self.policies.get(namespace, []))
        self.k8s_cache_client.event(
            pod.key,
            REASON_SECURITY_GROUP_REQUESTED,
            f"Pod will get the following Security Groups {list(groups)}",
        )
        node_name = str(pod.spec.get("nodeName", ""))
        trunk = self.trunks.get(node_name)
        if trunk is None:
            raise LookupError(f"trunk not found for node {node_name}")
        try:
            record = await self._create_and_associate(trunk, pod, groups)
        except AtMaxCapacity:
            return self.params.branch_cooldown_s
        except Ec2Error as error:
            self.k8s_cache_client.event(
                pod.key, REASON_BRANCH_ALLOCATION_FAILED, f"failed to allocate branch ENI to pod: {error}"
            )
            raise
        value = json.dumps(
            [
                {
                    "eniId": record.branch.eni_id,
                    "ifAddress": record.mac,
                    "privateIp": record.ip,
                    "ipv6Addr": "",
                    "vlanId": record.branch.vlan_id,
                    "subnetCidr": trunk.subnet_cidr,
                    "subnetV6Cidr": "",
                    "associationID": record.branch.association_id,
                }
            ],
            separators=(",", ":"),
        )
        try:
            await self._annotate_pod(pod, value)
        except ApiError as error:
            self._push_to_front_of_delete_queue(trunk, pod.uid)
            self.k8s_cache_client.event(
                pod.key, REASON_BRANCH_ENI_ANNOTATION_FAILED, ANNOTATION_FAILED_PREFIX + error.message
            )
            raise
        self.k8s_cache_client.event(pod.key, REASON_RESOURCE_ALLOCATED, f"Allocated [{value}] to the pod")
        return None

    async def _annotate_pod(self, pod: KubeObject, value: str) -> None:
        """AnnotatePod: retry.RetryOnConflict(DefaultBackoff) around a plain JSON merge patch."""
        delay = CONFLICT_RETRY_BASE_S
        for step in range(CONFLICT_RETRY_STEPS):
            try:
                await self.k8s_cache_client.merge_patch(
                    pod.key, {"metadata": {"annotations": {POD_ENI_ANNOTATION: value}}}
                )
                return
            except ConflictError:
                if step == CONFLICT_RETRY_STEPS - 1:
                    raise
                await self.clock.sleep(delay * (1 + 0.1 * self._rng.random()))
                delay *= 5

    async def _create_and_associate(
        self, trunk: TrunkState, pod: KubeObject, groups: tuple[str, ...]
    ) -> _CreatedBranch:
        if trunk.branch_count() >= trunk.branch_limit:
            raise AtMaxCapacity()
        vlan = trunk.first_free_vlan(min(self.params.max_vlan_id, 120))
        if vlan is None:
            raise AtMaxCapacity()
        trunk.used_vlans.add(vlan)
        try:
            eni = await self.sdk.create_network_interface(
                subnet_id=trunk.subnet_id,
                security_group_ids=list(groups),
                interface_type=InterfaceType.BRANCH,
                tags=self._tags(trunk.instance_id),
            )
        except Ec2Error:
            trunk.used_vlans.discard(vlan)
            raise
        try:
            await self.sdk.create_permission(eni.eni_id)
            association = await self.sdk.associate(
                branch_eni_id=eni.eni_id, trunk_eni_id=trunk.trunk_eni_id, vlan_id=vlan
            )
        except Ec2Error:
            # field notes §2: a failed association puts the ENI at the front of the delete queue
            # (its VLAN stays taken until the queue deletes it, as RC frees it on deletion).
            self._queue_front(
                trunk, [BranchRecord(eni_id=eni.eni_id, vlan_id=vlan, association_id="", pod_uid=pod.uid)]
            )
            raise
        record = BranchRecord(
            eni_id=eni.eni_id, vlan_id=vlan, association_id=association.association_id, pod_uid=pod.uid
        )
        trunk.by_pod_uid.setdefault(pod.uid, []).append(record)
        return _CreatedBranch(branch=record, ip=eni.private_ip, mac=eni.mac_address)

    # ------------------------------------------------------------------ deletion
    def _push_to_cooldown(self, node_name: str, pod_uid: str) -> None:
        trunk = self.trunks.get(node_name)
        if trunk is None:
            return
        records = trunk.by_pod_uid.pop(pod_uid, [])
        if not records:
            return
        due = self.clock.now() + self.params.branch_cooldown_s
        for record in records:
            record.delete_after = due
            trunk.delete_queue.append(record)
        self._arm_delete_queue(trunk)

    def _push_to_front_of_delete_queue(self, trunk: TrunkState, pod_uid: str) -> None:
        self._queue_front(trunk, trunk.by_pod_uid.pop(pod_uid, []))

    def _queue_front(self, trunk: TrunkState, records: list[BranchRecord]) -> None:
        """PushENIsToFrontOfDeleteQueue: due now, ahead of the cooling entries."""
        now = self.clock.now()
        for record in reversed(records):
            record.delete_after = now
            trunk.delete_queue.appendleft(record)
        if records:
            self._arm_delete_queue(trunk)

    def _arm_delete_queue(self, trunk: TrunkState) -> None:
        """RC runs the delete-queue job every 30 s per node; here it is scheduled only while the queue
        has entries, on the same 30 s grid (same timing, far fewer events at 1,000 nodes)."""
        if trunk.queue_job_armed:
            return
        trunk.queue_job_armed = True
        period = self.params.delete_queue_interval_s
        now = self.clock.now()
        # The next tick strictly after now; the epsilon keeps a tick computed a hair before itself (float
        # rounding) from arming the same tick again, which would spin without virtual time moving.
        ticks = math.floor((now - trunk.queue_tick_origin) / period + 1e-9) + 1
        self.queue.add_after(("queue", trunk.node_name, ""), trunk.queue_tick_origin + ticks * period - now)

    async def _process_delete_queue(self, node_name: str) -> None:
        trunk = self.trunks.get(node_name)
        if trunk is None:
            return
        trunk.queue_job_armed = False
        now = self.clock.now()
        keep: deque[BranchRecord] = deque()
        while trunk.delete_queue:
            record = trunk.delete_queue.popleft()
            if record.delete_after > now:
                keep.append(record)
                continue
            try:
                await self._delete_branch(record)
                trunk.used_vlans.discard(record.vlan_id)
            except Ec2Error:
                record.delete_failures += 1
                if record.delete_failures >= MAX_DELETE_RETRIES:
                    self.enis_forgotten_in_delete_queue += 1
                    trunk.used_vlans.discard(record.vlan_id)
                else:
                    keep.append(record)
        keep.extend(trunk.delete_queue)
        trunk.delete_queue = keep
        if trunk.delete_queue:
            self._arm_delete_queue(trunk)

    async def _delete_branch(self, record: BranchRecord) -> None:
        if record.association_id:
            with contextlib.suppress(NotFoundError):
                await self.sdk.disassociate(record.association_id)
            record.association_id = ""  # a retry of the delete does not disassociate again
        with contextlib.suppress(NotFoundError):
            await self.sdk.delete_network_interface(record.eni_id)

    # ------------------------------------------------------------------ leak clean-up
    async def _node_reconcile_loop(self, node_name: str) -> None:
        params = self.params
        while True:
            await self.clock.sleep(
                self._rng.uniform(params.node_reconcile_min_s, params.node_reconcile_max_s)
            )
            trunk = self.trunks.get(node_name)
            if trunk is None:
                return
            live = {pod.uid for pod in self.pods_by_node.get(node_name, {}).values()}
            for uid in [uid for uid in trunk.by_pod_uid if uid not in live]:
                self._push_to_cooldown(node_name, uid)

    async def _cluster_sweep_loop(self) -> None:
        while True:
            await self.clock.sleep(self.params.cluster_sweep_interval_s)
            try:
                enis = await self.sdk.describe_network_interfaces(tags={RC_OWNER_TAG: RC_OWNER_VALUE})
            except Ec2Error:
                continue
            available = {e.eni_id for e in enis if e.status == "available"}
            sightings = {eni_id: self._sweep_sightings.get(eni_id, 0) + 1 for eni_id in sorted(available)}
            self._sweep_sightings = sightings
            for eni_id, seen in sightings.items():
                if seen >= self.params.cluster_sweep_sightings:
                    try:
                        await self.sdk.delete_network_interface(eni_id)
                    except Ec2Error:
                        continue

    # ------------------------------------------------------------------ what the harness asks
    def gave_up_on(self, key: str) -> bool:
        return key in self.gave_up

    def stuck_reason(self, pod: KubeObject | None, key: str) -> str:
        if pod is None:
            return "pod deleted before it was network-ready"
        if not pod.spec.get("nodeName"):
            target = pod.labels.get("sim/target-node", "?")
            node = self.api.peek(NODE, "", target)
            advertised = ((node.status.get("capacity") or {}).get(POD_ENI_RESOURCE) if node else None) or "0"
            if int(advertised) > 0:
                return (
                    f"Pending: every {POD_ENI_RESOURCE} its node advertises ({advertised}) is taken: "
                    "one branch ENI per pod"
                )
            return f"Pending: node {target} does not advertise {POD_ENI_RESOURCE} yet (no trunk ENI)"
        event = self.api.last_event.get(pod.key)
        if event is not None and event[0] in (
            REASON_BRANCH_ENI_ANNOTATION_FAILED,
            REASON_BRANCH_ALLOCATION_FAILED,
        ):
            return f"{event[0]}: {event[1].splitlines()[0] if event[1] else ''}"
        return f"ContainerCreating: {CNI_NO_ADDRESS_MESSAGE} (no {POD_ENI_ANNOTATION} annotation yet)"

    def shows_capacity_reason(self, pod: KubeObject) -> bool:
        return False

    def busy(self) -> bool:
        """A worker is in the middle of a job (EC2 calls may be in flight)."""
        return bool(self.queue.in_flight or self.node_queue.in_flight)

    def next_action_due(self) -> float | None:
        """When RC next changes EC2 state on its own (None: quiet). The generic quietness hook of
        `controller.research.approach.ReportsNextAction`: jobs in flight or queued are due now; a
        non-empty delete queue is due at its next 30 s tick after its first entry's cool-down."""
        now = self.clock.now()
        if self.queue.in_flight or self.node_queue.in_flight or len(self.queue) or len(self.node_queue):
            return now
        armed = sum(1 for trunk in self.trunks.values() if trunk.queue_job_armed)
        if _pending_timers(self.queue) > armed or _pending_timers(self.node_queue):
            return now  # a requeued job waits for its backoff: work is still coming
        due: float | None = None
        period = self.params.delete_queue_interval_s
        for trunk in self.trunks.values():
            if not trunk.delete_queue:
                continue
            ready_at = max(now, min(r.delete_after for r in trunk.delete_queue))
            ticks = math.ceil((ready_at - trunk.queue_tick_origin) / period - 1e-9)
            tick = trunk.queue_tick_origin + max(0, ticks) * period
            due = tick if due is None else min(due, tick)
        return due

    def cooldown_s(self) -> float:
        return self.params.branch_cooldown_s

    def ec2_client_facts(self) -> Ec2ClientFacts:
        params = self.params
        return Ec2ClientFacts(
            description=(
                f"RC: instance + user clients, {params.ec2_client_qps:g} QPS / burst "
                f"{params.ec2_client_burst} each, a token per attempt; aws-sdk-go-v2 standard retryer, "
                f"{params.sdk_max_attempts} attempts"
                + (", retry token bucket modelled" if params.sdk_retry_quota else "")
            ),
            same_as_boto3_adapter=False,
        )

    def owned_eni_ids(self) -> tuple[set[str], set[str]]:
        """(in use, pooled): trunks and pod-held branches; branches cooling down in delete queues."""
        in_use: set[str] = set()
        pooled: set[str] = set()
        for trunk in self.trunks.values():
            in_use.add(trunk.trunk_eni_id)
            for records in trunk.by_pod_uid.values():
                in_use.update(r.eni_id for r in records)
            pooled.update(r.eni_id for r in trunk.delete_queue)
        return in_use, pooled

    def extra_metrics(self) -> dict[str, float | int | str]:
        sdk = dict(self.sdk_totals)
        for key, value in self.sdk.stats().items():
            sdk[key] = sdk.get(key, 0) + value
        return {
            **sdk,
            "jobs_forgotten_after_max_requeues": self.jobs_forgotten,
            "node_inits_forgotten_after_max_requeues": self.node_inits_forgotten,
            "enis_forgotten_in_delete_queue": self.enis_forgotten_in_delete_queue,
        }


def _pending_timers(queue: RateLimitingQueue[Any]) -> int:
    """Items the queue holds back for a delay (add_after / add_rate_limited). The work queue has no
    public count of them; read its timer set (read-only)."""
    return len(getattr(queue, "_timers", ()))


@dataclass
class _CreatedBranch:
    branch: BranchRecord
    ip: str
    mac: str
