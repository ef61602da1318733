"""Per-instance-type limits and the EKS max-pods formula (field notes, section 3)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

from controller.ports.ec2 import InstanceTypeInfo

IPS_PER_PREFIX = 16
MAX_VLAN_ID = 120  # branch ENIs per trunk never exceed this (m5.metal's 120 is the most)

# Branch-ENI limits are not in DescribeInstanceTypes. These are the published figures for common
# types (AWS VPC resource controller's generated table); configuration extends or overrides them.
BUILTIN_BRANCH_LIMITS: Mapping[str, int] = {
    "a1.medium": 10,
    "a1.large": 9,
    "a1.xlarge": 18,
    "a1.2xlarge": 38,
    "a1.4xlarge": 54,
    "a1.metal": 54,
    "c5.large": 9,
    "c5.xlarge": 18,
    "c5.2xlarge": 38,
    "c5.4xlarge": 54,
    "c5.9xlarge": 54,
    "c5.12xlarge": 54,
    "c5.18xlarge": 107,
    "c5.24xlarge": 107,
    "c5.metal": 107,
    "c5a.large": 9,
    "c5a.xlarge": 18,
    "c5a.2xlarge": 38,
    "c5a.4xlarge": 54,
    "c5a.8xlarge": 54,
    "c5a.12xlarge": 54,
    "c5a.16xlarge": 107,
    "c5a.24xlarge": 107,
    "m5.large": 9,
    "m5.xlarge": 18,
    "m5.2xlarge": 38,
    "m5.metal": 120,
}


class UnknownInstanceTypeError(LookupError):
    """The instance type is in neither the shipped dataset nor EC2's answer."""

    def __init__(self, instance_type: str) -> None:
        super().__init__(
            f"unknown instance type {instance_type!r}: it is not in the instance-type dataset; "
            "check the spelling (e.g. m5.large) or use --ec2 aws to ask EC2"
        )
        self.instance_type = instance_type


class InstanceLimits(BaseModel):
    """Everything the planner needs to know about an instance type."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance_type: str
    max_enis: int = Field(ge=1)
    ipv4_per_eni: int = Field(ge=1)
    vcpus: int = Field(ge=1)
    nitro: bool
    branch_enis: int = Field(ge=0, le=MAX_VLAN_ID, description="0: cannot trunk, or limit unknown")

    @property
    def trunking(self) -> bool:
        return self.nitro and self.branch_enis > 0

    @property
    def slots_per_eni(self) -> int:
        """Secondary IPv4 slots on one ENI (the primary address is the ENI's own)."""
        return self.ipv4_per_eni - 1

    def max_pods(self, *, prefix_delegation: bool, custom_networking: bool = False) -> int:
        """The EKS max-pods calculator. Branch-ENI pods do not count against it."""
        enis = self.max_enis - 1 if custom_networking else self.max_enis
        if prefix_delegation:
            raw = enis * (self.slots_per_eni * IPS_PER_PREFIX) + 2
            return min(raw, 110 if self.vcpus <= 30 else 250)
        return enis * self.slots_per_eni + 2


def limits_for(info: InstanceTypeInfo, branch_limits: Mapping[str, int]) -> InstanceLimits:
    branch = branch_limits.get(info.instance_type, 0) if info.nitro else 0
    return InstanceLimits(
        instance_type=info.instance_type,
        max_enis=info.max_enis,
        ipv4_per_eni=info.ipv4_per_eni,
        vcpus=info.vcpus,
        nitro=info.nitro,
        branch_enis=min(branch, MAX_VLAN_ID),
    )


class InstanceCatalog:
    """Instance-type limits by name: described types plus the branch table."""

    def __init__(
        self, described: Mapping[str, InstanceTypeInfo], branch_limits: Mapping[str, int] | None = None
    ) -> None:
        self._described = dict(described)
        self._branch_limits = {**BUILTIN_BRANCH_LIMITS, **(branch_limits or {})}
        self._cache: dict[str, InstanceLimits] = {}

    def __contains__(self, instance_type: object) -> bool:
        return instance_type in self._described

    @property
    def described(self) -> Mapping[str, InstanceTypeInfo]:
        return self._described

    @property
    def branch_limits(self) -> Mapping[str, int]:
        return self._branch_limits

    def get(self, instance_type: str) -> InstanceLimits:
        cached = self._cache.get(instance_type)
        if cached is not None:
            return cached
        info = self._described.get(instance_type)
        if info is None:
            raise UnknownInstanceTypeError(instance_type)
        limits = self._cache[instance_type] = limits_for(info, self._branch_limits)
        return limits

    def add(self, info: InstanceTypeInfo) -> None:
        self._described[info.instance_type] = info
        self._cache.pop(info.instance_type, None)


def parse_branch_limits(text: str) -> dict[str, int]:
    """Parse `m6i.large=9,m6i.xlarge=18` (the BRANCH_ENI_LIMITS setting)."""
    limits: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit():
            raise ValueError(
                f"BRANCH_ENI_LIMITS entry {item!r} is not TYPE=COUNT; write e.g. 'm6i.large=9,m6i.xlarge=18'"
            )
        count = int(value)
        if not 0 <= count <= MAX_VLAN_ID:
            raise ValueError(f"BRANCH_ENI_LIMITS entry {item!r}: count must be 0..{MAX_VLAN_ID}")
        limits[name.strip()] = count
    return limits
