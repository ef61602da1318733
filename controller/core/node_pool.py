"""A node's pool: the ENIs, prefixes, IPs and branch ENIs it holds, and who holds what.

Pure state with no I/O. The executor mutates it only after EC2 has answered, and every method
keeps one invariant: an address or branch ENI has at most one holder.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

from pydantic import BaseModel, ConfigDict

from controller.core.allocation_model import AllocationMode, AssignedResources
from controller.core.instance_limits import IPS_PER_PREFIX, InstanceLimits
from controller.settings import PoolSettings


class PoolMode(StrEnum):
    PREFIX_DELEGATION = "PrefixDelegation"
    SECONDARY_IP = "SecondaryIP"


class BranchState(StrEnum):
    WARM = "Warm"  # associated to the trunk, ready for a pod
    ASSIGNED = "Assigned"
    COOLING = "CoolingDown"  # released by a pod; reused after the cool-down


class PoolInvariantError(RuntimeError):
    """Raised instead of ever giving one address or ENI to two holders."""


@lru_cache(maxsize=65536)
def prefix_addresses(prefix: str) -> tuple[str, ...]:
    network = ipaddress.ip_network(prefix, strict=False)
    return tuple(str(network.network_address + offset) for offset in range(network.num_addresses))


@dataclass(slots=True)
class PoolEni:
    """An ENI attached to the node that serves pod IPs (the primary ENI or one netalloc attached)."""

    eni_id: str
    device_index: int
    primary: bool
    mac_address: str = ""
    ips: list[str] = field(default_factory=list)  # secondary IPs (secondary-IP mode)
    prefixes: list[str] = field(default_factory=list)  # /28s (prefix mode)
    # A shared ENI (SharedENI mode): made with exactly these groups, its addresses only for the pods
    # of this node whose group set they are. Empty: an ordinary pool ENI with the node's groups.
    security_group_ids: tuple[str, ...] = ()

    @property
    def shared(self) -> bool:
        return bool(self.security_group_ids)

    @property
    def slots_used(self) -> int:
        return len(self.ips) + len(self.prefixes)


@dataclass(slots=True)
class BranchEni:
    eni_id: str
    vlan_id: int
    ip: str
    mac_address: str
    association_id: str
    security_group_ids: tuple[str, ...]
    state: BranchState = BranchState.WARM
    holder: str | None = None
    cooling_until: float = 0.0


@dataclass(slots=True)
class IpHolding:
    ip: str
    eni_id: str
    prefix: str | None


class NodePoolStatus(BaseModel):
    """The pool as the NodeNetworkPool status shows it (field names map to the CRD's camelCase)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: PoolMode
    trunk_eni_id: str | None
    enis: tuple[dict[str, object], ...]
    branch_warm: int
    branch_in_use: int
    branch_cooling: int
    free_ips: int
    used_ips: int
    cooling_ips: int
    total_ips: int


class NodePool:
    """Pool state for one node. All methods are synchronous and free of I/O."""

    def __init__(
        self,
        *,
        node_name: str,
        instance_id: str,
        subnet_id: str,
        subnet_cidr: str,
        limits: InstanceLimits,
        settings: PoolSettings,
    ) -> None:
        self.node_name = node_name
        self.instance_id = instance_id
        self.subnet_id = subnet_id
        self.subnet_cidr = subnet_cidr
        self.limits = limits
        self.settings = settings
        self.mode = PoolMode.PREFIX_DELEGATION if settings.enable_prefix_delegation else PoolMode.SECONDARY_IP
        self.enis: dict[str, PoolEni] = {}
        self.trunk_eni_id: str | None = None
        self.trunk_device_index: int | None = None
        self.branches: dict[str, BranchEni] = {}
        self.branch_holders: dict[str, str] = {}  # allocation key -> branch eni id
        # Keys whose pods are terminating: their branches come back (after the grace period and the
        # cool-down), so the planner counts them like cooling ones and makes no replacement meanwhile.
        self.returning: set[str] = set()
        self.ip_holders: dict[str, str] = {}  # ip -> allocation key
        self.key_ips: dict[str, IpHolding] = {}  # allocation key -> holding
        self.cooling_ips: dict[str, float] = {}  # ip -> reusable at
        self._free_ips: dict[str, None] = {}  # insertion-ordered set of assignable IPs
        # Free addresses of shared ENIs, per ENI: never handed to a pod of another group set.
        self._shared_free: dict[str, dict[str, None]] = {}
        self.shared_idle_since: dict[str, float] = {}  # shared ENI -> when it last had no holder
        # Pods waiting for an address of a group set on this node right now: the planner makes or
        # grows that set's shared ENI for them.
        self.shared_wanted: dict[tuple[str, ...], int] = {}
        # Sets whose first pod took a warm branch because their shared ENI was not made yet: the
        # planner makes it for the pods that follow.
        self.shared_expected: set[tuple[str, ...]] = set()
        self._ip_owner: dict[str, tuple[str, str | None]] = {}  # ip -> (eni id, prefix)
        self.excess_since: float | None = None
        self.branch_excess_since: float | None = None
        # The most branches assigned + cooling at once lately, and when it was last reached: warm
        # branches up to that mark are kept until it has not been reached for `branch_demand_quiet_s`.
        self.branch_high_water: int = 0
        self.branch_high_water_at: float = 0.0
        # The subnet refused /28 blocks: no prefix is asked for before this time (capacity backoff),
        # unless a subnet report shows free blocks again. Pods get secondary IPs meanwhile (fallback).
        self.prefix_refused_until: float = 0.0
        # Cooling branch ENI -> the key of the pod waiting for it: no other pod takes it when it is back.
        self.promised: dict[str, str] = {}

    # ----- capacity bookkeeping -------------------------------------------------------------
    @property
    def ip_eni_limit(self) -> int:
        """ENIs that may carry pod IPs: the instance limit, MAX_ENI, less the trunk's attachment."""
        cap = (
            self.limits.max_enis
            if self.settings.max_eni is None
            else min(self.limits.max_enis, self.settings.max_eni)
        )
        return cap - (1 if self.trunk_eni_id is not None else 0)

    def pod_ip_enis(self) -> list[PoolEni]:
        """The ENIs whose addresses any pod may get (the primary and the ordinary pool ENIs)."""
        return [eni for eni in self.enis.values() if not eni.shared]

    def shared_enis(self, security_group_ids: tuple[str, ...] | None = None) -> list[PoolEni]:
        """Shared ENIs, all or those of one group set, by device index."""
        wanted = None if security_group_ids is None else tuple(sorted(security_group_ids))
        found = [
            e for e in self.enis.values() if e.shared and (wanted is None or e.security_group_ids == wanted)
        ]
        return sorted(found, key=lambda e: e.device_index)

    def shared_free_count(self, security_group_ids: tuple[str, ...]) -> int:
        return sum(len(self._shared_free.get(e.eni_id, ())) for e in self.shared_enis(security_group_ids))

    def shared_addresses_in_use(self) -> int:
        """Held or cooling addresses of shared ENIs: not part of the common pool's in-use count."""
        shared = {e.eni_id for e in self.enis.values() if e.shared}
        if not shared:
            return 0
        owner = self._ip_owner
        held = sum(1 for ip in self.ip_holders if ip in owner and owner[ip][0] in shared)
        return held + sum(1 for ip in self.cooling_ips if ip in owner and owner[ip][0] in shared)

    def common_address_counts(self) -> tuple[int, int]:
        """Held and cooling addresses of the common pool (not shared ENIs': no other pod may use those)."""
        shared = {e.eni_id for e in self.enis.values() if e.shared}
        owner = self._ip_owner

        def common(ip: str) -> bool:
            return not (ip in owner and owner[ip][0] in shared)

        return sum(1 for ip in self.ip_holders if common(ip)), sum(1 for ip in self.cooling_ips if common(ip))

    def shared_in_use(self, eni_id: str) -> bool:
        """Does any pod hold, or has one just given back (cooling), an address of this ENI?"""
        return any(
            ip in self.ip_holders or ip in self.cooling_ips for ip in self._eni_addresses(self.enis[eni_id])
        )

    def used_device_indexes(self) -> set[int]:
        used = {eni.device_index for eni in self.enis.values()}
        if self.trunk_device_index is not None:
            used.add(self.trunk_device_index)
        return used

    def total_ips(self) -> int:
        return len(self._ip_owner)

    def free_ip_count(self) -> int:
        """Free addresses any pod may get (shared ENIs' are counted per set: `shared_free_count`)."""
        return len(self._free_ips)

    def add_eni(self, eni: PoolEni) -> None:
        if eni.eni_id in self.enis:
            raise PoolInvariantError(f"ENI {eni.eni_id} is already in the pool of {self.node_name}")
        groups = tuple(sorted(eni.security_group_ids))
        self.enis[eni.eni_id] = PoolEni(
            eni.eni_id, eni.device_index, eni.primary, eni.mac_address, security_group_ids=groups
        )
        if groups:
            self._shared_free[eni.eni_id] = {}
        self.add_ips(eni.eni_id, eni.ips)
        self.add_prefixes(eni.eni_id, eni.prefixes)

    def remove_eni(self, eni_id: str) -> None:
        eni = self.enis[eni_id]
        if any(ip in self.ip_holders or ip in self.cooling_ips for ip in self._eni_addresses(eni)):
            raise PoolInvariantError(f"ENI {eni_id} still has addresses held by pods")
        for ip in self._eni_addresses(eni):
            self._forget_ip(ip)
        del self.enis[eni_id]
        self._shared_free.pop(eni_id, None)
        self.shared_idle_since.pop(eni_id, None)

    def forget_eni(self, eni_id: str) -> list[str]:
        """EC2 no longer has this ENI (or branch): drop it and what it carried. Returns the keys that
        held something on it; their PNAs no longer hold anything."""
        lost: list[str] = []
        if eni_id in self.branches:
            branch = self.branches.pop(eni_id)
            self.promised.pop(eni_id, None)
            if branch.holder is not None:
                self.branch_holders.pop(branch.holder, None)
                lost.append(branch.holder)
            return lost
        eni = self.enis.pop(eni_id, None)
        if eni is None:
            return lost
        for ip in self._eni_addresses(eni):
            holder = self.ip_holders.pop(ip, None)
            if holder is not None:
                self.key_ips.pop(holder, None)
                lost.append(holder)
            self._forget_ip(ip)
        self._shared_free.pop(eni_id, None)
        self.shared_idle_since.pop(eni_id, None)
        return lost

    def add_ips(self, eni_id: str, ips: list[str]) -> None:
        eni = self.enis[eni_id]
        for ip in ips:
            self._learn_ip(ip, eni_id, None)
            eni.ips.append(ip)

    def add_prefixes(self, eni_id: str, prefixes: list[str]) -> None:
        eni = self.enis[eni_id]
        for prefix in prefixes:
            for ip in prefix_addresses(prefix):
                self._learn_ip(ip, eni_id, prefix)
            eni.prefixes.append(prefix)

    def adopt_addresses(self, eni_id: str, *, ips: list[str], prefixes: list[str]) -> None:
        """Make the ENI's addresses what EC2 says: learn the ones it has that we do not know, and
        forget free ones it no longer has. Held or cooling addresses are never forgotten here."""
        eni = self.enis[eni_id]
        self.add_ips(eni_id, [ip for ip in ips if ip not in eni.ips])
        self.add_prefixes(eni_id, [p for p in prefixes if p not in eni.prefixes])
        gone_ips = [ip for ip in eni.ips if ip not in ips and self._is_free(ip)]
        if gone_ips:
            self.remove_ips(eni_id, gone_ips)
        gone_prefixes = [p for p in self.free_prefixes(eni) if p not in prefixes]
        if gone_prefixes:
            self.remove_prefixes(eni_id, gone_prefixes)

    def remove_ips(self, eni_id: str, ips: list[str]) -> None:
        eni = self.enis[eni_id]
        for ip in ips:
            self._check_unheld(ip)
            self._forget_ip(ip)
            eni.ips.remove(ip)

    def remove_prefixes(self, eni_id: str, prefixes: list[str]) -> None:
        eni = self.enis[eni_id]
        for prefix in prefixes:
            addresses = prefix_addresses(prefix)
            for ip in addresses:
                self._check_unheld(ip)
            for ip in addresses:
                self._forget_ip(ip)
            eni.prefixes.remove(prefix)

    def _learn_ip(self, ip: str, eni_id: str, prefix: str | None) -> None:
        if ip in self._ip_owner:
            raise PoolInvariantError(f"address {ip} is already in the pool of {self.node_name}")
        self._ip_owner[ip] = (eni_id, prefix)
        self._free_set(eni_id)[ip] = None

    def _free_set(self, eni_id: str) -> dict[str, None]:
        """Where a free address of this ENI waits: the common set, or its shared ENI's own."""
        shared = self._shared_free.get(eni_id)
        return self._free_ips if shared is None else shared

    def _is_free(self, ip: str) -> bool:
        owner = self._ip_owner.get(ip)
        return owner is not None and ip in self._free_set(owner[0])

    def _take_free(self, ip: str) -> None:
        owner = self._ip_owner.get(ip)
        if owner is not None:
            self._free_set(owner[0]).pop(ip, None)

    def _forget_ip(self, ip: str) -> None:
        self._take_free(ip)
        self._ip_owner.pop(ip, None)
        self.cooling_ips.pop(ip, None)

    def _check_unheld(self, ip: str) -> None:
        if ip in self.ip_holders or ip in self.cooling_ips:
            raise PoolInvariantError(f"address {ip} is held or cooling down; it cannot be released")

    def _eni_addresses(self, eni: PoolEni) -> list[str]:
        addresses = list(eni.ips)
        for prefix in eni.prefixes:
            addresses.extend(prefix_addresses(prefix))
        return addresses

    # ----- time ------------------------------------------------------------------------------
    def expire_cooldowns(self, now: float) -> int:
        """Return cooled-down IPs and branch ENIs to the free pool; returns how many came back."""
        returned = 0
        if self.cooling_ips:
            for ip, until in list(self.cooling_ips.items()):
                if until <= now:
                    del self.cooling_ips[ip]
                    self._free_set(self._ip_owner[ip][0])[ip] = None
                    returned += 1
        for branch in self.branches.values():
            if branch.state is BranchState.COOLING and branch.cooling_until <= now:
                branch.state = BranchState.WARM
                returned += 1
        return returned

    # ----- pod IPs -----------------------------------------------------------------------------
    def holding_for(self, key: str) -> AssignedResources | None:
        held = self.key_ips.get(key)
        if held is not None:
            return self._ip_resources(held)
        branch_id = self.branch_holders.get(key)
        if branch_id is not None:
            return self._branch_resources(self.branches[branch_id])
        return None

    def take_ip(self, key: str) -> AssignedResources | None:
        """Give the key a free address, or None when the pool has none free right now. In prefix mode
        addresses from /28 prefixes go first; secondary IPs (the prefix fallback) only when none is."""
        if key in self.key_ips:
            return self._ip_resources(self.key_ips[key])
        if not self._free_ips:
            return None
        ip = next(iter(self._free_ips))
        if self.mode is PoolMode.PREFIX_DELEGATION and self._ip_owner[ip][1] is None:
            ip = next((a for a in self._free_ips if self._ip_owner[a][1] is not None), ip)
        del self._free_ips[ip]
        if ip in self.ip_holders:
            raise PoolInvariantError(f"address {ip} was free and held at once")
        eni_id, prefix = self._ip_owner[ip]
        holding = IpHolding(ip, eni_id, prefix)
        self.ip_holders[ip] = key
        self.key_ips[key] = holding
        return self._ip_resources(holding)

    def take_shared_ip(self, key: str, security_group_ids: tuple[str, ...]) -> AssignedResources | None:
        """Give the key a free address of a shared ENI with exactly these groups, or None."""
        if key in self.key_ips:
            return self._ip_resources(self.key_ips[key])
        for eni in self.shared_enis(security_group_ids):
            free = self._shared_free[eni.eni_id]
            if not free:
                continue
            ip = next(iter(free))
            del free[ip]
            if ip in self.ip_holders:
                raise PoolInvariantError(f"address {ip} was free and held at once")
            holding = IpHolding(ip, eni.eni_id, self._ip_owner[ip][1])
            self.ip_holders[ip] = key
            self.key_ips[key] = holding
            self.shared_idle_since.pop(eni.eni_id, None)
            return self._ip_resources(holding)
        return None

    def restore_ip(self, key: str, ip: str) -> bool:
        """Re-establish a holding recorded in a PNA after a restart. False if the address is unknown."""
        if ip not in self._ip_owner:
            return False
        holder = self.ip_holders.get(ip)
        if holder is not None and holder != key:
            raise PoolInvariantError(f"address {ip} is recorded for both {holder} and {key}")
        eni_id, prefix = self._ip_owner[ip]
        self._take_free(ip)
        self.cooling_ips.pop(ip, None)
        self.ip_holders[ip] = key
        self.key_ips[key] = IpHolding(ip, eni_id, prefix)
        return True

    def release_ip(self, key: str, now: float) -> str | None:
        self.returning.discard(key)
        holding = self.key_ips.pop(key, None)
        if holding is None:
            return None
        del self.ip_holders[holding.ip]
        if holding.ip in self._ip_owner:
            self.cooling_ips[holding.ip] = now + self.settings.ip_cooldown_s
        return holding.ip

    def _ip_resources(self, held: IpHolding) -> AssignedResources:
        eni = self.enis[held.eni_id]
        if eni.shared:
            mode = AllocationMode.SHARED_ENI
        else:
            mode = AllocationMode.PREFIX_IP if held.prefix else AllocationMode.SECONDARY_IP
        return AssignedResources(
            mode=mode,
            ip=held.ip,
            eni_id=held.eni_id,
            subnet_cidr=self.subnet_cidr,
            mac_address=eni.mac_address,
            prefix=held.prefix,
            security_group_ids=eni.security_group_ids,
        )

    # ----- branch ENIs ---------------------------------------------------------------------------
    def branch_counts(self) -> dict[BranchState, int]:
        counts = dict.fromkeys(BranchState, 0)
        for branch in self.branches.values():
            counts[branch.state] += 1
        return counts

    def free_vlan(self, reserved: set[int] | None = None) -> int | None:
        used = {b.vlan_id for b in self.branches.values()} | (reserved or set())
        for vlan in range(1, self.limits.branch_enis + 1):
            if vlan not in used:
                return vlan
        return None

    def add_branch(self, branch: BranchEni) -> None:
        if branch.eni_id in self.branches:
            raise PoolInvariantError(f"branch ENI {branch.eni_id} is already in the pool")
        if any(b.vlan_id == branch.vlan_id for b in self.branches.values()):
            raise PoolInvariantError(f"VLAN {branch.vlan_id} is already used on {self.node_name}")
        self.branches[branch.eni_id] = branch
        if branch.holder is not None:
            self.branch_holders[branch.holder] = branch.eni_id

    def remove_branch(self, eni_id: str) -> BranchEni:
        branch = self.branches[eni_id]
        if branch.state is BranchState.ASSIGNED:
            raise PoolInvariantError(f"branch ENI {eni_id} is assigned to {branch.holder}")
        self.promised.pop(eni_id, None)
        return self.branches.pop(eni_id)

    def choose_warm_branch(self, security_group_ids: tuple[str, ...], key: str = "") -> BranchEni | None:
        """The warm branch promised to `key` if there is one; else a warm branch with exactly these
        groups; else any warm branch (oldest first). Branches promised to other keys are not offered."""
        for eni_id, holder in self.promised.items():
            if holder == key and self.branches[eni_id].state is BranchState.WARM:
                return self.branches[eni_id]
        wanted = tuple(sorted(security_group_ids))
        fallback: BranchEni | None = None
        for branch in self.branches.values():
            if branch.state is not BranchState.WARM or branch.eni_id in self.promised:
                continue
            if branch.security_group_ids == wanted:
                return branch
            if fallback is None:
                fallback = branch
        return fallback

    def soonest_cooling_branch(self, key: str) -> BranchEni | None:
        """The cooling branch that comes back first, among those not promised to another key."""
        best: BranchEni | None = None
        for branch in self.branches.values():
            if branch.state is not BranchState.COOLING:
                continue
            if self.promised.get(branch.eni_id, key) != key:
                continue
            if best is None or branch.cooling_until < best.cooling_until:
                best = branch
        return best

    def promise_branch(self, eni_id: str, key: str) -> None:
        """Keep a cooling branch for the pod that waits on it. One branch per key, one key per branch."""
        holder = self.promised.get(eni_id)
        if holder is not None and holder != key:
            raise PoolInvariantError(f"branch ENI {eni_id} is promised to {holder}, not {key}")
        if self.branches[eni_id].state is not BranchState.COOLING:
            raise PoolInvariantError(f"branch ENI {eni_id} is not cooling; it cannot be promised to {key}")
        self.forget_promise(key)
        self.promised[eni_id] = key

    def forget_promise(self, key: str) -> None:
        """The key no longer waits (it took a branch, failed, or its pod went)."""
        for eni_id in [e for e, holder in self.promised.items() if holder == key]:
            del self.promised[eni_id]

    def assign_branch(self, key: str, eni_id: str) -> None:
        branch = self.branches[eni_id]
        if branch.state is not BranchState.WARM or branch.holder is not None:
            raise PoolInvariantError(f"branch ENI {eni_id} is not warm; it cannot be given to {key}")
        if key in self.branch_holders:
            raise PoolInvariantError(f"{key} already holds branch ENI {self.branch_holders[key]}")
        if self.promised.get(eni_id, key) != key:
            raise PoolInvariantError(f"branch ENI {eni_id} is promised to {self.promised[eni_id]}, not {key}")
        self.forget_promise(key)
        branch.state = BranchState.ASSIGNED
        branch.holder = key
        self.branch_holders[key] = eni_id

    def mark_returning(self, key: str) -> None:
        """The key's pod is terminating: what it holds comes back. Keys that hold nothing here (pods of
        other namespaces on the node, say) are not kept: the set would only grow."""
        if key in self.branch_holders or key in self.key_ips:
            self.returning.add(key)

    def returning_branches(self) -> int:
        """Assigned branches whose pods are terminating."""
        return sum(1 for key in self.returning if key in self.branch_holders)

    def unassign_branch(self, key: str, now: float, *, cool_down: bool = True) -> BranchEni | None:
        self.returning.discard(key)
        eni_id = self.branch_holders.pop(key, None)
        if eni_id is None:
            return None
        branch = self.branches[eni_id]
        branch.holder = None
        if cool_down:
            branch.state = BranchState.COOLING
            branch.cooling_until = now + self.settings.branch_cooldown_s
        else:
            branch.state = BranchState.WARM
        return branch

    def set_branch_groups(self, eni_id: str, security_group_ids: tuple[str, ...]) -> None:
        self.branches[eni_id].security_group_ids = tuple(sorted(security_group_ids))

    def branch_resources(self, key: str) -> AssignedResources | None:
        eni_id = self.branch_holders.get(key)
        return None if eni_id is None else self._branch_resources(self.branches[eni_id])

    def _branch_resources(self, branch: BranchEni) -> AssignedResources:
        return AssignedResources(
            mode=AllocationMode.BRANCH_ENI,
            ip=branch.ip,
            eni_id=branch.eni_id,
            subnet_cidr=self.subnet_cidr,
            mac_address=branch.mac_address,
            vlan_id=branch.vlan_id,
            security_group_ids=branch.security_group_ids,
        )

    # ----- views -------------------------------------------------------------------------------
    def free_prefixes(self, eni: PoolEni) -> list[str]:
        """Prefixes of the ENI with no address held or cooling."""
        free = self._free_set(eni.eni_id)
        return [prefix for prefix in eni.prefixes if all(ip in free for ip in prefix_addresses(prefix))]

    def free_prefix_address_count(self) -> int:
        return sum(1 for ip in self._free_ips if self._ip_owner[ip][1] is not None)

    def free_secondary_ips(self, eni: PoolEni) -> list[str]:
        free = self._free_set(eni.eni_id)
        return [ip for ip in eni.ips if ip in free]

    def status(self) -> NodePoolStatus:
        counts = self.branch_counts()
        enis = tuple(
            {
                "eniId": eni.eni_id,
                "deviceIndex": eni.device_index,
                "primary": eni.primary,
                "ips": list(eni.ips),
                "prefixes": list(eni.prefixes),
                **({"securityGroupIds": list(eni.security_group_ids)} if eni.shared else {}),
            }
            for eni in sorted(self.enis.values(), key=lambda e: e.device_index)
        )
        return NodePoolStatus(
            mode=self.mode,
            trunk_eni_id=self.trunk_eni_id,
            enis=enis,
            branch_warm=counts[BranchState.WARM],
            branch_in_use=counts[BranchState.ASSIGNED],
            branch_cooling=counts[BranchState.COOLING],
            free_ips=len(self._free_ips) + sum(len(free) for free in self._shared_free.values()),
            used_ips=len(self.ip_holders),
            cooling_ips=len(self.cooling_ips),
            total_ips=len(self._ip_owner),
        )


IPS_PER_UNIT = {PoolMode.PREFIX_DELEGATION: IPS_PER_PREFIX, PoolMode.SECONDARY_IP: 1}
