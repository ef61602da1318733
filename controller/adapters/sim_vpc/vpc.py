"""`SimulatedVpc`: an in-memory EC2 VPC implementing `Ec2Port`, with the semantics moto lacks.

Modelled: subnet address spaces with EC2's reserved addresses, aligned /28 prefixes and
fragmentation; per-instance ENI and IPv4-slot limits (a /28 prefix takes one slot); trunk and
branch interfaces with VLAN ids and a branch limit per instance type; client-token idempotency;
tags and tag filters; security groups; EC2's per-action token buckets and per-call latency (both on
the injected `Clock`, so virtual time under the research loop); scripted and random faults.
Errors carry EC2's codes and messages; where EC2's exact wording is not public the message says
the same thing in EC2's style (see `BRANCH_LIMIT_EXCEEDED_CODE`).

Every port call runs: count, token bucket (RequestLimitExceeded, HTTP 503, when empty), latency
(`clock.sleep`), scripted fault, then the effect, applied atomically (no await inside), so
concurrent callers see a consistent VPC. The introspection helpers (`network_interfaces`,
`subnet_usage`, ...) are free: no bucket, no latency, no call count.

Like the boto3 adapter, the simulated CreateNetworkInterface tags the new ENI with
`TAG_CLIENT_TOKEN`, so recovery code finds an earlier attempt the same way in both.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, TypeVar

from pydantic import BaseModel, ConfigDict

from controller.adapters.ec2_observer import CallOutcome, Ec2CallObserver
from controller.adapters.sim_vpc.address_space import (
    AddressPlacement,
    NoFreeAddresses,
    NoFreePrefixes,
    SubnetAddressSpace,
    format_ipv4,
    format_prefix,
    parse_ipv4,
    parse_prefix,
)
from controller.adapters.sim_vpc.api_limits import ApiGate, ApiLimitsConfig, LatencyConfig
from controller.adapters.sim_vpc.faults import REQUEST_LIMIT_EXCEEDED, FaultPlan
from controller.clock import Clock, LoopClock
from controller.core.errors import Ec2Error, ErrorClass, NotFoundError
from controller.core.tags import TAG_CLIENT_TOKEN
from controller.ports.ec2 import (
    Attachment,
    InstanceInfo,
    InstanceTypeInfo,
    InterfaceType,
    NetworkInterface,
    SubnetCidrReservation,
    SubnetInfo,
    TrunkAssociation,
)

_T = TypeVar("_T")

# The same codes the boto3 adapter raises as NotFoundError.
NOT_FOUND_CODES: Final = frozenset(
    {
        "InvalidNetworkInterfaceID.NotFound",
        "InvalidAttachmentID.NotFound",
        "InvalidAssociationID.NotFound",
        "InvalidInstanceID.NotFound",
    }
)
INSUFFICIENT_CIDR_BLOCKS_MESSAGE: Final = (
    "The specified subnet does not have enough free cidr blocks to satisfy the request."
)
INSUFFICIENT_ADDRESSES_MESSAGE: Final = (
    "The specified subnet does not have enough free addresses to satisfy the request."
)
# What EC2 says (code InvalidParameterValue) on some prefix exhaustions; `classify` keys on it.
NO_FREE_ADDRESSES_OR_PREFIXES_MESSAGE: Final = "There aren't sufficient free Ipv4 addresses or prefixes"
PRIVATE_IP_LIMIT_MESSAGE: Final = "Number of private addresses will exceed limit."
IDEMPOTENCY_MISMATCH_MESSAGE: Final = (
    "Arguments on this idempotent request are inconsistent with arguments used in previous request(s)."
)
# EC2 does not document the error for one branch too many (AWS's controller never sends it; it
# keeps a table). We answer this code, which `classify` counts as CAPACITY.
BRANCH_LIMIT_EXCEEDED_CODE: Final = "BranchInterfaceLimitExceeded"
MAX_VLAN_ID: Final = 4094
DEFAULT_REGION: Final = "us-west-2"
DEFAULT_ACCOUNT_ID: Final = "123456789012"


class PrefixExhaustionStyle(StrEnum):
    """How a subnet answers when no aligned /28 is free (EC2 does both)."""

    INSUFFICIENT_CIDR_BLOCKS = "InsufficientCidrBlocks"
    INVALID_PARAMETER_VALUE = "InvalidParameterValue"


class SubnetUsage(BaseModel):
    """What a subnet has left, including what EC2 never shows: free aligned /28 blocks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subnet_id: str
    cidr_block: str
    usable_addresses: int
    free_addresses: int
    free_aligned_prefixes: int
    occupied_by_others: int


def _error(code: str, message: str) -> Ec2Error:
    error_type = NotFoundError if code in NOT_FOUND_CODES else Ec2Error
    return error_type(code, message, http_status=400)


def _eni_not_found(eni_id: str) -> Ec2Error:
    return _error("InvalidNetworkInterfaceID.NotFound", f"The networkInterface ID '{eni_id}' does not exist")


def _no_prefix_delegation(instance_type: str) -> Ec2Error:
    return _error(
        "InvalidParameterValue", f"Prefix delegation is not supported for instance type {instance_type}."
    )


def _outcome(error: Ec2Error) -> CallOutcome:
    return "throttled" if error.error_class is ErrorClass.THROTTLING else "error"


@dataclass(slots=True, eq=False)
class _Subnet:
    subnet_id: str
    availability_zone: str
    space: SubnetAddressSpace
    prefix_exhaustion: PrefixExhaustionStyle
    reservations: list[SubnetCidrReservation] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class _Instance:
    instance_id: str
    type_info: InstanceTypeInfo
    branch_limit: int
    subnet_id: str
    availability_zone: str
    security_group_ids: tuple[str, ...]
    primary_eni_id: str = ""
    devices: dict[int, str] = field(default_factory=dict)  # device index -> ENI id

    @property
    def can_trunk(self) -> bool:
        return self.type_info.nitro and self.branch_limit > 0


@dataclass(slots=True, eq=False)
class _Eni:
    eni_id: str
    seq: int
    subnet: _Subnet
    interface_type: InterfaceType
    mac_address: str
    primary_ip: int
    security_group_ids: tuple[str, ...]
    tags: dict[str, str]
    secondary_ips: dict[int, None] = field(default_factory=dict)  # ordered set
    prefixes: dict[int, None] = field(default_factory=dict)  # ordered set of /28 starts
    attachment: Attachment | None = None
    delete_on_termination: bool = False
    association_id: str | None = None  # branch side: its association with a trunk
    vlans: dict[int, str] = field(default_factory=dict)  # trunk side: VLAN id -> association id
    permissions: dict[str, str] = field(default_factory=dict)  # permission id -> account id

    @property
    def ipv4_slots(self) -> int:
        """IPv4 slots in use: the primary, each secondary address and each /28 prefix."""
        return 1 + len(self.secondary_ips) + len(self.prefixes)

    @property
    def status(self) -> str:
        return "in-use" if self.attachment is not None or self.association_id is not None else "available"


class SimulatedVpc:
    """One VPC of one account and region, in memory. Implements `controller.ports.ec2.Ec2Port`."""

    def __init__(
        self,
        *,
        instance_types: Mapping[str, InstanceTypeInfo],
        branch_limits: Mapping[str, int],
        clock: Clock | None = None,
        seed: int = 0,
        api_limits: ApiLimitsConfig | None = None,
        latency: LatencyConfig | None = None,
        address_placement: AddressPlacement = AddressPlacement.SCATTER,
        prefix_exhaustion: PrefixExhaustionStyle = PrefixExhaustionStyle.INSUFFICIENT_CIDR_BLOCKS,
        observer: Ec2CallObserver | None = None,
        region: str = DEFAULT_REGION,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> None:
        self._instance_types = dict(instance_types)
        self._branch_limits = dict(branch_limits)
        self._max_ipv4_per_eni = max((t.ipv4_per_eni for t in self._instance_types.values()), default=50)
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._seed = seed
        self._gate = ApiGate(
            api_limits if api_limits is not None else ApiLimitsConfig(),
            latency if latency is not None else LatencyConfig(),
            seed=seed,
        )
        self._faults = FaultPlan()
        self._observer = observer
        self._placement = address_placement
        self._prefix_exhaustion = prefix_exhaustion
        self.region = region
        self.account_id = account_id
        self._ids = random.Random(f"ids:{seed}")
        self._macs = random.Random(f"macs:{seed}")
        self._issued: set[str] = set()
        self._seq = 0
        self._subnets: dict[str, _Subnet] = {}
        self._security_groups: dict[str, str] = {}  # id -> name
        self._instances: dict[str, _Instance] = {}
        self._enis: dict[str, _Eni] = {}
        self._attachments: dict[str, str] = {}  # attachment id -> ENI id
        self._associations: dict[str, TrunkAssociation] = {}
        self._by_tag: dict[tuple[str, str], set[str]] = {}
        self._eni_tokens: dict[str, tuple[tuple[object, ...], str, NetworkInterface]] = {}
        self._association_tokens: dict[str, tuple[tuple[object, ...], TrunkAssociation]] = {}
        # When the simulation stands in for a real cluster's VPC (`netalloc run --ec2 sim`), the
        # SecurityGroupPolicies name real group ids: accept them instead of answering NotFound.
        self.adopt_unknown_security_groups = False
        self.vpc_id = self._new_id("vpc")
        self.default_security_group_id = self.create_security_group("default")

    # ==========================================================================================
    # Topology (set-up helpers: no API limits, no latency, not counted)
    # ==========================================================================================

    def create_subnet(
        self,
        cidr: str,
        *,
        availability_zone: str | None = None,
        prefix_exhaustion: PrefixExhaustionStyle | None = None,
        address_placement: AddressPlacement | None = None,
    ) -> SubnetInfo:
        network = ipaddress.IPv4Network(cidr, strict=True)
        for other in self._subnets.values():
            if network.overlaps(ipaddress.IPv4Network(other.space.cidr)):
                raise ValueError(f"{cidr} overlaps subnet {other.subnet_id} ({other.space.cidr})")
        subnet_id = self._new_id("subnet")
        space = SubnetAddressSpace(
            cidr, placement=address_placement or self._placement, seed=f"{self._seed}:{subnet_id}"
        )
        subnet = _Subnet(
            subnet_id=subnet_id,
            availability_zone=availability_zone or f"{self.region}a",
            space=space,
            prefix_exhaustion=prefix_exhaustion or self._prefix_exhaustion,
        )
        self._subnets[subnet_id] = subnet
        return self._subnet_info(subnet)

    def create_security_group(self, name: str) -> str:
        group_id = self._new_id("sg")
        self._security_groups[group_id] = name
        return group_id

    def launch_instance(
        self,
        instance_type: str,
        subnet_id: str,
        *,
        security_group_ids: Iterable[str] = (),
        instance_id: str | None = None,
    ) -> InstanceInfo:
        """A running instance with its primary ENI (device 0, deleted on termination).

        `instance_id` gives it a chosen id, e.g. a real cluster node's, for `netalloc run --ec2 sim`.
        """
        type_info = self._instance_types.get(instance_type)
        if type_info is None:
            raise ValueError(f"instance type {instance_type!r} is not in this VPC's catalog")
        if instance_id is not None and instance_id in self._instances:
            raise ValueError(f"instance {instance_id} already exists")
        subnet = self._subnet(subnet_id)
        groups = self._known_groups(security_group_ids)
        instance = _Instance(
            instance_id=instance_id or self._new_id("i"),
            type_info=type_info,
            branch_limit=self._branch_limits.get(instance_type, 0),
            subnet_id=subnet_id,
            availability_zone=subnet.availability_zone,
            security_group_ids=groups,
        )
        eni = self._new_eni(subnet, InterfaceType.INTERFACE, groups, {}, secondary_ip_count=0, prefix_count=0)
        self._attach(eni, instance, 0)
        eni.delete_on_termination = True
        instance.primary_eni_id = eni.eni_id
        self._instances[instance.instance_id] = instance
        return self._instance_info(instance)

    # -- rebuilding from records (`netalloc run --ec2 sim` after a restart or a failover) --------------

    def restore_instance(
        self,
        instance_type: str,
        subnet_id: str,
        *,
        instance_id: str,
        primary_eni_id: str,
        security_group_ids: Iterable[str] = (),
    ) -> InstanceInfo:
        """An instance whose primary ENI has a known id (its addresses come with `restore_addresses`)."""
        if instance_id in self._instances:
            raise ValueError(f"instance {instance_id} already exists")
        info = self.launch_instance(
            instance_type, subnet_id, security_group_ids=security_group_ids, instance_id=instance_id
        )
        eni = self._enis.pop(info.primary_eni_id)
        for pair in eni.tags.items():
            self._by_tag.get(pair, set()).discard(eni.eni_id)
        assert eni.attachment is not None
        self._attachments[eni.attachment.attachment_id] = primary_eni_id
        eni.eni_id = primary_eni_id
        self._issued.add(primary_eni_id)
        self._enis[primary_eni_id] = eni
        instance = self._instances[instance_id]
        instance.devices[0] = primary_eni_id
        instance.primary_eni_id = primary_eni_id
        return self._instance_info(instance)

    def restore_eni(
        self,
        *,
        eni_id: str,
        subnet_id: str,
        interface_type: InterfaceType,
        tags: Mapping[str, str],
        security_group_ids: Iterable[str] = (),
        private_ip: str | None = None,
        mac_address: str | None = None,
        attach_to: tuple[str, int] | None = None,
    ) -> NetworkInterface:
        """An ENI with a known id (and primary address, if known), attached where the records say."""
        if eni_id in self._enis:
            raise ValueError(f"{eni_id} already exists")
        subnet = self._subnet(subnet_id)
        groups = self._known_groups(security_group_ids)
        if private_ip is not None:
            subnet.space.claim_address(parse_ipv4(private_ip))
            primary = parse_ipv4(private_ip)
        else:
            (primary,) = subnet.space.allocate_addresses(1)
        self._seq += 1
        eni = _Eni(
            eni_id=eni_id,
            seq=self._seq,
            subnet=subnet,
            interface_type=interface_type,
            mac_address=mac_address or self._new_mac(),
            primary_ip=primary,
            security_group_ids=groups,
            tags=dict(tags),
        )
        self._issued.add(eni_id)
        self._enis[eni_id] = eni
        for pair in eni.tags.items():
            self._by_tag.setdefault(pair, set()).add(eni_id)
        if attach_to is not None:
            self._attach(eni, self._instance(attach_to[0]), attach_to[1])
        return self._eni_model(eni)

    def restore_addresses(
        self, eni_id: str, *, ips: Iterable[str] = (), prefixes: Iterable[str] = ()
    ) -> None:
        """Give a rebuilt ENI these secondary addresses and /28 prefixes (those it has already are kept)."""
        eni = self._eni(eni_id)
        space = eni.subnet.space
        for prefix in prefixes:
            start = parse_prefix(prefix)
            if start not in eni.prefixes:
                space.claim_prefix(start)
                eni.prefixes[start] = None
        for ip in ips:
            address = parse_ipv4(ip)
            if address not in eni.secondary_ips and not any(s <= address < s + 16 for s in eni.prefixes):
                space.claim_address(address)
                eni.secondary_ips[address] = None

    def restore_association(self, *, branch_eni_id: str, trunk_eni_id: str, vlan_id: int) -> TrunkAssociation:
        return self._associate(branch_eni_id, trunk_eni_id, vlan_id)

    def terminate_instance(self, instance_id: str) -> None:
        """Delete-on-termination ENIs (the primary) go away; every other ENI is detached and stays."""
        instance = self._instance(instance_id)
        for eni_id in list(instance.devices.values()):
            eni = self._enis[eni_id]
            delete = eni.delete_on_termination
            self._detach(eni)
            if delete:
                self._delete(eni)
        del self._instances[instance_id]

    # ==========================================================================================
    # Introspection (free)
    # ==========================================================================================

    def network_interface(self, eni_id: str) -> NetworkInterface | None:
        eni = self._enis.get(eni_id)
        return self._eni_model(eni) if eni is not None else None

    def network_interfaces(
        self,
        *,
        tags: Mapping[str, str] | None = None,
        instance_id: str | None = None,
        subnet_id: str | None = None,
        interface_type: InterfaceType | None = None,
    ) -> list[NetworkInterface]:
        """ENIs matching every given criterion, in creation order."""
        if instance_id is not None:
            instance = self._instances.get(instance_id)
            candidates = [self._enis[e] for e in instance.devices.values()] if instance else []
            candidates = [eni for eni in candidates if self._has_tags(eni, tags)]
        else:
            candidates = self._tagged(tags)
        return [
            self._eni_model(eni)
            for eni in sorted(candidates, key=lambda e: e.seq)
            if (subnet_id is None or eni.subnet.subnet_id == subnet_id)
            and (interface_type is None or eni.interface_type is interface_type)
        ]

    @property
    def eni_count(self) -> int:
        return len(self._enis)

    def instances(self) -> list[InstanceInfo]:
        return [self._instance_info(instance) for instance in self._instances.values()]

    def trunk_associations(self, trunk_eni_id: str | None = None) -> list[TrunkAssociation]:
        associations = self._associations.values()
        return sorted(
            (a for a in associations if trunk_eni_id is None or a.trunk_eni_id == trunk_eni_id),
            key=lambda a: (a.trunk_eni_id, a.vlan_id),
        )

    def permissions(self, eni_id: str) -> list[str]:
        """Account ids granted CreateNetworkInterfacePermission on the ENI."""
        eni = self._enis.get(eni_id)
        return list(eni.permissions.values()) if eni is not None else []

    def subnet_usage(self, subnet_id: str) -> SubnetUsage:
        subnet = self._subnet(subnet_id)
        space = subnet.space
        return SubnetUsage(
            subnet_id=subnet_id,
            cidr_block=space.cidr,
            usable_addresses=space.usable_addresses,
            free_addresses=space.free_addresses,
            free_aligned_prefixes=space.free_aligned_prefixes,
            occupied_by_others=len(space.occupied_by_others),
        )

    def free_addresses(self, subnet_id: str) -> int:
        return self._subnet(subnet_id).space.free_addresses

    def free_aligned_prefixes(self, subnet_id: str) -> int:
        return self._subnet(subnet_id).space.free_aligned_prefixes

    def create_subnet_cidr_reservation(self, subnet_id: str, cidr: str, reservation_type: str) -> None:
        """Reserve a range (set-up helper, as an operator would). Recorded and described; the address
        space does not change how it assigns (EC2 keeps a `prefix` range for prefixes only)."""
        subnet = self._subnet(subnet_id)
        network = ipaddress.IPv4Network(cidr, strict=True)
        if not network.subnet_of(ipaddress.IPv4Network(subnet.space.cidr)):
            raise ValueError(f"{cidr} is not inside {subnet.space.cidr}")
        if reservation_type not in ("prefix", "explicit"):
            raise ValueError("reservation_type is prefix or explicit")
        subnet.reservations.append(SubnetCidrReservation(cidr=cidr, reservation_type=reservation_type))

    def address_is_free(self, subnet_id: str, address: str) -> bool:
        space = self._subnet(subnet_id).space
        value = parse_ipv4(address)
        return space.contains(value) and space.is_free(value)

    def occupy(self, subnet_id: str, addresses: Iterable[str]) -> None:
        """Mark these free addresses of the subnet used by someone outside this model."""
        self._subnet(subnet_id).space.occupy(parse_ipv4(a) for a in addresses)

    def vacate(self, subnet_id: str, addresses: Iterable[str]) -> None:
        self._subnet(subnet_id).space.vacate(parse_ipv4(a) for a in addresses)

    def fragment(self, subnet_id: str, *, keep_free_per_block: int, seed: int | str = 0) -> list[str]:
        """Leave at most `keep_free_per_block` free addresses in every /28 block (others take the rest)."""
        taken = self._subnet(subnet_id).space.fragment(keep_free_per_block=keep_free_per_block, seed=seed)
        return [format_ipv4(a) for a in taken]

    def calls_by_action(self) -> dict[str, int]:
        """Every port call that reached the VPC, throttled and failed ones included."""
        return dict(self._gate.calls)

    def throttled_by_action(self) -> dict[str, int]:
        """Calls answered RequestLimitExceeded by the token buckets (injected faults not included)."""
        return dict(self._gate.throttled)

    def api_tokens(self, action: str, *, unfiltered: bool = False) -> float:
        return self._gate.tokens(action, self._clock.now(), unfiltered=unfiltered)

    # ==========================================================================================
    # Faults
    # ==========================================================================================

    @property
    def faults(self) -> FaultPlan:
        return self._faults

    def inject(
        self,
        action: str,
        code: str,
        message: str,
        *,
        times: int = 1,
        http_status: int | None = None,
        after_effect: bool = False,
    ) -> None:
        """The next `times` calls of `action` (e.g. "CreateNetworkInterface") fail with this error."""
        self._faults.inject(
            action, code, message, times=times, http_status=http_status, after_effect=after_effect
        )

    # ==========================================================================================
    # The port
    # ==========================================================================================

    async def describe_instance_types(self, instance_types: list[str]) -> list[InstanceTypeInfo]:
        if not instance_types:
            return []

        def body() -> list[InstanceTypeInfo]:
            missing = [t for t in instance_types if t not in self._instance_types]
            if missing:
                raise _error(
                    "InvalidInstanceType",
                    f"The following supplied instance types do not exist: [{', '.join(missing)}]",
                )
            return [self._instance_types[t] for t in dict.fromkeys(instance_types)]

        return await self._invoke("DescribeInstanceTypes", body)

    async def describe_instance(self, instance_id: str) -> InstanceInfo:
        return await self._invoke(
            "DescribeInstances", lambda: self._instance_info(self._instance(instance_id))
        )

    async def describe_subnet(self, subnet_id: str) -> SubnetInfo:
        return await self._invoke("DescribeSubnets", lambda: self._subnet_info(self._subnet(subnet_id)))

    async def create_network_interface(
        self,
        *,
        subnet_id: str,
        security_group_ids: list[str],
        interface_type: InterfaceType = InterfaceType.INTERFACE,
        tags: dict[str, str],
        client_token: str,
        secondary_ip_count: int = 0,
        prefix_count: int = 0,
    ) -> NetworkInterface:
        def body() -> NetworkInterface:
            fingerprint: tuple[object, ...] = (
                subnet_id,
                tuple(sorted(security_group_ids)),
                interface_type,
                tuple(sorted(tags.items())),
                secondary_ip_count,
                prefix_count,
            )
            if client_token:
                earlier = self._eni_tokens.get(client_token)
                if earlier is not None:
                    earlier_fingerprint, eni_id, created = earlier
                    if earlier_fingerprint != fingerprint:
                        raise _error("IdempotentParameterMismatch", IDEMPOTENCY_MISMATCH_MESSAGE)
                    existing = self._enis.get(eni_id)
                    return self._eni_model(existing) if existing is not None else created
            if secondary_ip_count < 0 or prefix_count < 0:
                raise _error("InvalidParameterValue", "Address and prefix counts must not be negative.")
            subnet = self._subnet(subnet_id)
            groups = self._known_groups(security_group_ids)
            if 1 + secondary_ip_count + prefix_count > self._max_ipv4_per_eni:
                raise _error("PrivateIpAddressLimitExceeded", PRIVATE_IP_LIMIT_MESSAGE)
            all_tags = {**tags, TAG_CLIENT_TOKEN: client_token} if client_token else dict(tags)
            eni = self._new_eni(
                subnet,
                interface_type,
                groups,
                all_tags,
                secondary_ip_count=secondary_ip_count,
                prefix_count=prefix_count,
            )
            created = self._eni_model(eni)
            if client_token:
                self._eni_tokens[client_token] = (fingerprint, eni.eni_id, created)
            return created

        return await self._invoke("CreateNetworkInterface", body)

    async def create_network_interface_permission(self, eni_id: str, *, aws_account_id: str) -> None:
        def body() -> None:
            eni = self._eni(eni_id)
            eni.permissions[self._new_id("eni-perm")] = aws_account_id

        await self._invoke("CreateNetworkInterfacePermission", body)

    async def attach_network_interface(self, eni_id: str, *, instance_id: str, device_index: int) -> str:
        def body() -> str:
            eni = self._eni(eni_id)
            instance = self._instance(instance_id)
            return self._attach(eni, instance, device_index)

        return await self._invoke("AttachNetworkInterface", body)

    async def detach_network_interface(self, attachment_id: str, *, force: bool = False) -> None:
        def body() -> None:
            eni_id = self._attachments.get(attachment_id)
            if eni_id is None:
                raise _error(
                    "InvalidAttachmentID.NotFound",
                    f"The network interface attachment ID '{attachment_id}' does not exist",
                )
            eni = self._enis[eni_id]
            if eni.attachment is not None and eni.attachment.device_index == 0:
                raise _error(
                    "OperationNotPermitted",
                    "The network interface at device index 0 and networkCard index 0 cannot be detached.",
                )
            self._detach(eni)

        await self._invoke("DetachNetworkInterface", body)

    async def delete_network_interface(self, eni_id: str) -> None:
        def body() -> None:
            eni = self._eni(eni_id)
            if eni.attachment is not None or eni.association_id is not None:
                raise _error(
                    "InvalidNetworkInterface.InUse", f"Network interface '{eni_id}' is currently in use."
                )
            self._delete(eni)

        await self._invoke("DeleteNetworkInterface", body)

    async def associate_trunk_interface(
        self, *, branch_eni_id: str, trunk_eni_id: str, vlan_id: int, client_token: str
    ) -> TrunkAssociation:
        def body() -> TrunkAssociation:
            fingerprint: tuple[object, ...] = (branch_eni_id, trunk_eni_id, vlan_id)
            if client_token:
                earlier = self._association_tokens.get(client_token)
                if earlier is not None:
                    if earlier[0] != fingerprint:
                        raise _error("IdempotentParameterMismatch", IDEMPOTENCY_MISMATCH_MESSAGE)
                    return earlier[1]
            association = self._associate(branch_eni_id, trunk_eni_id, vlan_id)
            if client_token:
                self._association_tokens[client_token] = (fingerprint, association)
            return association

        return await self._invoke("AssociateTrunkInterface", body)

    async def disassociate_trunk_interface(self, association_id: str) -> None:
        def body() -> None:
            if association_id not in self._associations:
                raise _error(
                    "InvalidAssociationID.NotFound", f"The association ID '{association_id}' does not exist"
                )
            self._disassociate(association_id)

        await self._invoke("DisassociateTrunkInterface", body)

    async def describe_trunk_associations(self, trunk_eni_id: str) -> list[TrunkAssociation]:
        def body() -> list[TrunkAssociation]:
            trunk = self._enis.get(trunk_eni_id)
            if trunk is None:
                return []
            return [self._associations[trunk.vlans[vlan]] for vlan in sorted(trunk.vlans)]

        return await self._invoke("DescribeTrunkInterfaceAssociations", body)

    async def assign_private_ips(self, eni_id: str, *, count: int) -> list[str]:
        if count <= 0:
            return []

        def body() -> list[str]:
            eni = self._eni(eni_id)
            self._check_slots(eni, count)
            try:
                addresses = eni.subnet.space.allocate_addresses(count)
            except NoFreeAddresses:
                raise _error("InsufficientFreeAddressesInSubnet", INSUFFICIENT_ADDRESSES_MESSAGE) from None
            for address in addresses:
                eni.secondary_ips[address] = None
            return [format_ipv4(a) for a in addresses]

        return await self._invoke("AssignPrivateIpAddresses", body)

    async def unassign_private_ips(self, eni_id: str, *, ips: list[str]) -> None:
        if not ips:
            return

        def body() -> None:
            eni = self._eni(eni_id)
            addresses = [_parse_or_none(parse_ipv4, ip) for ip in ips]
            if any(a is None or a not in eni.secondary_ips for a in addresses):
                raise _error(
                    "InvalidParameterValue",
                    f"Some of the specified addresses are not assigned to interface {eni_id}",
                )
            for address in dict.fromkeys(addresses):
                assert address is not None
                del eni.secondary_ips[address]
                eni.subnet.space.release_address(address)

        await self._invoke("UnassignPrivateIpAddresses", body)

    async def assign_prefixes(self, eni_id: str, *, count: int) -> list[str]:
        if count <= 0:
            return []

        def body() -> list[str]:
            eni = self._eni(eni_id)
            if eni.attachment is not None:
                instance = self._instances[eni.attachment.instance_id]
                if not instance.type_info.nitro:
                    raise _no_prefix_delegation(instance.type_info.instance_type)
            self._check_slots(eni, count)
            starts = self._allocate_prefixes(eni.subnet, count)
            for start in starts:
                eni.prefixes[start] = None
            return [format_prefix(s) for s in starts]

        return await self._invoke("AssignPrivateIpAddresses", body)

    async def unassign_prefixes(self, eni_id: str, *, prefixes: list[str]) -> None:
        if not prefixes:
            return

        def body() -> None:
            eni = self._eni(eni_id)
            starts = [_parse_or_none(parse_prefix, p) for p in prefixes]
            if any(s is None or s not in eni.prefixes for s in starts):
                raise _error(
                    "InvalidParameterValue",
                    f"Some of the specified prefixes are not assigned to interface {eni_id}",
                )
            for start in dict.fromkeys(starts):
                assert start is not None
                del eni.prefixes[start]
                eni.subnet.space.release_prefix(start)

        await self._invoke("UnassignPrivateIpAddresses", body)

    async def modify_security_groups(self, eni_id: str, *, security_group_ids: list[str]) -> None:
        def body() -> None:
            eni = self._eni(eni_id)
            if not security_group_ids:
                raise _error("InvalidParameterValue", "At least one security group must be specified.")
            eni.security_group_ids = self._known_groups(security_group_ids)

        await self._invoke("ModifyNetworkInterfaceAttribute", body)

    async def describe_network_interfaces(
        self,
        *,
        tags: dict[str, str] | None = None,
        eni_ids: list[str] | None = None,
        subnet_id: str | None = None,
    ) -> list[NetworkInterface]:
        """By ids (each must exist), tag values and/or subnet. With none, the whole VPC (the smaller
        "unfiltered" bucket); the port's callers never do that, but the annotation baseline may.

        By subnet, addresses taken by `occupy`/`fragment` (others in the subnet, outside this model)
        come back as one ENI of another requester, `eni-others-<subnet>`, as real EC2 lists every
        tenant's ENIs: so an address count from this answer matches the subnet's."""
        if eni_ids is not None and not eni_ids:
            return []

        def body() -> list[NetworkInterface]:
            if eni_ids is not None:
                candidates = [self._eni(eni_id) for eni_id in dict.fromkeys(eni_ids)]
                candidates = [eni for eni in candidates if self._has_tags(eni, tags)]
            else:
                candidates = self._tagged(tags)
            if subnet_id is not None:
                candidates = [eni for eni in candidates if eni.subnet.subnet_id == subnet_id]
            found = [self._eni_model(eni) for eni in sorted(candidates, key=lambda e: e.seq)]
            if subnet_id is not None and not tags and eni_ids is None:
                others = sorted(self._subnet(subnet_id).space.occupied_by_others)
                if others:
                    found.append(
                        NetworkInterface(
                            eni_id=f"eni-others-{subnet_id.removeprefix('subnet-')}",
                            subnet_id=subnet_id,
                            interface_type=InterfaceType.INTERFACE,
                            status="in-use",
                            private_ip=format_ipv4(others[0]),
                            secondary_ips=tuple(format_ipv4(a) for a in others[1:]),
                        )
                    )
            return found

        unfiltered = not tags and not eni_ids and subnet_id is None
        return await self._invoke("DescribeNetworkInterfaces", body, unfiltered=unfiltered)

    async def describe_subnet_cidr_reservations(self, subnet_id: str) -> list[SubnetCidrReservation]:
        return await self._invoke(
            "GetSubnetCidrReservations", lambda: list(self._subnet(subnet_id).reservations)
        )

    async def create_tags(self, resource_id: str, *, tags: dict[str, str]) -> None:
        if not tags:
            return

        def body() -> None:
            eni = self._enis.get(resource_id)
            if eni is None:
                if resource_id.startswith("eni-"):
                    raise _eni_not_found(resource_id)
                raise _error("InvalidID", f"The ID '{resource_id}' is not valid")
            for key, value in tags.items():
                old = eni.tags.get(key)
                if old is not None:
                    self._by_tag[(key, old)].discard(eni.eni_id)
                eni.tags[key] = value
                self._by_tag.setdefault((key, value), set()).add(eni.eni_id)

        await self._invoke("CreateTags", body)

    # ==========================================================================================
    # The call path
    # ==========================================================================================

    async def _invoke(self, action: str, body: Callable[[], _T], *, unfiltered: bool = False) -> _T:
        gate = self._gate
        admitted = gate.admit(action, self._clock.now(), unfiltered=unfiltered)
        delay = gate.draw_latency(action)
        if delay > 0.0:
            await self._clock.sleep(delay)
        if not admitted:
            code, message, status = REQUEST_LIMIT_EXCEEDED
            self._report(action, "throttled")
            raise Ec2Error(code, message, action=action, http_status=status)
        fault = self._faults.take(action)
        if fault is not None and not fault.after_effect:
            error = fault.error(action)
            self._report(action, _outcome(error))
            raise error
        try:
            result = body()
        except Ec2Error as exc:
            error = type(exc)(exc.code, exc.message, action=action, http_status=exc.http_status)
            self._report(action, _outcome(error))
            raise error from None
        if fault is not None:
            error = fault.error(action)
            self._report(action, _outcome(error))
            raise error
        self._report(action, "ok")
        return result

    def _report(self, action: str, outcome: CallOutcome) -> None:
        if self._observer is not None:
            self._observer(action, outcome)

    # ==========================================================================================
    # The model
    # ==========================================================================================

    def _new_id(self, prefix: str) -> str:
        while True:
            candidate = f"{prefix}-{self._ids.getrandbits(68):017x}"
            if candidate not in self._issued:
                self._issued.add(candidate)
                return candidate

    def _new_mac(self) -> str:
        return "02:" + ":".join(f"{b:02x}" for b in self._macs.randbytes(5))

    def _subnet(self, subnet_id: str) -> _Subnet:
        subnet = self._subnets.get(subnet_id)
        if subnet is None:
            raise _error("InvalidSubnetID.NotFound", f"The subnet ID '{subnet_id}' does not exist")
        return subnet

    def _instance(self, instance_id: str) -> _Instance:
        instance = self._instances.get(instance_id)
        if instance is None:
            raise _error("InvalidInstanceID.NotFound", f"The instance ID '{instance_id}' does not exist")
        return instance

    def _eni(self, eni_id: str) -> _Eni:
        eni = self._enis.get(eni_id)
        if eni is None:
            raise _eni_not_found(eni_id)
        return eni

    def _known_groups(self, group_ids: Iterable[str]) -> tuple[str, ...]:
        groups = tuple(dict.fromkeys(group_ids))
        for group_id in groups:
            if group_id not in self._security_groups and self.adopt_unknown_security_groups:
                self._security_groups[group_id] = group_id  # a real cluster's ids, in --ec2 sim mode
            if group_id not in self._security_groups:
                raise _error(
                    "InvalidSecurityGroupID.NotFound", f"The security group '{group_id}' does not exist"
                )
        return groups or (self.default_security_group_id,)

    def _allocate_prefixes(self, subnet: _Subnet, count: int) -> list[int]:
        try:
            return subnet.space.allocate_prefixes(count)
        except NoFreePrefixes:
            if subnet.prefix_exhaustion is PrefixExhaustionStyle.INVALID_PARAMETER_VALUE:
                raise _error("InvalidParameterValue", NO_FREE_ADDRESSES_OR_PREFIXES_MESSAGE) from None
            raise _error("InsufficientCidrBlocks", INSUFFICIENT_CIDR_BLOCKS_MESSAGE) from None

    def _new_eni(
        self,
        subnet: _Subnet,
        interface_type: InterfaceType,
        groups: tuple[str, ...],
        tags: dict[str, str],
        *,
        secondary_ip_count: int,
        prefix_count: int,
    ) -> _Eni:
        space = subnet.space
        # Prefixes first: single addresses drawn first could break the last free aligned blocks.
        starts = self._allocate_prefixes(subnet, prefix_count) if prefix_count else []
        try:
            addresses = space.allocate_addresses(1 + secondary_ip_count)
        except NoFreeAddresses:
            for start in starts:
                space.release_prefix(start)
            raise _error("InsufficientFreeAddressesInSubnet", INSUFFICIENT_ADDRESSES_MESSAGE) from None
        self._seq += 1
        eni = _Eni(
            eni_id=self._new_id("eni"),
            seq=self._seq,
            subnet=subnet,
            interface_type=interface_type,
            mac_address=self._new_mac(),
            primary_ip=addresses[0],
            security_group_ids=groups,
            tags=tags,
            secondary_ips=dict.fromkeys(addresses[1:]),
            prefixes=dict.fromkeys(starts),
        )
        self._enis[eni.eni_id] = eni
        for pair in tags.items():
            self._by_tag.setdefault(pair, set()).add(eni.eni_id)
        return eni

    def _delete(self, eni: _Eni) -> None:
        # A deleted trunk takes its associations with it: its branches become available (which is
        # how AWS's controller finds a terminated node's branches: its sweep deletes available ENIs).
        for association_id in list(eni.vlans.values()):
            self._disassociate(association_id)
        space = eni.subnet.space
        space.release_address(eni.primary_ip)
        for address in eni.secondary_ips:
            space.release_address(address)
        for start in eni.prefixes:
            space.release_prefix(start)
        for pair in eni.tags.items():
            holders = self._by_tag.get(pair)
            if holders is not None:
                holders.discard(eni.eni_id)
                if not holders:
                    del self._by_tag[pair]
        del self._enis[eni.eni_id]

    def _ipv4_limit(self, eni: _Eni) -> int:
        if eni.attachment is None:
            return self._max_ipv4_per_eni
        return self._instances[eni.attachment.instance_id].type_info.ipv4_per_eni

    def _check_slots(self, eni: _Eni, more: int) -> None:
        if eni.ipv4_slots + more > self._ipv4_limit(eni):
            raise _error("PrivateIpAddressLimitExceeded", PRIVATE_IP_LIMIT_MESSAGE)

    def _attach(self, eni: _Eni, instance: _Instance, device_index: int) -> str:
        instance_id = instance.instance_id
        type_name = instance.type_info.instance_type
        if eni.interface_type is InterfaceType.BRANCH:
            raise _error(
                "InvalidParameterValue",
                f"Branch network interface {eni.eni_id} cannot be attached to an instance;"
                " associate it with a trunk interface.",
            )
        if eni.attachment is not None:
            raise _error("InvalidNetworkInterface.InUse", f"Interface: [{eni.eni_id}] in use.")
        if eni.subnet.availability_zone != instance.availability_zone:
            raise _error(
                "InvalidParameterCombination",
                "You may not attach a network interface to an instance if they are not in the same"
                " availability zone",
            )
        if device_index < 0:
            raise _error("InvalidParameterValue", f"Invalid value '{device_index}' for deviceIndex.")
        if device_index in instance.devices:
            raise _error(
                "InvalidParameterValue",
                f"Instance '{instance_id}' already has an interface attached at device index"
                f" '{device_index}'.",
            )
        if len(instance.devices) >= instance.type_info.max_enis:
            raise _error(
                "AttachmentLimitExceeded",
                f"Interface count {len(instance.devices) + 1} exceeds the limit for {type_name}",
            )
        if eni.ipv4_slots > instance.type_info.ipv4_per_eni:
            raise _error("PrivateIpAddressLimitExceeded", PRIVATE_IP_LIMIT_MESSAGE)
        if eni.prefixes and not instance.type_info.nitro:
            raise _error(
                "InvalidParameterValue", f"Prefix delegation is not supported for instance type {type_name}."
            )
        if eni.interface_type is InterfaceType.TRUNK and not instance.can_trunk:
            raise _error(
                "UnsupportedOperation",
                f"The instance type {type_name} does not support trunk network interfaces.",
            )
        attachment_id = self._new_id("eni-attach")
        eni.attachment = Attachment(
            attachment_id=attachment_id, instance_id=instance_id, device_index=device_index
        )
        instance.devices[device_index] = eni.eni_id
        self._attachments[attachment_id] = eni.eni_id
        return attachment_id

    def _detach(self, eni: _Eni) -> None:
        attachment = eni.attachment
        if attachment is None:
            return
        instance = self._instances.get(attachment.instance_id)
        if instance is not None:
            instance.devices.pop(attachment.device_index, None)
        self._attachments.pop(attachment.attachment_id, None)
        eni.attachment = None
        eni.delete_on_termination = False

    def _associate(self, branch_eni_id: str, trunk_eni_id: str, vlan_id: int) -> TrunkAssociation:
        branch = self._eni(branch_eni_id)
        trunk = self._eni(trunk_eni_id)
        if trunk.interface_type is not InterfaceType.TRUNK:
            raise _error("InvalidParameterValue", f"Interface {trunk_eni_id} is not a trunk interface.")
        if branch.interface_type is not InterfaceType.BRANCH:
            raise _error("InvalidParameterValue", f"Interface {branch_eni_id} is not a branch interface.")
        if trunk.attachment is None:
            raise _error("IncorrectState", f"Trunk interface {trunk_eni_id} is not attached to an instance.")
        if branch.association_id is not None:
            raise _error(
                "InvalidParameterValue",
                f"Branch interface {branch_eni_id} is already associated with a trunk.",
            )
        if not 1 <= vlan_id <= MAX_VLAN_ID:
            raise _error("InvalidParameterValue", f"Invalid value '{vlan_id}' for VlanId.")
        if vlan_id in trunk.vlans:
            raise _error(
                "InvalidParameterValue",
                f"VLAN ID {vlan_id} is already in use on trunk interface {trunk_eni_id}.",
            )
        instance = self._instances[trunk.attachment.instance_id]
        if len(trunk.vlans) >= instance.branch_limit:
            raise _error(
                BRANCH_LIMIT_EXCEEDED_CODE,
                f"Trunk interface {trunk_eni_id} already has the maximum of {instance.branch_limit} branch"
                f" interfaces for instance type {instance.type_info.instance_type}.",
            )
        association = TrunkAssociation(
            association_id=self._new_id("trunk-assoc"),
            branch_eni_id=branch_eni_id,
            trunk_eni_id=trunk_eni_id,
            vlan_id=vlan_id,
        )
        self._associations[association.association_id] = association
        branch.association_id = association.association_id
        trunk.vlans[vlan_id] = association.association_id
        return association

    def _disassociate(self, association_id: str) -> None:
        association = self._associations.pop(association_id)
        branch = self._enis.get(association.branch_eni_id)
        if branch is not None:
            branch.association_id = None
        trunk = self._enis.get(association.trunk_eni_id)
        if trunk is not None:
            trunk.vlans.pop(association.vlan_id, None)

    def _tagged(self, tags: Mapping[str, str] | None) -> list[_Eni]:
        """ENIs carrying every given tag value, found through the (key, value) index."""
        if not tags:
            return list(self._enis.values())
        holder_sets = [self._by_tag.get(pair) for pair in tags.items()]
        if any(not holders for holders in holder_sets):
            return []
        smallest = min((h for h in holder_sets if h), key=len)
        return [self._enis[eni_id] for eni_id in smallest if self._has_tags(self._enis[eni_id], tags)]

    @staticmethod
    def _has_tags(eni: _Eni, tags: Mapping[str, str] | None) -> bool:
        return not tags or all(eni.tags.get(key) == value for key, value in tags.items())

    # -- models --------------------------------------------------------------------------------

    def _eni_model(self, eni: _Eni) -> NetworkInterface:
        # Trusted internal data: model_construct skips validation, which matters at 30,000 pods.
        return NetworkInterface.model_construct(
            eni_id=eni.eni_id,
            subnet_id=eni.subnet.subnet_id,
            interface_type=eni.interface_type,
            status=eni.status,
            mac_address=eni.mac_address,
            private_ip=format_ipv4(eni.primary_ip),
            secondary_ips=tuple(format_ipv4(a) for a in eni.secondary_ips),
            prefixes=tuple(format_prefix(s) for s in eni.prefixes),
            security_group_ids=eni.security_group_ids,
            tags=dict(eni.tags),
            attachment=eni.attachment,
        )

    def _instance_info(self, instance: _Instance) -> InstanceInfo:
        return InstanceInfo(
            instance_id=instance.instance_id,
            instance_type=instance.type_info.instance_type,
            subnet_id=instance.subnet_id,
            availability_zone=instance.availability_zone,
            primary_eni_id=instance.primary_eni_id,
            security_group_ids=instance.security_group_ids,
        )

    @staticmethod
    def _subnet_info(subnet: _Subnet) -> SubnetInfo:
        return SubnetInfo(
            subnet_id=subnet.subnet_id,
            cidr_block=subnet.space.cidr,
            availability_zone=subnet.availability_zone,
            available_ip_count=subnet.space.free_addresses,
        )


def _parse_or_none(parse: Callable[[str], int], text: str) -> int | None:
    try:
        return parse(text)
    except ValueError:
        return None
