"""The simulated VPC: an in-memory EC2 with the semantics moto lacks (see `vpc.SimulatedVpc`)."""

from controller.adapters.sim_vpc.address_space import (
    AddressPlacement,
    AddressSpaceExhausted,
    NoFreeAddresses,
    NoFreePrefixes,
    SubnetAddressSpace,
)
from controller.adapters.sim_vpc.api_limits import (
    DEFAULT_ACTION_BUCKETS,
    ApiLimitsConfig,
    LatencyConfig,
    LatencyRange,
)
from controller.adapters.sim_vpc.faults import FaultPlan, ScriptedFault
from controller.adapters.sim_vpc.vpc import (
    BRANCH_LIMIT_EXCEEDED_CODE,
    PrefixExhaustionStyle,
    SimulatedVpc,
    SubnetUsage,
)

__all__ = [
    "BRANCH_LIMIT_EXCEEDED_CODE",
    "DEFAULT_ACTION_BUCKETS",
    "AddressPlacement",
    "AddressSpaceExhausted",
    "ApiLimitsConfig",
    "FaultPlan",
    "LatencyConfig",
    "LatencyRange",
    "NoFreeAddresses",
    "NoFreePrefixes",
    "PrefixExhaustionStyle",
    "ScriptedFault",
    "SimulatedVpc",
    "SubnetAddressSpace",
    "SubnetUsage",
]
