"""One node's network: serves allocations from its pool and executes the planner's work.

The planner (pure) decides; this class does the EC2 calls and reports back. Allocations are served
from the pool without any EC2 call while it is warm; a dry pool is refilled once (single-flight)
and the allocation is retried. Every create carries a client token and netalloc's tags, so a
retried step finds its earlier result and a restart can rebuild the pool from EC2.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from controller.clock import Clock
from controller.core import tags as tagging
from controller.core.allocation_model import AllocationMode, AllocationRequest, AssignedResources
from controller.core.errors import Ec2Error, ErrorClass, NotFoundError
from controller.core.instance_limits import InstanceLimits
from controller.core.node_pool import (
    BranchEni,
    BranchState,
    NodePool,
    PoolEni,
    PoolInvariantError,
    PoolMode,
)
from controller.core.pool_planner import (
    AssignIps,
    AssignPrefixes,
    AttachEni,
    CreateBranches,
    CreateTrunk,
    DeleteBranches,
    DeleteEni,
    PoolAction,
    PoolPlan,
    ReleaseIps,
    ReleasePrefixes,
    branch_demand_mark,
    describe_action,
    plan_pool,
)
from controller.core.retry_policy import RetryPolicy
from controller.engine.ec2_pacing import Priority, PriorityCell, current_priority, pool_work
from controller.ports.ec2 import Ec2Port, InstanceInfo, InterfaceType, NetworkInterface
from controller.settings import PoolSettings

T = TypeVar("T")
logger = logging.getLogger("netalloc.engine")


class FailedAction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str
    code: str
    message: str
    error_class: ErrorClass


class ExecutionReport(BaseModel):
    """What the executor did with a plan."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plan: PoolPlan
    completed: tuple[str, ...]
    failed: tuple[FailedAction, ...]

    @property
    def first_error(self) -> FailedAction | None:
        return self.failed[0] if self.failed else None


# EC2 answers that mean the pool is behind EC2 (the instance was terminated, an ENI deleted or
# detached outside netalloc): a reason to read the pool again, never a pod's permanent failure.
STALE_CODES = frozenset(
    {"InvalidNetworkInterfaceID.NotFound", "InvalidInstanceID.NotFound", "IncorrectState"}
)


def capacity_error(code: str, message: str) -> Ec2Error:
    return Ec2Error(code, message, action="Allocate")


def stable_token(*parts: str) -> str:
    """A client token (≤ 64 chars) derived from the step's identity, stable across retries."""
    return "na-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


class NodeNetwork:
    """The runtime of one node's pool. Not thread-safe; one asyncio loop drives it."""

    def __init__(
        self,
        *,
        ec2: Ec2Port,
        clock: Clock,
        limits: InstanceLimits,
        settings: PoolSettings,
        node_name: str,
        instance: InstanceInfo,
        subnet_cidr: str,
        cluster_name: str,
        default_security_group_ids: tuple[str, ...] = (),
        rng: random.Random | None = None,
        retry_policy: RetryPolicy | None = None,
        cluster_id: str = "",
    ) -> None:
        self.cluster_id = cluster_id
        self.ec2 = ec2
        self.clock = clock
        self.instance = instance
        self.cluster_name = cluster_name
        self.default_security_group_ids = tuple(
            sorted(default_security_group_ids or instance.security_group_ids)
        )
        self.pool = NodePool(
            node_name=node_name,
            instance_id=instance.instance_id,
            subnet_id=instance.subnet_id,
            subnet_cidr=subnet_cidr,
            limits=limits,
            settings=settings,
        )
        self._rng = rng or random.Random(0)
        self._nonce = f"{self._rng.getrandbits(48):012x}"
        self._token_counter = 0
        self.retry_policy = retry_policy or RetryPolicy()
        self._branch_create_s = settings.branch_create_estimate_s  # moving mean, see _time_branch_create
        self._prefix_refusals = 0  # consecutive passes whose /28 request the subnet refused
        self._prefix_refusal: FailedAction | None = None  # the last refusal, told to pods meanwhile
        self._attachments: dict[str, str] = {}  # eni id -> attachment id
        self._reserved_vlans: set[int] = set()
        self._pending_branch_creates = 0
        # Per pod: how many branch ENIs made for it were deleted again (a failed association). The next
        # create must not reuse a client token whose ENI is gone: EC2 would answer with the dead ENI.
        self._branch_generation: dict[str, int] = {}
        # ENIs whose addresses EC2 may have changed without telling us (an assign whose answer was
        # lost): described again before the next plan, so no address is assigned twice or leaked.
        self._suspect_enis: set[str] = set()
        self._refill: asyncio.Task[ExecutionReport] | None = None
        self._pool_cells: set[PriorityCell] = set()  # every pool work in flight, to promote them all
        self._refill_demand = 0  # the demand the running refill was planned for
        self._refill_sets: frozenset[tuple[str, ...]] = frozenset()  # the shared group sets it was asked for
        self._background: asyncio.Task[ExecutionReport] | None = None
        self.last_report: ExecutionReport | None = None
        # Called when a pass did something (True: background pool work failed), so the node's record
        # and the pods waiting on it are looked at again; the runtime queues the node.
        self.on_pool_work_done: Callable[[bool], None] | None = None
        # Called when the pool's counts may have moved (an allocation, a release, a pool action, a branch
        # made), without a pass: the runtime notes when, and writes the counts an interval later.
        self.on_counts_moved: Callable[[], None] | None = None
        self.orphaned_enis: set[str] = set()  # made by us, not in the pool, delete pending
        self.registered = False
        self.draining = False
        # Set when EC2 answers NotFound for an ENI or the instance the pool has: the pool is behind EC2
        # (the instance was terminated, an ENI deleted outside netalloc) until `refresh_from_ec2`.
        self.stale = ""
        self._pool_lock = asyncio.Lock()  # one plan executes at a time; drain waits for it
        # Warm branch ENIs are made with the groups pods on this node last asked for, so a pod of the
        # same workload takes one without a ModifyNetworkInterfaceAttribute call.
        self.warm_branch_groups = self.default_security_group_ids

    @property
    def node_name(self) -> str:
        return self.pool.node_name

    # ----- helpers ------------------------------------------------------------------------------
    def _token(self, purpose: str) -> str:
        self._token_counter += 1
        return stable_token(self.pool.instance_id, self._nonce, purpose, str(self._token_counter))

    def _tags(self, role: str, allocation: str = tagging.POOL_ALLOCATION) -> dict[str, str]:
        return tagging.eni_tags(
            cluster=self.cluster_name,
            instance_id=self.pool.instance_id,
            owner=self.node_name,
            role=role,
            allocation=allocation,
            cluster_id=self.cluster_id,
        )

    async def _with_throttle_retries(self, call: Callable[[], Awaitable[T]], *, transient: bool = True) -> T:
        """Retry throttled (and, for idempotent calls, transient) errors with the RetryPolicy's backoff.

        This is the only retry layer: the EC2 adapters make one attempt per call. A throttled call
        never took effect; a transient one (5xx, timeout) may have, so only calls that are safe to
        repeat (client tokens, deletes) pass `transient=True`.
        """
        retried = (ErrorClass.THROTTLING, ErrorClass.TRANSIENT) if transient else (ErrorClass.THROTTLING,)
        retrying = self.retry_policy.step_retrying(retried, self._rng, self.clock.sleep)

        async def attempt() -> T:  # a coroutine function: tenacity awaits only those
            return await call()

        result: T = await retrying(attempt)
        return result

    async def _address_call(self, eni_id: str, call: Callable[[], Awaitable[T]]) -> T:
        """Assign/Unassign addresses or prefixes: they carry no client token, so an answer lost after
        the call took effect must not be repeated blindly. The ENI is described again before the next
        plan instead, and the pool adopts what EC2 says it has."""
        try:
            return await self._with_throttle_retries(call, transient=False)
        except Ec2Error as error:
            if error.error_class is ErrorClass.TRANSIENT:
                self._suspect_enis.add(eni_id)
            raise

    async def _refresh_suspect_enis(self) -> None:
        """Make the pool agree with EC2 for ENIs whose last address call had no clear answer."""
        for eni_id in sorted(self._suspect_enis):
            eni = self.pool.enis.get(eni_id)
            if eni is None:
                self._suspect_enis.discard(eni_id)
                continue
            try:
                (found,) = await self._with_throttle_retries(
                    lambda eni_id=eni_id: self.ec2.describe_network_interfaces(eni_ids=[eni_id])  # type: ignore[misc]
                )
            except NotFoundError:
                self._suspect_enis.discard(eni_id)
                continue
            except (Ec2Error, ValueError):
                return  # try again before the next plan
            self.pool.adopt_addresses(eni_id, ips=list(found.secondary_ips), prefixes=list(found.prefixes))
            self._suspect_enis.discard(eni_id)

    # ----- registration and recovery -------------------------------------------------------------
    async def register(
        self, holdings: Mapping[str, AssignedResources] | None = None, *, lost: list[str] | None = None
    ) -> ExecutionReport:
        """Adopt what EC2 already has for this instance and what the PNAs say pods hold, make the trunk,
        then pre-allocate in the background.

        Holdings are restored before the first plan, so no recorded address is handed out again.
        Keys whose resources the pool no longer has are appended to `lost`. Only the trunk is made
        before the pool serves pods (every branch needs it); the warm targets are pool work, so no pod
        waits for IPs or warm branches it does not need, and they take only spare EC2 tokens.
        """
        await self.recover_from_ec2()
        for key, resources in (holdings or {}).items():
            try:
                restored = self.restore(key, resources)
            except PoolInvariantError:
                restored = False  # two records name one address: the first keeps it, the other starts over
            if not restored and lost is not None:
                lost.append(key)
        report = await self._make_trunk()
        self.registered = True
        self._refill_in_background()
        return report

    async def _make_trunk(self) -> ExecutionReport:
        """The trunk step of the plan alone (none when the pool has one, or does not trunk)."""
        async with self._pool_lock:
            plan = plan_pool(self.pool, self.clock.now())
            trunk = tuple(a for a in plan.actions if isinstance(a, CreateTrunk))
            return await self.execute(plan.model_copy(update={"actions": trunk}))

    async def recover_from_ec2(self) -> None:
        pool = self.pool
        primary = await self.ec2.describe_network_interfaces(eni_ids=[self.instance.primary_eni_id])
        if primary and self.instance.primary_eni_id not in pool.enis:
            self._adopt_pod_eni(primary[0], primary=True)
        ours = await self.ec2.describe_network_interfaces(
            tags={tagging.TAG_CLUSTER: self.cluster_name, tagging.TAG_INSTANCE: pool.instance_id}
        )
        branches: list[NetworkInterface] = []
        for eni in ours:
            role = eni.tags.get(tagging.TAG_ROLE)
            if role == "trunk" and eni.attachment is not None:
                pool.trunk_eni_id = eni.eni_id
                pool.trunk_device_index = eni.attachment.device_index
                self._attachments[eni.eni_id] = eni.attachment.attachment_id
            elif role == "pod-ips" and eni.attachment is not None and eni.eni_id not in pool.enis:
                self._adopt_pod_eni(eni, primary=False)
            elif role == tagging.ROLE_SHARED and eni.attachment is not None and eni.eni_id not in pool.enis:
                self._adopt_pod_eni(eni, primary=False, shared=True)  # its groups are EC2's word
            elif role == "branch":
                branches.append(eni)
            elif eni.attachment is None:
                self.orphaned_enis.add(eni.eni_id)  # created, never attached: a crash mid-step
        if branches:
            associations = {}
            if pool.trunk_eni_id is not None:
                associations = {
                    a.branch_eni_id: a for a in await self.ec2.describe_trunk_associations(pool.trunk_eni_id)
                }
            for eni in branches:
                if eni.eni_id in pool.branches:
                    continue  # already known (recovery ran before)
                association = associations.get(eni.eni_id)
                if association is None:
                    self.orphaned_enis.add(eni.eni_id)
                    continue
                pool.add_branch(
                    BranchEni(
                        eni_id=eni.eni_id,
                        vlan_id=association.vlan_id,
                        ip=eni.private_ip,
                        mac_address=eni.mac_address,
                        association_id=association.association_id,
                        security_group_ids=tuple(sorted(eni.security_group_ids)),
                    )
                )

    def _adopt_pod_eni(self, eni: NetworkInterface, *, primary: bool, shared: bool = False) -> None:
        index = 0 if primary else (eni.attachment.device_index if eni.attachment else 0)
        self.pool.add_eni(
            PoolEni(
                eni_id=eni.eni_id,
                device_index=index,
                primary=primary,
                mac_address=eni.mac_address,
                ips=list(eni.secondary_ips),
                prefixes=list(eni.prefixes),
                security_group_ids=tuple(sorted(eni.security_group_ids)) if shared else (),
            )
        )
        if eni.attachment is not None:
            self._attachments[eni.eni_id] = eni.attachment.attachment_id

    def restore(self, key: str, resources: AssignedResources) -> bool:
        """Re-bind a PNA's recorded assignment after a restart. False if the pool no longer has it (or is
        being drained: what it held is being given back)."""
        if self.draining:
            return False
        if resources.mode is AllocationMode.SHARED_ENI:
            eni = self.pool.enis.get(resources.eni_id)
            if eni is None or eni.security_group_ids != tuple(sorted(resources.security_group_ids)):
                return False
            return self.pool.restore_ip(key, resources.ip)
        if resources.mode is AllocationMode.BRANCH_ENI:
            branch = self.pool.branches.get(resources.eni_id)
            if branch is None:
                return False
            if branch.holder == key:
                return True
            self.pool.assign_branch(key, branch.eni_id)
            return True
        return self.pool.restore_ip(key, resources.ip)

    # ----- planning and execution ----------------------------------------------------------------
    async def reconcile(self, *, demand: int = 0) -> ExecutionReport:
        """Bring the pool to its targets (and `demand` more free addresses): expire cool-downs, plan,
        execute, report."""
        if current_priority() is Priority.POD:
            self._promote_pool_work()  # a pod's pass waits for the lock: what holds it is the pod's now
        async with self._pool_lock:
            shape = self._shape()
            now = self.clock.now()
            self.pool.expire_cooldowns(now)
            if self.draining:
                return ExecutionReport(plan=plan_pool(self.pool, now), completed=(), failed=())
            await self._delete_orphans()
            await self._refresh_suspect_enis()
            plan = plan_pool(self.pool, now, demand=demand)
            self.pool.excess_since = plan.excess_since
            self.pool.branch_excess_since = plan.branch_excess_since
            self.pool.branch_high_water = plan.branch_high_water
            self.pool.branch_high_water_at = plan.branch_high_water_at
            self.pool.shared_idle_since = dict(plan.shared_idle_since)
            report = await self.execute(plan)
            self.last_report = report
        if report.completed and self.on_pool_work_done is not None and self._shape() != shape:
            # An ENI or the trunk came or went: the record says so at once. Moved counts wait for the
            # periodic pass (coalesced), and failures alone too, or a pass would follow a pass as fast
            # as EC2 refuses.
            self.on_pool_work_done(False)
        return report

    def _counts_moved(self) -> None:
        if self.on_counts_moved is not None:
            self.on_counts_moved()

    def _shape(self) -> tuple[str | None, frozenset[str]]:
        """What the node's record must show without delay: its trunk and its attached ENIs."""
        return self.pool.trunk_eni_id, frozenset(self.pool.enis)

    async def execute(self, plan: PoolPlan) -> ExecutionReport:
        completed: list[str] = []
        failed: list[FailedAction] = []
        for action in plan.actions:
            try:
                await self._run(action)
                completed.append(describe_action(action))
            except Ec2Error as error:
                if error.code in STALE_CODES:
                    self.stale = f"{error.code}: {error.message}"
                failed.append(
                    FailedAction(
                        action=describe_action(action),
                        code=error.code,
                        message=error.message,
                        error_class=error.error_class,
                    )
                )
        self._note_prefix_answers(plan, failed)
        return ExecutionReport(plan=plan, completed=tuple(completed), failed=tuple(failed))

    def _note_prefix_answers(self, plan: PoolPlan, failed: list[FailedAction]) -> None:
        """A subnet that refused /28 blocks is not asked again every pass: the capacity backoff of the
        RetryPolicy (5 s doubling to 120 s) applies to the pool's prefix growth as it does to a pod.
        A prefix that EC2 gave ends the backoff."""
        if self.pool.mode is not PoolMode.PREFIX_DELEGATION:
            return
        asked = {
            describe_action(a)
            for a in plan.actions
            if isinstance(a, AssignPrefixes) or (isinstance(a, AttachEni) and a.prefix_count > 0)
        }
        if not asked:
            return
        refused = [f for f in failed if f.action in asked and f.error_class is ErrorClass.CAPACITY]
        if refused:
            self._prefix_refusals += 1
            self._prefix_refusal = refused[0]
            delay = self.retry_policy.capacity.delay(self._prefix_refusals, self._rng)
            self.pool.prefix_refused_until = self.clock.now() + delay
        elif len(asked) > len([f for f in failed if f.action in asked]):
            self.prefix_blocks_may_be_free()

    def prefix_blocks_may_be_free(self) -> None:
        """EC2 gave a prefix, or a subnet report shows free /28 blocks: prefixes are asked for again."""
        self._prefix_refusals = 0
        self._prefix_refusal = None
        self.pool.prefix_refused_until = 0.0

    async def _run(self, action: PoolAction) -> None:
        try:
            await self._run_action(action)
        finally:
            self._counts_moved()  # each action may move the counts, even one that failed part way

    async def _run_action(self, action: PoolAction) -> None:
        pool = self.pool
        match action:
            case CreateTrunk(device_index=index):
                await self._create_trunk(index)
            case AttachEni(
                device_index=index, ip_count=ips, prefix_count=prefixes, security_group_ids=groups
            ):
                await self._attach_pod_eni(index, ips, prefixes, groups)
            case AssignIps(eni_id=eni_id, count=count):
                new_ips = await self._address_call(
                    eni_id, lambda: self.ec2.assign_private_ips(eni_id, count=count)
                )
                pool.add_ips(eni_id, new_ips)
            case AssignPrefixes(eni_id=eni_id, count=count):
                new = await self._address_call(eni_id, lambda: self.ec2.assign_prefixes(eni_id, count=count))
                pool.add_prefixes(eni_id, new)
            case ReleaseIps(eni_id=eni_id, ips=ips):
                pool.remove_ips(eni_id, list(ips))  # first: no pod can take them while EC2 answers
                await self._address_call(eni_id, lambda: self.ec2.unassign_private_ips(eni_id, ips=list(ips)))
            case ReleasePrefixes(eni_id=eni_id, prefixes=prefixes):
                pool.remove_prefixes(eni_id, list(prefixes))
                await self._address_call(
                    eni_id, lambda: self.ec2.unassign_prefixes(eni_id, prefixes=list(prefixes))
                )
            case DeleteEni(eni_id=eni_id):
                eni = pool.enis.get(eni_id)
                if (
                    eni is not None
                    and eni.shared
                    and (pool.shared_in_use(eni_id) or pool.shared_wanted.get(eni.security_group_ids))
                ):
                    return  # a pod of the set took an address since the plan was made: it stays
                pool.remove_eni(eni_id)
                await self._detach_and_delete(eni_id)
            case CreateBranches(count=count):
                for _ in range(count):
                    if len(pool.branches) + self._pending_branch_creates >= pool.limits.branch_enis:
                        break
                    await self._create_branch(pool.trunk_eni_id or "", self.warm_branch_groups, None)
            case DeleteBranches(eni_ids=eni_ids):
                for eni_id in eni_ids:
                    branch = pool.branches.get(eni_id)
                    if branch is None or branch.state is not BranchState.WARM or eni_id in pool.promised:
                        continue  # taken by a pod since the plan was made, or kept for one that waits
                    pool.remove_branch(eni_id)
                    await self._delete_branch(branch)

    async def _create_and_attach(
        self,
        *,
        role: str,
        device_index: int,
        interface_type: InterfaceType = InterfaceType.INTERFACE,
        ip_count: int = 0,
        prefix_count: int = 0,
        security_group_ids: tuple[str, ...] = (),
    ) -> NetworkInterface:
        """CreateNetworkInterface then AttachNetworkInterface; an ENI that cannot be attached is deleted."""
        token = self._token(f"{role}-{device_index}")
        groups = list(security_group_ids or self.default_security_group_ids)
        eni = await self._with_throttle_retries(
            lambda: self.ec2.create_network_interface(
                subnet_id=self.pool.subnet_id,
                security_group_ids=groups,
                interface_type=interface_type,
                tags=self._tags(role),
                client_token=token,
                secondary_ip_count=ip_count,
                prefix_count=prefix_count,
            )
        )
        try:
            attachment = await self._attach(eni.eni_id, device_index)
        except Ec2Error:
            await self._delete_quietly(eni.eni_id)
            raise
        self._attachments[eni.eni_id] = attachment
        return eni

    async def _attach(self, eni_id: str, device_index: int) -> str:
        """AttachNetworkInterface, safe to repeat: after an answer that did not come back, EC2 is asked
        whether the ENI is attached already (a second attach would fail as a conflict)."""
        answers: list[ErrorClass] = []  # the class of each failed attempt

        async def attempt() -> str:
            if answers and answers[-1] is ErrorClass.TRANSIENT:  # lost answer: it may have taken effect
                attached = await self._attachment_of(eni_id, device_index)
                if attached is not None:
                    return attached
            try:
                return await self.ec2.attach_network_interface(
                    eni_id, instance_id=self.pool.instance_id, device_index=device_index
                )
            except Ec2Error as error:
                answers.append(error.error_class)
                raise

        try:
            return await self._with_throttle_retries(attempt)
        except Ec2Error as error:
            if len(answers) < 2 or error.error_class in (ErrorClass.THROTTLING, ErrorClass.TRANSIENT):
                raise
            attached = await self._attachment_of(eni_id, device_index)  # a conflict with our own attach
            if attached is None:
                raise
            return attached

    async def _attachment_of(self, eni_id: str, device_index: int) -> str | None:
        try:
            found = await self._with_throttle_retries(
                lambda: self.ec2.describe_network_interfaces(eni_ids=[eni_id])
            )
        except Ec2Error:
            return None
        attachment = found[0].attachment if found else None
        if (
            attachment is not None
            and attachment.instance_id == self.pool.instance_id
            and attachment.device_index == device_index
        ):
            return attachment.attachment_id
        return None

    async def _create_trunk(self, device_index: int) -> None:
        eni = await self._create_and_attach(
            role="trunk", device_index=device_index, interface_type=InterfaceType.TRUNK
        )
        self.pool.trunk_eni_id = eni.eni_id
        self.pool.trunk_device_index = device_index

    async def _attach_pod_eni(
        self, device_index: int, ip_count: int, prefix_count: int, groups: tuple[str, ...] = ()
    ) -> None:
        eni = await self._create_and_attach(
            role=tagging.ROLE_SHARED if groups else "pod-ips",
            device_index=device_index,
            ip_count=ip_count,
            prefix_count=prefix_count,
            security_group_ids=groups,
        )
        self.pool.add_eni(
            PoolEni(
                eni_id=eni.eni_id,
                device_index=device_index,
                primary=False,
                mac_address=eni.mac_address,
                ips=list(eni.secondary_ips),
                prefixes=list(eni.prefixes),
                security_group_ids=tuple(sorted(groups)),
            )
        )

    async def _create_branch(
        self, trunk_eni_id: str, groups: tuple[str, ...], holder: str | None
    ) -> BranchEni:
        pool = self.pool
        vlan = pool.free_vlan(self._reserved_vlans)
        if vlan is None or not trunk_eni_id:
            raise capacity_error(
                "BranchInterfaceLimitExceeded",
                f"node {self.node_name} ({pool.limits.instance_type}) has all "
                f"{pool.limits.branch_enis} branch ENIs in use or cooling down",
            )
        self._reserved_vlans.add(vlan)
        self._pending_branch_creates += 1
        # Stable within this process, so a retried create finds its earlier result; after a restart,
        # recovery adopts or deletes what an earlier process made, and a new nonce avoids reusing it.
        generation = str(self._branch_generation.get(holder, 0)) if holder else ""
        token = (
            stable_token(pool.instance_id, self._nonce, "branch", holder, generation)
            if holder
            else self._token("branch")
        )
        association_token = stable_token(token, "vlan", str(vlan))
        try:
            eni = await self._with_throttle_retries(
                lambda: self.ec2.create_network_interface(
                    subnet_id=pool.subnet_id,
                    security_group_ids=list(groups),
                    interface_type=InterfaceType.BRANCH,
                    tags=self._tags("branch", holder or tagging.POOL_ALLOCATION),
                    client_token=token,
                )
            )
            try:
                association = await self._with_throttle_retries(
                    lambda: self.ec2.associate_trunk_interface(
                        branch_eni_id=eni.eni_id,
                        trunk_eni_id=trunk_eni_id,
                        vlan_id=vlan,
                        client_token=association_token,
                    )
                )
            except Ec2Error:
                await self._delete_quietly(eni.eni_id)
                if holder is not None:
                    self._branch_generation[holder] = self._branch_generation.get(holder, 0) + 1
                raise
            branch = BranchEni(
                eni_id=eni.eni_id,
                vlan_id=association.vlan_id,
                ip=eni.private_ip,
                mac_address=eni.mac_address,
                association_id=association.association_id,
                security_group_ids=tuple(sorted(groups)),
            )
            pool.add_branch(branch)
            if holder is not None:
                pool.assign_branch(holder, branch.eni_id)
            self._counts_moved()  # one of a CreateBranches action's many: the warm count moved
            return branch
        finally:
            self._reserved_vlans.discard(vlan)
            self._pending_branch_creates -= 1

    async def _delete_branch(self, branch: BranchEni) -> None:
        try:
            await self._with_throttle_retries(
                lambda: self.ec2.disassociate_trunk_interface(branch.association_id)
            )
        except NotFoundError:
            pass
        except Ec2Error:
            self.orphaned_enis.add(branch.eni_id)
            raise
        await self._delete_quietly(branch.eni_id)

    async def _detach_and_delete(self, eni_id: str) -> None:
        attachment = self._attachments.pop(eni_id, None)
        if attachment is not None:
            try:
                await self._with_throttle_retries(
                    lambda: self.ec2.detach_network_interface(attachment, force=True)
                )
            except NotFoundError:
                pass
            except Ec2Error:
                self.orphaned_enis.add(eni_id)
                raise
        await self._delete_quietly(eni_id)

    async def _delete_quietly(self, eni_id: str) -> None:
        """Delete an ENI we made; if EC2 refuses now, remember it so the next reconcile retries."""
        try:
            await self._with_throttle_retries(lambda: self.ec2.delete_network_interface(eni_id))
            self.orphaned_enis.discard(eni_id)
        except NotFoundError:
            self.orphaned_enis.discard(eni_id)
        except Ec2Error:
            self.orphaned_enis.add(eni_id)

    async def _delete_orphans(self) -> None:
        for eni_id in sorted(self.orphaned_enis):
            await self._delete_quietly(eni_id)

    # ----- allocation ------------------------------------------------------------------------------
    async def allocate(self, request: AllocationRequest) -> AssignedResources:
        """Give the request its address or branch ENI. Idempotent per request key.

        Raises Ec2Error; its class tells the state machine whether to retry soon (throttling),
        wait (capacity) or fail (permanent).
        """
        held = self.pool.holding_for(request.key)
        if held is not None:
            return held
        if self.draining:
            raise capacity_error(
                "NodeDraining", f"node {self.node_name} is being drained; its pool takes no pods"
            )
        self._refuse_if_stale()
        try:
            if request.mode is AllocationMode.BRANCH_ENI:
                resources = await self._allocate_branch(request)
            elif request.mode is AllocationMode.SHARED_ENI:
                resources = await self._allocate_shared(request)
            else:
                resources = await self._allocate_address(request)
        except Ec2Error as error:
            if error.code not in STALE_CODES:
                raise
            self.stale = f"{error.code}: {error.message}"  # EC2 lost what the pool has: a wait, not a failure
            self._refuse_if_stale()
            raise
        self._counts_moved()
        self._refill_in_background()
        return resources

    async def _allocate_address(self, request: AllocationRequest) -> AssignedResources:
        pool = self.pool
        wanted_prefix = request.mode is AllocationMode.PREFIX_IP
        if wanted_prefix != pool.settings.enable_prefix_delegation:
            raise Ec2Error(
                "AllocationModeMismatch",
                f"{request.mode} was requested but node {self.node_name}'s pool is {pool.mode}",
                action="Allocate",
            )
        resources = pool.take_ip(request.key)
        if resources is not None:
            return resources
        pool.expire_cooldowns(self.clock.now())
        resources = pool.take_ip(request.key)
        if resources is not None:
            return resources
        report = await self._refill_now(demand=1)
        self._refuse_if_stale()
        resources = pool.take_ip(request.key)
        if resources is not None:
            return resources
        problem = report.first_error
        if problem is None and self.clock.now() < pool.prefix_refused_until:
            problem = self._prefix_refusal  # not asked again yet: the subnet's last answer stands
        if (
            wanted_prefix
            and pool.settings.prefix_fallback_to_secondary_ip
            and problem is not None
            and problem.error_class is ErrorClass.CAPACITY
            and problem.code != "InsufficientFreeAddressesInSubnet"
        ):
            resources = await self._fallback_address(request)
            if resources is not None:
                return resources
        if problem is not None:
            raise Ec2Error(problem.code, problem.message, action="Allocate")
        held, cooling = pool.common_address_counts()
        shared = pool.shared_addresses_in_use()
        raise capacity_error(
            "NodePoolExhausted",
            f"node {self.node_name} has no free address: {pool.free_ip_count()} free, {held} in use, "
            f"{cooling} cooling down"
            + (f" (and {shared} on shared ENIs, for their group sets only)" if shared else "")
            + "; "
            + ("; ".join(report.plan.notes) or "the pool is at its limit"),
        )

    async def _fallback_address(self, request: AllocationRequest) -> AssignedResources | None:
        """No aligned /28 is left, but single addresses may be: one secondary IP on an ENI with a free
        slot, as Cilium falls back. The planner gives them back once prefixes can be had again."""
        pool = self.pool
        self._promote_pool_work()  # whoever waits for the lock waits for the pool work too
        async with self._pool_lock:
            resources = pool.take_ip(request.key)
            if resources is not None:
                return resources
            slots = pool.limits.slots_per_eni
            for eni in sorted(pool.enis.values(), key=lambda e: e.device_index):
                if eni.slots_used >= slots:
                    continue
                try:
                    new_ips = await self._address_call(
                        eni.eni_id,
                        lambda eni_id=eni.eni_id: self.ec2.assign_private_ips(eni_id, count=1),  # type: ignore[misc]
                    )
                except Ec2Error as error:
                    if error.error_class is ErrorClass.CAPACITY:
                        return None  # no single address either: the pod waits with the prefix error
                    raise
                pool.add_ips(eni.eni_id, new_ips)
                return pool.take_ip(request.key)
            if len(pool.enis) < pool.ip_eni_limit:  # every attached ENI is full: one more, one address
                used = pool.used_device_indexes()
                index = next((i for i in range(1, pool.limits.max_enis) if i not in used), None)
                if index is not None:
                    try:
                        await self._attach_pod_eni(index, 1, 0)
                    except Ec2Error as error:
                        if error.error_class is ErrorClass.CAPACITY:
                            return None
                        raise
                    return pool.take_ip(request.key)
        return None

    async def _allocate_shared(self, request: AllocationRequest) -> AssignedResources:
        """An address on the node's shared ENI for the pod's group set, made or grown by the planner
        for the pods that wait. Falls back to a branch ENI, for this pod only, when the instance has no
        ENI attachment left for the set, or when the set has no shared ENI yet and a warm branch with
        its groups is ready now."""
        pool = self.pool
        groups = request.sorted_groups
        if not groups:
            raise Ec2Error(
                "NoSecurityGroups",
                "SharedENI needs the pod's security groups; none of its SecurityGroupPolicies gave any",
                action="Allocate",
            )
        pool.expire_cooldowns(self.clock.now())
        resources = pool.take_shared_ip(request.key, groups)
        if resources is not None:
            return resources
        if pool.shared_enis(groups):
            pool.shared_expected.discard(groups)
        elif groups not in pool.shared_expected:
            branch = pool.choose_warm_branch(groups, request.key) if pool.trunk_eni_id else None
            if branch is not None and branch.security_group_ids == groups:
                # The set's first pod: a warm branch with its groups is ready now, the shared ENI is
                # not. This pod takes the branch; the set's ENI is made meanwhile, and the pods that
                # follow wait for it rather than take (and make the pool replace) more branches.
                pool.shared_expected.add(groups)
                resources = await self._allocate_branch(request)
                self._refill_in_background()
                return resources
        self._want_shared(groups, 1)
        try:
            report = await self._refill_now(demand=0, groups=groups)
        finally:
            self._want_shared(groups, -1)
        self._refuse_if_stale()
        resources = pool.take_shared_ip(request.key, groups)
        if resources is not None:
            return resources
        problem = report.first_error
        if problem is not None and problem.error_class is not ErrorClass.CAPACITY:
            raise Ec2Error(problem.code, problem.message, action="Allocate")
        if pool.settings.enable_pod_eni and pool.limits.trunking:
            logger.info(
                "%s: no shared ENI address for groups %s on %s; a branch ENI instead",
                request.key,
                ",".join(groups),
                self.node_name,
            )
            return await self._allocate_branch(request)
        if problem is not None:
            raise Ec2Error(problem.code, problem.message, action="Allocate")
        raise capacity_error(
            "SharedEniUnavailable",
            f"node {self.node_name} has no ENI attachment left for groups {','.join(groups)} and no "
            "trunk for a branch ENI; enable ENABLE_POD_ENI for the fallback or use fewer group sets",
        )

    def _want_shared(self, groups: tuple[str, ...], delta: int) -> None:
        wanted = self.pool.shared_wanted.get(groups, 0) + delta
        if wanted > 0:
            self.pool.shared_wanted[groups] = wanted
        else:
            self.pool.shared_wanted.pop(groups, None)

    async def _allocate_branch(self, request: AllocationRequest) -> AssignedResources:
        pool = self.pool
        if not pool.limits.trunking:
            raise Ec2Error(
                "NodeCannotTrunk",
                f"node {self.node_name} ({pool.limits.instance_type}) cannot have branch ENIs; "
                "schedule security-group pods on a Nitro instance type that supports trunking",
                action="Allocate",
            )
        if pool.trunk_eni_id is None:
            report = await self._refill_now()
            if pool.trunk_eni_id is None:
                problem = report.first_error
                if problem is not None:
                    raise Ec2Error(problem.code, problem.message, action="Allocate")
                raise capacity_error("TrunkNotReady", f"node {self.node_name} has no trunk ENI yet")
        groups = request.sorted_groups or self.default_security_group_ids
        now = self.clock.now()
        pool.expire_cooldowns(now)
        branch = pool.choose_warm_branch(groups, request.key)
        if branch is None:
            branch = await self._wait_for_cooling_branch(request.key)
        if branch is None:
            started = self.clock.now()
            await self._create_branch(pool.trunk_eni_id, groups, request.key)
            self._time_branch_create(self.clock.now() - started)
            self.warm_branch_groups = groups  # EC2 accepted these groups: warm branches get them too
            self._note_branch_demand()
            resources = pool.branch_resources(request.key)
            assert resources is not None
            return resources
        pool.assign_branch(request.key, branch.eni_id)
        self._note_branch_demand()
        if branch.security_group_ids != groups:
            try:
                # No inline retries here: a throttled pod goes to Retrying and frees its worker.
                await self.ec2.modify_security_groups(branch.eni_id, security_group_ids=list(groups))
            except Ec2Error:
                pool.unassign_branch(request.key, now, cool_down=False)
                raise
            pool.set_branch_groups(branch.eni_id, groups)
        self.warm_branch_groups = groups
        resources = pool.branch_resources(request.key)
        assert resources is not None
        return resources

    async def _wait_for_cooling_branch(self, key: str) -> BranchEni | None:
        """No warm branch: wait for the cooling one that comes back first, if it does so sooner than a
        create would take, and promise it to this pod so that no other pod takes it meanwhile. The
        worker is held no longer than the create would have held it, and no EC2 call is made."""
        pool = self.pool
        branch = pool.soonest_cooling_branch(key)
        if branch is None:
            return None
        wait = branch.cooling_until - self.clock.now()
        if wait >= self._branch_create_s:
            return None
        pool.promise_branch(branch.eni_id, key)
        taken: BranchEni | None = None
        try:
            await self.clock.sleep(max(0.0, wait))
            pool.expire_cooldowns(self.clock.now())
            current = pool.branches.get(branch.eni_id)  # None: EC2 lost it meanwhile; create instead
            if current is not None and current.state is BranchState.WARM:
                taken = current if pool.promised.get(current.eni_id) == key else None
            return taken
        finally:
            if taken is None:
                pool.forget_promise(key)

    def _time_branch_create(self, seconds: float) -> None:
        """How long a pod's branch create took, EC2's pacing included: the bar a cooling branch beats."""
        self._branch_create_s = 0.8 * self._branch_create_s + 0.2 * seconds

    def _note_branch_demand(self) -> None:
        self.pool.branch_high_water, self.pool.branch_high_water_at = branch_demand_mark(
            self.pool, self.clock.now()
        )

    def _refuse_if_stale(self) -> None:
        if self.stale:
            raise capacity_error(
                "NodePoolStale",
                f"node {self.node_name}'s pool is behind EC2 ({self.stale}); it is read again from EC2",
            )

    async def refresh_from_ec2(self) -> list[str]:
        """Make the pool what EC2 has now, in place: ENIs and branches EC2 no longer knows are dropped,
        with what they carried. Returns the keys that lost their address (their PNAs start over).

        In place, so allocations already served keep their holdings; the instance being gone is kept
        in `stale` (the node is drained when it goes, or re-registered when it gets a new instance)."""
        self._promote_pool_work()  # whoever waits for the lock waits for the pool work too
        async with self._pool_lock:
            try:
                await self.ec2.describe_instance(self.pool.instance_id)
            except NotFoundError as error:
                self.stale = f"{error.code}: {error.message}"
                return []
            wanted = [*self.pool.enis, *self.pool.branches] + (
                [self.pool.trunk_eni_id] if self.pool.trunk_eni_id else []
            )
            found = await self.ec2.describe_network_interfaces(
                tags={tagging.TAG_CLUSTER: self.cluster_name, tagging.TAG_INSTANCE: self.pool.instance_id}
            )
            ours = self.pool.instance_id
            present = {
                e.eni_id
                for e in found
                if e.interface_type is InterfaceType.BRANCH
                or (e.attachment and e.attachment.instance_id == ours)
            }
            self.orphaned_enis.update(e.eni_id for e in found if e.eni_id not in present)  # detached: deleted
            if self.instance.primary_eni_id in self.pool.enis:
                try:
                    await self.ec2.describe_network_interfaces(eni_ids=[self.instance.primary_eni_id])
                    present.add(self.instance.primary_eni_id)
                except NotFoundError:
                    pass
            lost: list[str] = []
            for eni_id in wanted:
                if eni_id in present:
                    continue
                if eni_id == self.pool.trunk_eni_id:
                    self.pool.trunk_eni_id = self.pool.trunk_device_index = None
                    self._attachments.pop(eni_id, None)
                    for branch_id in list(self.pool.branches):  # their associations went with the trunk
                        lost.extend(self.pool.forget_eni(branch_id))
                        self.orphaned_enis.add(branch_id)
                    continue
                lost.extend(self.pool.forget_eni(eni_id))
                self._attachments.pop(eni_id, None)
            self.stale = ""
            return lost

    def held_keys(self) -> set[str]:
        """Every allocation key the pool holds something for."""
        return set(self.pool.key_ips) | set(self.pool.branch_holders)

    def can_serve_now(self, request: AllocationRequest) -> bool:
        """Could `allocate` succeed without EC2 now? Wakes pods waiting for capacity early."""
        pool = self.pool
        pool.expire_cooldowns(self.clock.now())
        if request.mode is AllocationMode.BRANCH_ENI:
            return pool.trunk_eni_id is not None and (
                pool.choose_warm_branch(request.sorted_groups, request.key) is not None
                or (pool.free_vlan(self._reserved_vlans) is not None and pool.limits.trunking)
            )
        if request.mode is AllocationMode.SHARED_ENI:
            return pool.shared_free_count(request.sorted_groups) > 0
        return pool.free_ip_count() > 0

    async def release(self, key: str) -> bool:
        """Return what the key holds to the pool (after a cool-down). No EC2 call. Idempotent."""
        self._branch_generation.pop(key, None)
        self.pool.forget_promise(key)
        now = self.clock.now()
        released = (
            self.pool.release_ip(key, now) is not None or self.pool.unassign_branch(key, now) is not None
        )
        if released:
            self._counts_moved()
        return released

    # ----- refills ---------------------------------------------------------------------------------
    def _wanted_sets(self) -> frozenset[tuple[str, ...]]:
        return frozenset(self.pool.shared_wanted) | frozenset(self.pool.shared_expected)

    async def _refill_now(self, demand: int = 0, groups: tuple[str, ...] | None = None) -> ExecutionReport:
        """Single-flight reconcile for a pod that waits: concurrent callers share one refill. A refill
        already running as pool work is promoted (the pod waits on it now); one planned for less than
        `demand`, or before the shared group set `groups` was wanted, is followed by one for it (else the
        set's first pod would fall back to a branch ENI only because it came mid-pass)."""
        current = self._refill
        if current is not None and not current.done():
            planned_demand, planned_sets = self._refill_demand, self._refill_sets  # before another starts
            self._promote_pool_work()
            report = await asyncio.shield(current)
            if demand <= planned_demand and (groups is None or groups in planned_sets):
                return report
        if self._refill is None or self._refill.done():
            self._refill_demand = demand
            self._refill_sets = self._wanted_sets()
            self._refill = asyncio.ensure_future(self.reconcile(demand=demand))
        else:
            self._promote_pool_work()  # pool work started meanwhile: this pod waits on it now
        return await asyncio.shield(self._refill)

    def _start_pool_work(self) -> asyncio.Task[ExecutionReport]:
        """A reconcile no pod waits on: its EC2 calls take spare tokens only (`ec2_pacing`)."""
        with pool_work() as cell:  # the task copies this context: its calls run as pool work
            task = asyncio.ensure_future(self.reconcile())
        self._refill, self._refill_demand, self._refill_sets = task, 0, self._wanted_sets()
        self._pool_cells.add(cell)
        task.add_done_callback(lambda _task: self._pool_cells.discard(cell))
        task.add_done_callback(self._pool_work_done)
        return task

    def _pool_work_done(self, task: asyncio.Task[ExecutionReport]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return  # what it did, `reconcile` told
        logger.warning("node %s: pool work failed: %s", self.node_name, error)
        if self.on_pool_work_done is not None:
            self.on_pool_work_done(True)

    def maintain(self) -> ExecutionReport | None:
        """Start the periodic pass as pool work, unless a refill runs, and return at once: a worker never
        waits for spare EC2 tokens (pods may be waiting for that very worker). `on_pool_work_done` says
        when it has done something. Returns the report of the last pass that finished."""
        if self.registered and (self._refill is None or self._refill.done()):
            self._start_pool_work()
        return self.last_report

    def _refill_in_background(self) -> None:
        """After an allocation, top the pool back up to its warm target without making anyone wait."""
        if not self.registered:
            return
        if (self._background is not None and not self._background.done()) or (
            self._refill is not None and not self._refill.done()
        ):
            return
        if plan_pool(self.pool, self.clock.now()).empty:
            return
        self._background = self._start_pool_work()

    async def settle(self) -> ExecutionReport | None:
        """Wait for the refill in flight (the warm-up after registration, a top-up), if any."""
        task = self._refill
        if task is None or task.done():
            return None
        self._promote_pool_work()
        return await asyncio.shield(task)

    def _promote_pool_work(self) -> None:
        """Someone (a pod, a drain, a refresh) now waits on the pool's work in flight: it is pool work no
        more, and runs at once rather than when tokens are spare."""
        for cell in list(self._pool_cells):
            cell.promote()

    def busy(self) -> bool:
        """A refill (asked for or in the background) is in flight: ENIs may exist the pool has not seen."""
        return any(task is not None and not task.done() for task in (self._refill, self._background))

    async def close(self) -> None:
        """Stop background work. In-flight steps finish: cancelling one mid-call could orphan an ENI."""
        self.registered = False  # no new background top-ups
        self._promote_pool_work()  # what is in flight finishes now, not when tokens are spare
        for task in (self._background, self._refill):
            if task is not None:
                with contextlib.suppress(Ec2Error):
                    await asyncio.shield(task)

    # ----- node removal ----------------------------------------------------------------------------
    async def drain(self) -> list[str]:
        """Release everything the node holds: branches, trunk, attached ENIs, IPs. Returns problems."""
        self.draining = True
        await self.close()
        self._promote_pool_work()  # whoever waits for the lock waits for the pool work too
        async with self._pool_lock:
            pass  # a plan that was executing has finished; no new one will run
        while self._pending_branch_creates:
            await asyncio.sleep(0.01)  # a pod's branch ENI being made right now is drained too
        problems: list[str] = []
        pool = self.pool
        for key in list(pool.branch_holders):
            pool.unassign_branch(key, self.clock.now(), cool_down=False)
        for eni_id in list(pool.branches):
            branch = pool.remove_branch(eni_id)
            try:
                await self._delete_branch(branch)
            except Ec2Error as error:
                problems.append(f"branch {eni_id}: {error}")
        for key in list(pool.key_ips):
            pool.release_ip(key, self.clock.now())
        pool.cooling_ips.clear()
        for eni in sorted(pool.enis.values(), key=lambda e: -e.device_index):
            if eni.primary:
                try:
                    if eni.prefixes:
                        await self.ec2.unassign_prefixes(eni.eni_id, prefixes=list(eni.prefixes))
                    if eni.ips:
                        await self.ec2.unassign_private_ips(eni.eni_id, ips=list(eni.ips))
                except NotFoundError:
                    pass
                except Ec2Error as error:
                    problems.append(f"primary ENI {eni.eni_id}: {error}")
                continue
            try:
                await self._detach_and_delete(eni.eni_id)
            except Ec2Error as error:
                problems.append(f"ENI {eni.eni_id}: {error}")
        for eni_id in list(pool.enis):
            try:
                pool.remove_eni(eni_id)
            except PoolInvariantError as error:
                problems.append(str(error))
        if pool.trunk_eni_id is not None:
            try:
                await self._detach_and_delete(pool.trunk_eni_id)
            except Ec2Error as error:
                problems.append(f"trunk {pool.trunk_eni_id}: {error}")
            pool.trunk_eni_id = None
            pool.trunk_device_index = None
        await self._delete_orphans()
        problems.extend(f"ENI {eni_id} could not be deleted yet" for eni_id in sorted(self.orphaned_enis))
        return problems


async def open_node_network(
    *,
    ec2: Ec2Port,
    clock: Clock,
    limits_for: Callable[[str], Awaitable[InstanceLimits]],
    settings: PoolSettings,
    node_name: str,
    instance_id: str,
    cluster_name: str,
    default_security_group_ids: tuple[str, ...] = (),
    rng: random.Random | None = None,
    retry_policy: RetryPolicy | None = None,
    cluster_id: str = "",
) -> NodeNetwork:
    """Look the instance and its subnet up in EC2 and build the node's runtime (not yet registered)."""
    instance = await ec2.describe_instance(instance_id)
    subnet = await ec2.describe_subnet(instance.subnet_id)
    limits = await limits_for(instance.instance_type)
    return NodeNetwork(
        ec2=ec2,
        clock=clock,
        limits=limits,
        settings=settings,
        node_name=node_name,
        instance=instance,
        subnet_cidr=subnet.cidr_block,
        cluster_name=cluster_name,
        default_security_group_ids=default_security_group_ids,
        rng=rng,
        retry_policy=retry_policy,
        cluster_id=cluster_id,
    )
