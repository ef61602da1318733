"""Holdings within live allocations: what a registered pool holds for a pod that no longer needs it goes back.

A pool holding can outlive its PNA when a DELETED event was missed, a finalizer was removed by hand,
or a PNA was made by hand for a pod that does not exist. A holding stays while its PNA exists, or
while its pod (same UID) still runs, since a PNA deleted under a running pod is recreated with the same
address. Anything else is released, after a GET confirms there is no such PNA: a stale cache must never
take a running pod's address.
"""

from __future__ import annotations

from controller.engine.node_network import NodeNetwork
from controller.k8s.objects import split_allocation_key
from controller.k8s.reconcilers.context import Context
from controller.k8s.resources import POD_NETWORK_ALLOCATION


def holding_is_live(ctx: Context, key: str) -> bool:
    """Is there, in the cache, a PNA or a running pod this holding belongs to?"""
    parts = split_allocation_key(key)
    if parts is None:
        return False
    namespace, pod_name, pod_uid = parts
    pna = ctx.state.pnas.get((namespace, pod_name))
    if pna is not None and pna.spec.pod_uid == pod_uid:
        return True
    pod = ctx.state.pods.get((namespace, pod_name))
    return pod is not None and pod.uid == pod_uid and not pod.terminal


async def collect_orphan_holdings(ctx: Context, network: NodeNetwork) -> list[str]:
    """Release the holdings no live allocation backs; returns their keys."""
    released: list[str] = []
    for key in sorted(network.held_keys()):
        if holding_is_live(ctx, key):
            continue
        parts = split_allocation_key(key)
        if parts is not None:
            namespace, pod_name, pod_uid = parts
            body = await ctx.kube.get(POD_NETWORK_ALLOCATION, pod_name, namespace)
            if body is not None:
                pna = ctx.state.pnas.parse(body)
                ctx.state.pnas.upsert(pna)
                if pna.spec.pod_uid == pod_uid:
                    continue  # the cache was behind; the PNA's own reconciler handles it
        await network.release(key)
        released.append(key)
    return released
