"""The pool planner: from a node's pool and its settings to the actions that bring it to target.

Pure. The settings keep the AWS VPC CNI's names and meanings (field notes, section 3):

- WARM_IP_TARGET / MINIMUM_IP_TARGET, when either is set, decide alone: keep
  `max(in_use + WARM_IP_TARGET, MINIMUM_IP_TARGET)` addresses (MINIMUM alone: warm counts as 0).
  In prefix mode that is enough /28s to hold that many.
- Otherwise, in prefix mode, WARM_PREFIX_TARGET whole free /28s are kept.
- Otherwise WARM_ENI_TARGET whole ENIs' worth of free addresses are kept, attached full.
- MAX_ENI caps attached ENIs below the instance limit; the trunk ENI uses one attachment.
- With ENABLE_POD_ENI, a trunk ENI is attached at the highest free device index and
  `warm_branch_eni_target` branch ENIs are kept associated and ready.

Capacity above target is released only once it has been excess for `excess_release_delay_s`;
only free capacity is ever released. Warm branch ENIs get hysteresis too: beyond the target, those up
to the high-water mark of assigned + cooling branches are kept until that mark has not been reached
for `branch_demand_quiet_s` (a rollout frees as many branches as it takes; the next one needs them).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from controller.core.instance_limits import IPS_PER_PREFIX
from controller.core.node_pool import BranchState, NodePool, PoolMode


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CreateTrunk(_Action):
    kind: Literal["CreateTrunk"] = "CreateTrunk"
    device_index: int = Field(ge=1)


class AttachEni(_Action):
    kind: Literal["AttachEni"] = "AttachEni"
    device_index: int = Field(ge=1)
    # Non-empty: a shared ENI, made with exactly these groups, for the node's pods of that set.
    security_group_ids: tuple[str, ...] = ()
    ip_count: int = Field(default=0, ge=0)
    prefix_count: int = Field(default=0, ge=0)


class AssignIps(_Action):
    kind: Literal["AssignIps"] = "AssignIps"
    eni_id: str
    count: int = Field(ge=1)


class AssignPrefixes(_Action):
    kind: Literal["AssignPrefixes"] = "AssignPrefixes"
    eni_id: str
    count: int = Field(ge=1)


class ReleaseIps(_Action):
    kind: Literal["ReleaseIps"] = "ReleaseIps"
    eni_id: str
    ips: tuple[str, ...]


class ReleasePrefixes(_Action):
    kind: Literal["ReleasePrefixes"] = "ReleasePrefixes"
    eni_id: str
    prefixes: tuple[str, ...]


class DeleteEni(_Action):
    kind: Literal["DeleteEni"] = "DeleteEni"
    eni_id: str


class CreateBranches(_Action):
    kind: Literal["CreateBranches"] = "CreateBranches"
    count: int = Field(ge=1)


class DeleteBranches(_Action):
    kind: Literal["DeleteBranches"] = "DeleteBranches"
    eni_ids: tuple[str, ...]


PoolAction = Annotated[
    CreateTrunk
    | AttachEni
    | AssignIps
    | AssignPrefixes
    | ReleaseIps
    | ReleasePrefixes
    | DeleteEni
    | CreateBranches
    | DeleteBranches,
    Field(discriminator="kind"),
]


class PoolPlan(BaseModel):
    """The work for the executor, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    actions: tuple[PoolAction, ...]
    notes: tuple[str, ...]
    excess_since: float | None
    branch_excess_since: float | None
    branch_high_water: int = 0
    branch_high_water_at: float = 0.0
    shared_idle_since: dict[str, float] = Field(default_factory=dict)
    target_addresses: int
    max_pods: int

    @property
    def empty(self) -> bool:
        return not self.actions


def describe_action(action: PoolAction) -> str:
    match action:
        case CreateTrunk(device_index=index):
            return f"create and attach trunk ENI at device index {index}"
        case AttachEni(device_index=index, ip_count=ips, prefix_count=prefixes, security_group_ids=groups):
            what = f"{prefixes} /28 prefix(es)" if prefixes else f"{ips} secondary IP(s)"
            kind = f"shared ENI for groups {','.join(groups)}" if groups else "ENI"
            return f"create and attach {kind} at device index {index} with {what}"
        case AssignIps(eni_id=eni, count=count):
            return f"assign {count} secondary IP(s) to {eni}"
        case AssignPrefixes(eni_id=eni, count=count):
            return f"assign {count} /28 prefix(es) to {eni}"
        case ReleaseIps(eni_id=eni, ips=ips):
            return f"release {len(ips)} free IP(s) from {eni}"
        case ReleasePrefixes(eni_id=eni, prefixes=prefixes):
            return f"release {len(prefixes)} free prefix(es) from {eni}"
        case DeleteEni(eni_id=eni):
            return f"detach and delete free ENI {eni}"
        case CreateBranches(count=count):
            return f"create {count} warm branch ENI(s) on the trunk"
        case DeleteBranches(eni_ids=enis):
            return f"delete {len(enis)} excess warm branch ENI(s)"
    raise AssertionError(f"unknown action {action!r}")  # pragma: no cover


def _lowest_free_index(used: set[int], limit: int) -> int | None:
    for index in range(1, limit):
        if index not in used:
            return index
    return None


def _highest_free_index(used: set[int], limit: int) -> int | None:
    for index in range(limit - 1, 0, -1):
        if index not in used:
            return index
    return None


def _target_units(pool: NodePool, in_use_ips: int, used_units: int, free_in_used_units: int) -> int:
    """How many units (IPs, or /28 prefixes in prefix mode) the pool should hold."""
    settings = pool.settings
    slots = pool.limits.slots_per_eni
    prefix_mode = pool.mode is PoolMode.PREFIX_DELEGATION
    if settings.ip_targets_set:
        warm = settings.warm_ip_target or 0
        minimum = settings.minimum_ip_target or 0
        need_free_ips = max(warm, minimum - in_use_ips, 0)
        if not prefix_mode:
            return in_use_ips + need_free_ips
        missing = max(0, need_free_ips - free_in_used_units)
        return used_units + math.ceil(missing / IPS_PER_PREFIX)
    if prefix_mode and settings.warm_prefix_target > 0:
        return used_units + settings.warm_prefix_target
    return used_units + settings.warm_eni_target * slots


def plan_pool(pool: NodePool, now: float, *, demand: int = 0) -> PoolPlan:
    """`demand`: addresses pods are asking for right now beyond those in use. The warm targets may be
    0 (WARM_ENI_TARGET=0 without IP targets); a pod that asks must still get an address."""
    settings = pool.settings
    limits = pool.limits
    prefix_mode = pool.mode is PoolMode.PREFIX_DELEGATION
    slots = limits.slots_per_eni
    actions: list[PoolAction] = []
    notes: list[str] = []
    used_indexes = pool.used_device_indexes()

    # --- trunk first: it takes an ENI attachment the IP side must not plan for ----------------
    eni_cap = limits.max_enis if settings.max_eni is None else min(limits.max_enis, settings.max_eni)
    trunk_planned = False
    if settings.enable_pod_eni and pool.trunk_eni_id is None:
        if not limits.trunking:
            notes.append(f"{limits.instance_type} cannot trunk: no branch ENIs on this node")
        else:
            index = _highest_free_index(used_indexes, limits.max_enis)
            if index is None or len(pool.enis) >= eni_cap:
                notes.append("no free ENI attachment for the trunk ENI")
            else:
                actions.append(CreateTrunk(device_index=index))
                used_indexes.add(index)
                trunk_planned = True
    ip_eni_limit = pool.ip_eni_limit - (1 if trunk_planned else 0)

    # --- shared ENIs (SharedENI): one per group set that pods on this node wait for ------------
    shared_planned, shared_idle_since = _plan_shared(pool, now, actions, notes, used_indexes, ip_eni_limit)
    ip_eni_limit -= shared_planned

    # --- pod addresses ------------------------------------------------------------------------
    ip_enis = pool.pod_ip_enis()
    shared_eni_ids = {eni.eni_id for eni in pool.shared_enis()}
    in_use_ips = len(pool.ip_holders) + len(pool.cooling_ips) - pool.shared_addresses_in_use()
    if prefix_mode:
        free_units = {eni.eni_id: pool.free_prefixes(eni) for eni in ip_enis}
        total_units = sum(len(eni.prefixes) for eni in ip_enis)
        used_units = total_units - sum(len(units) for units in free_units.values())
        free_in_used_units = pool.free_ip_count() - IPS_PER_PREFIX * sum(len(u) for u in free_units.values())
    else:
        free_units = {eni.eni_id: pool.free_secondary_ips(eni) for eni in ip_enis}
        total_units = sum(len(eni.ips) for eni in ip_enis)
        used_units = in_use_ips
        free_in_used_units = 0
    capacity_units = max(0, ip_eni_limit - len(shared_eni_ids)) * slots
    wanted = _target_units(pool, in_use_ips, used_units, free_in_used_units)
    if demand > 0:
        missing_ips = max(0, demand - pool.free_ip_count())
        demanded = (
            used_units + math.ceil(max(0, demand - free_in_used_units) / IPS_PER_PREFIX)
            if prefix_mode
            else in_use_ips + pool.free_ip_count() + missing_ips
        )
        wanted = max(wanted, demanded)
    target = min(wanted, capacity_units)
    shortfall = target - total_units
    excess_since = pool.excess_since
    if shortfall > 0 and prefix_mode and now < pool.prefix_refused_until:
        notes.append(
            f"the subnet refused /28 blocks: {shortfall} prefix(es) short, asked for again at "
            f"{pool.prefix_refused_until:.0f} or when the subnet report shows free blocks"
        )
        shortfall = 0  # no refused call every pass; nothing is released meanwhile either
        excess_since = None
    elif shortfall > 0:
        excess_since = None
        for eni in sorted(ip_enis, key=lambda e: e.device_index):
            room = slots - eni.slots_used
            take = min(room, shortfall)
            if take <= 0:
                continue
            actions.append(
                AssignPrefixes(eni_id=eni.eni_id, count=take)
                if prefix_mode
                else AssignIps(eni_id=eni.eni_id, count=take)
            )
            shortfall -= take
        whole_enis = not settings.ip_targets_set and not prefix_mode
        attached = len(pool.enis)
        while shortfall > 0 and attached < ip_eni_limit:
            index = _lowest_free_index(used_indexes, limits.max_enis)
            if index is None:
                break
            count = slots if whole_enis else min(slots, shortfall)
            actions.append(
                AttachEni(device_index=index, prefix_count=count)
                if prefix_mode
                else AttachEni(device_index=index, ip_count=count)
            )
            used_indexes.add(index)
            attached += 1
            shortfall -= count
        if shortfall > 0:
            notes.append(f"at the ENI limit ({ip_eni_limit} for pod addresses): {shortfall} unit(s) short")
    elif shortfall < 0:
        excess = -shortfall
        if excess_since is None:
            excess_since = now
            notes.append(
                f"{excess} unit(s) above target; released after {settings.excess_release_delay_s:g}s"
            )
        elif now - excess_since >= settings.excess_release_delay_s:
            actions.extend(_release_excess(pool, free_units, excess, prefix_mode))
            excess_since = None
    else:
        excess_since = None

    # --- prefix fallback: give secondary IPs back once prefix addresses are free again --------------
    if prefix_mode and pool.free_prefix_address_count() > 0:
        for eni in sorted(ip_enis, key=lambda e: e.device_index):
            free = tuple(pool.free_secondary_ips(eni))
            if free:
                actions.append(ReleaseIps(eni_id=eni.eni_id, ips=free))
                notes.append(
                    f"{len(free)} fallback secondary IP(s) of {eni.eni_id} released: prefixes are back"
                )

    # --- branch ENIs -----------------------------------------------------------------------------
    branch_excess_since = pool.branch_excess_since
    high_water, high_water_at = branch_demand_mark(pool, now)
    if settings.enable_pod_eni and limits.trunking and (pool.trunk_eni_id is not None or trunk_planned):
        counts = pool.branch_counts()
        room = limits.branch_enis - len(pool.branches)
        # Cooling branches come back to warm after their cool-down, and those of terminating pods
        # after their grace period too: count them, rather than create now and delete the excess
        # later (five mutating calls per branch for nothing; in a rollout, one per replaced pod).
        available = counts[BranchState.WARM] + counts[BranchState.COOLING] + pool.returning_branches()
        missing = min(settings.warm_branch_eni_target - available, room)
        if missing > 0:
            actions.append(CreateBranches(count=missing))
            branch_excess_since = None
        elif counts[BranchState.WARM] > (keep := kept_warm_branches(pool, high_water)):
            if branch_excess_since is None:
                branch_excess_since = now
                notes.append(
                    f"{counts[BranchState.WARM] - keep} warm branch ENI(s) above the {keep} kept; "
                    f"deleted after {settings.excess_release_delay_s:g}s"
                )
            elif now - branch_excess_since >= settings.excess_release_delay_s:
                extra = counts[BranchState.WARM] - keep
                warm = [
                    b.eni_id
                    for b in pool.branches.values()
                    if b.state is BranchState.WARM and b.eni_id not in pool.promised
                ]
                actions.append(DeleteBranches(eni_ids=tuple(warm[-extra:])))
                branch_excess_since = None
        else:
            branch_excess_since = None

    return PoolPlan(
        actions=tuple(actions),
        notes=tuple(notes),
        excess_since=excess_since,
        branch_excess_since=branch_excess_since,
        branch_high_water=high_water,
        branch_high_water_at=high_water_at,
        shared_idle_since=shared_idle_since,
        target_addresses=target * (IPS_PER_PREFIX if prefix_mode else 1),
        max_pods=limits.max_pods(prefix_delegation=prefix_mode),
    )


def _plan_shared(
    pool: NodePool,
    now: float,
    actions: list[PoolAction],
    notes: list[str],
    used_indexes: set[int],
    ip_eni_limit: int,
) -> tuple[int, dict[str, float]]:
    """Grow or make the shared ENI of every group set that pods wait for; delete one that no pod has
    held for `excess_release_delay_s`. Returns the ENIs planned (they take attachments) and the idle
    timers. A shared ENI is never modified: a set whose groups change is another set."""
    settings = pool.settings
    slots = pool.limits.slots_per_eni
    prefix_mode = pool.mode is PoolMode.PREFIX_DELEGATION
    planned = 0
    attached = len(pool.enis)
    wanted_sets = dict(pool.shared_wanted)
    for groups in pool.shared_expected:
        if not pool.shared_enis(groups):
            wanted_sets[groups] = max(1, wanted_sets.get(groups, 0))
    for groups, wanted in sorted(wanted_sets.items()):
        need = wanted - pool.shared_free_count(groups)
        if need <= 0:
            continue
        for eni in pool.shared_enis(groups):
            room = slots - eni.slots_used
            if room <= 0:
                continue
            count = min(room, math.ceil(need / IPS_PER_PREFIX)) if prefix_mode else room
            actions.append(
                AssignPrefixes(eni_id=eni.eni_id, count=count)
                if prefix_mode
                else AssignIps(eni_id=eni.eni_id, count=count)
            )
            need -= count * (IPS_PER_PREFIX if prefix_mode else 1)
            if need <= 0:
                break
        if need <= 0:
            continue
        index = _lowest_free_index(used_indexes, pool.limits.max_enis)
        if index is None or attached + planned >= ip_eni_limit:
            notes.append(f"no ENI attachment left for group set {','.join(groups)}: its pods get branch ENIs")
            continue
        used_indexes.add(index)
        planned += 1
        # Made full in one call: the set's later pods need no EC2 call at all.
        actions.append(
            AttachEni(
                device_index=index,
                prefix_count=max(1, math.ceil(need / IPS_PER_PREFIX)),
                security_group_ids=groups,
            )
            if prefix_mode
            else AttachEni(device_index=index, ip_count=slots, security_group_ids=groups)
        )
    idle: dict[str, float] = {}
    for eni in pool.shared_enis():
        if pool.shared_in_use(eni.eni_id) or wanted_sets.get(eni.security_group_ids, 0) > 0:
            continue
        since = pool.shared_idle_since.get(eni.eni_id, now)
        if now - since >= settings.excess_release_delay_s:
            actions.append(DeleteEni(eni_id=eni.eni_id))
            notes.append(f"shared ENI {eni.eni_id} ({','.join(eni.security_group_ids)}) unused: deleted")
        else:
            idle[eni.eni_id] = since
    return planned, idle


def _release_excess(
    pool: NodePool, free_units: dict[str, list[str]], excess: int, prefix_mode: bool
) -> list[PoolAction]:
    """Release free units, last-attached ENIs first; an ENI left with nothing is deleted."""
    actions: list[PoolAction] = []
    for eni in sorted(pool.pod_ip_enis(), key=lambda e: -e.device_index):
        if excess <= 0:
            break
        free = free_units.get(eni.eni_id, [])
        if not free:
            continue
        if not eni.primary and len(free) == eni.slots_used and len(free) <= excess:
            actions.append(DeleteEni(eni_id=eni.eni_id))
            excess -= len(free)
            continue
        chosen = tuple(free[-excess:]) if len(free) > excess else tuple(free)
        actions.append(
            ReleasePrefixes(eni_id=eni.eni_id, prefixes=chosen)
            if prefix_mode
            else ReleaseIps(eni_id=eni.eni_id, ips=chosen)
        )
        excess -= len(chosen)
    return actions


def branch_demand_mark(pool: NodePool, now: float) -> tuple[int, float]:
    """The high-water mark of assigned + cooling branch ENIs and when it was last reached. The mark
    follows demand up at once and comes down to it only after `branch_demand_quiet_s` below it."""
    counts = pool.branch_counts()
    in_use = counts[BranchState.ASSIGNED] + counts[BranchState.COOLING]
    if in_use >= pool.branch_high_water:
        return in_use, now
    if now - pool.branch_high_water_at >= pool.settings.branch_demand_quiet_s:
        return in_use, now
    return pool.branch_high_water, pool.branch_high_water_at


def kept_warm_branches(pool: NodePool, high_water: int) -> int:
    """Warm branches kept: the target, plus those that the demand mark says will be wanted back."""
    counts = pool.branch_counts()
    in_use = counts[BranchState.ASSIGNED] + counts[BranchState.COOLING]
    return pool.settings.warm_branch_eni_target + max(0, high_water - in_use)


def next_action_due(pool: NodePool, now: float) -> float | None:
    """When the pool will next need an EC2 call without being asked: `now` if the plan has work, else
    the first cool-down to end or excess timer to fire; None when it is quiet. A loop that sleeps
    until this time never mistakes a running timer for quiet."""
    plan = plan_pool(pool, now)
    if plan.actions:
        return now
    due: list[float] = list(pool.cooling_ips.values())
    due.extend(since + pool.settings.excess_release_delay_s for since in plan.shared_idle_since.values())
    if pool.prefix_refused_until > now:
        due.append(pool.prefix_refused_until)
    due.extend(b.cooling_until for b in pool.branches.values() if b.state is BranchState.COOLING)
    delay = pool.settings.excess_release_delay_s
    due.extend(since + delay for since in (plan.excess_since, plan.branch_excess_since) if since is not None)
    counts = pool.branch_counts()
    if plan.branch_high_water > counts[BranchState.ASSIGNED] + counts[BranchState.COOLING] and (
        counts[BranchState.WARM] > pool.settings.warm_branch_eni_target
    ):  # the mark comes down then, and the branches it kept become excess
        due.append(plan.branch_high_water_at + pool.settings.branch_demand_quiet_s)
    return max(now, min(due)) if due else None
