"""EC2's API rate limits: one token bucket per action, per account and region (field notes §4).

One table for both sides: the simulated VPC throttles with it, and netalloc's pacer
(`controller.engine.ec2_pacing`) keeps each action under it, so a burst of one action never spends
another's budget and never earns a RequestLimitExceeded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from controller.core.token_bucket import BucketSpec

UNFILTERED_SUFFIX: Final = ":unfiltered"
NON_MUTATING_PREFIXES: Final = ("Describe", "Get", "List", "Search")


def _spec(capacity: float, refill_per_s: float) -> BucketSpec:
    return BucketSpec(capacity=capacity, refill_per_s=refill_per_s)


# Field notes, section 4. Each action has its own bucket (EC2 evaluates every API individually).
DEFAULT_ACTION_BUCKETS: Final[Mapping[str, BucketSpec]] = {
    "CreateNetworkInterface": _spec(100, 5),
    "DeleteNetworkInterface": _spec(100, 5),
    "AssignPrivateIpAddresses": _spec(100, 5),
    "UnassignPrivateIpAddresses": _spec(100, 5),
    "ModifyNetworkInterfaceAttribute": _spec(100, 5),
    "CreateTags": _spec(100, 10),
    "AttachNetworkInterface": _spec(50, 5),
    "AssociateTrunkInterface": _spec(50, 5),
    "DisassociateTrunkInterface": _spec(50, 5),
    "CreateNetworkInterfacePermission": _spec(50, 5),
    "DescribeNetworkInterfaces": _spec(100, 20),
    "DescribeNetworkInterfaces" + UNFILTERED_SUFFIX: _spec(50, 10),
}
DEFAULT_MUTATING: Final = _spec(50, 5)
DEFAULT_NON_MUTATING: Final = _spec(100, 20)
DEFAULT_UNFILTERED: Final = _spec(50, 10)


def is_mutating(action: str) -> bool:
    return not action.startswith(NON_MUTATING_PREFIXES)


def default_spec_for(bucket_key: str, table: Mapping[str, BucketSpec] = DEFAULT_ACTION_BUCKETS) -> BucketSpec:
    """The bucket of an action (or `Action:unfiltered`): its own, else its category's default."""
    spec = table.get(bucket_key)
    if spec is not None:
        return spec
    if bucket_key.endswith(UNFILTERED_SUFFIX):
        return DEFAULT_UNFILTERED
    return DEFAULT_MUTATING if is_mutating(bucket_key) else DEFAULT_NON_MUTATING
