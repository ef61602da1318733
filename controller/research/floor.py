"""The physical floor the EC2 buckets allow (field notes §7), computed, not hard-coded.

With one new branch ENI per pod, the k-th branch needs the k-th token of every per-branch action (and
the trunks made in the same window spend tokens of the actions they share). An action's bucket of
capacity C and refill r hands out its n-th token no earlier than (n − C) / r s after the window starts
(buckets full at the start). So branch k is ready no earlier than

    F(k) = max over actions a of (n_a(k) − C_a) / r_a,   n_a(k) = k·[a per branch] + T·[a per trunk]

With 50 trunks and EC2's buckets (§4) that is k / 5 s on RC's path (create + permission + associate)
and (k − 50) / 5 s on netalloc's (create + associate): §7's figures. A pod created at offset t_k
(creation order = branch order) cannot be ready before max(0, F(k) − t_k) after its creation; the floor
p99 is the nearest-rank 99th percentile of those per-pod floors. It ignores API latency, scheduling and
any node start-up, so every real approach is above it; an approach that does not make one ENI per pod
(reuse, sharing) may go below it, and that is then what the ratio says.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from controller.core.token_bucket import BucketSpec


class EniPath(BaseModel):
    """Which EC2 actions a new pod's branch ENI and a new node's trunk ENI spend."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    per_branch: tuple[str, ...]
    per_trunk: tuple[str, ...]


# field notes §2 / §7: RC's per-pod path and its trunk sequence's mutating calls.
RC_PATH = EniPath(
    name="RC: create + permission + associate",
    per_branch=("CreateNetworkInterface", "CreateNetworkInterfacePermission", "AssociateTrunkInterface"),
    per_trunk=(
        "CreateNetworkInterface",
        "CreateNetworkInterfacePermission",
        "AttachNetworkInterface",
        "ModifyNetworkInterfaceAttribute",
    ),
)
# field notes §7: netalloc's path, create + associate (its trunk: create + attach).
NETALLOC_PATH = EniPath(
    name="netalloc: create + associate",
    per_branch=("CreateNetworkInterface", "AssociateTrunkInterface"),
    per_trunk=("CreateNetworkInterface", "AttachNetworkInterface"),
)


def branch_floor_s(k: int, trunks: int, path: EniPath, buckets: Mapping[str, BucketSpec]) -> float:
    """Earliest time (s from the window start) the k-th (1-based) new branch can be associated."""
    floor = 0.0
    for action in sorted(set(path.per_branch) | set(path.per_trunk)):
        needed = k * path.per_branch.count(action) + trunks * path.per_trunk.count(action)
        if needed == 0:
            continue
        spec = buckets[action]
        floor = max(floor, (needed - spec.capacity) / spec.refill_per_s)
    return floor


def per_pod_floors(
    created_offsets_s: Sequence[float], trunks: int, path: EniPath, buckets: Mapping[str, BucketSpec]
) -> list[float]:
    """Each pod's floor on time-to-ready, pods taken in creation order (offsets from the window start)."""
    ordered = sorted(created_offsets_s)
    return [
        max(0.0, branch_floor_s(rank, trunks, path, buckets) - offset)
        for rank, offset in enumerate(ordered, start=1)
    ]


def floor_percentile(floors: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile, as the metrics use."""
    if not floors:
        return None
    values = sorted(floors)
    rank = max(1, math.ceil(q / 100.0 * len(values)))
    return values[min(rank, len(values)) - 1]
