"""The tags netalloc puts on every ENI it creates; recovery and leak clean-up find ENIs by them."""

from __future__ import annotations

TAG_PREFIX = "netalloc.dev/"
TAG_CLUSTER = TAG_PREFIX + "cluster"
TAG_INSTANCE = TAG_PREFIX + "instance"
TAG_OWNER = TAG_PREFIX + "owner"  # the node (pool) that owns the ENI
TAG_ALLOCATION = TAG_PREFIX + "allocation"  # "pool" for warm capacity, else namespace/name of the PNA
TAG_ROLE = TAG_PREFIX + "role"  # trunk | branch | pod-ips | shared-pod-ips
ROLE_SHARED = "shared-pod-ips"  # a shared ENI (SharedENI): recovery adopts it with the groups EC2 gives
# The UID of the cluster's kube-system namespace: two clusters given the same name still differ here,
# and the leak sweep deletes only ENIs carrying this cluster's id.
TAG_CLUSTER_ID = TAG_PREFIX + "cluster-id"

POOL_ALLOCATION = "pool"


def eni_tags(
    *,
    cluster: str,
    instance_id: str,
    owner: str,
    role: str,
    allocation: str = POOL_ALLOCATION,
    cluster_id: str = "",
) -> dict[str, str]:
    tags = {
        TAG_CLUSTER: cluster,
        TAG_INSTANCE: instance_id,
        TAG_OWNER: owner,
        TAG_ROLE: role,
        TAG_ALLOCATION: allocation,
    }
    if cluster_id:
        tags[TAG_CLUSTER_ID] = cluster_id
    return tags


TAG_CLIENT_TOKEN = TAG_PREFIX + "client-token"  # lets a retried create find what an earlier attempt made
