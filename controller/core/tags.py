"""The tags netalloc puts on every ENI it creates; recovery and leak clean-up find ENIs by them."""

from __future__ import annotations

TAG_PREFIX = "netalloc.dev/"
TAG_CLUSTER = TAG_PREFIX + "cluster"
TAG_INSTANCE = TAG_PREFIX + "instance"
TAG_OWNER = TAG_PREFIX + "owner"  # the node (pool) that owns the ENI
TAG_ALLOCATION = TAG_PREFIX + "allocation"  # "pool" for warm capacity, else namespace/name of the PNA
TAG_ROLE = TAG_PREFIX + "role"  # trunk | branch | pod-ips

POOL_ALLOCATION = "pool"


def eni_tags(
    *, cluster: str, instance_id: str, owner: str, role: str, allocation: str = POOL_ALLOCATION
) -> dict[str, str]:
    return {
        TAG_CLUSTER: cluster,
        TAG_INSTANCE: instance_id,
        TAG_OWNER: owner,
        TAG_ROLE: role,
        TAG_ALLOCATION: allocation,
    }


TAG_CLIENT_TOKEN = TAG_PREFIX + "client-token"  # lets a retried create find what an earlier attempt made
