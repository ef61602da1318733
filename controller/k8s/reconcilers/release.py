"""A PNA being deleted: give back what its pod held, then let the PNA go (netalloc's finalizer).

The address belongs to the pod, the PNA is its record. So a PNA deleted while its pod still runs and
still needs it is let go without releasing anything: the pool keeps the pod's address under the pod's
key, and the binding reconciler creates a new PNA that gets the same address back. Releasing it would
hand a running pod's address to another pod once the cool-down is over.

A release needs the node's pool: if the pool is not loaded yet (a restart, EC2 errors) the PNA waits,
so nothing is "released" against an empty pool. Only a pool that is gone (the node was drained) has
nothing left to give back.
"""

from __future__ import annotations

from controller.core.allocation_state import AllocationState, AllocationStatus
from controller.engine.allocation_driver import release_step
from controller.k8s.objects import PnaView, PodView
from controller.k8s.pna_mapping import RELEASE_FINALIZER, read_status, same_status, status_to_k8s
from controller.k8s.reconcilers.context import Context, Result, logger
from controller.k8s.reconcilers.pod_binding import PodBinding, involved
from controller.k8s.reconcilers.status_writer import set_pna_finalizers, write_pna_status

WAIT_FOR_POOL_S = 5.0


class Release:
    def __init__(self, ctx: Context, binding: PodBinding) -> None:
        self.ctx = ctx
        self.binding = binding

    async def reconcile(self, pna: PnaView, pod: PodView | None) -> Result:
        ctx = self.ctx
        if RELEASE_FINALIZER not in pna.finalizers:
            return Result()  # not held back by us: it goes by itself
        remaining = [f for f in pna.finalizers if f != RELEASE_FINALIZER]
        if pod is not None and pod.uid == pna.spec.pod_uid:
            # The pod and its PNA come on separate watches: the PNA's deletion (by the garbage collector,
            # once the pod is gone) can arrive before the pod's. Ask the API server before keeping an
            # address for a pod that may have gone: the cache's word would strand it until a node pass.
            pod = await self.binding.confirm_pod((pna.namespace, pna.name), pod)
        if pod is not None and pod.uid == pna.spec.pod_uid and self.binding.desired(pod, pna) is not None:
            ctx.events.post(
                involved(pna),
                warning=True,
                reason="RecordDeleted",
                message="PodNetworkAllocation deleted while its pod runs: the pod keeps its address, "
                "and a new PodNetworkAllocation records it",
            )
            await set_pna_finalizers(ctx, pna, remaining)
            return Result.after(0)  # at once: the binding makes the pod's new PNA
        node = pna.spec.node_name
        network = ctx.pools.network(node)
        if network is None and not ctx.pool_is_gone(node):
            logger.info("%s/%s waits for node %s's pool before releasing", pna.namespace, pna.name, node)
            return Result.after(WAIT_FOR_POOL_S)
        read = read_status(pna)
        status = read.status or AllocationStatus.new(ctx.clock.now(), generation=pna.generation)
        before = status.state
        if before is not AllocationState.RELEASING:
            ctx.events.post(
                involved(pna), warning=False, reason="Releasing", message=f"releasing (from {before})"
            )
        result = await release_step(
            status,
            pna.allocation_key,
            network,
            policy=ctx.config.policy,
            rng=ctx.rng,
            now=ctx.clock.now(),
        )
        if result.status.state is not AllocationState.RELEASED:
            body = status_to_k8s(result.status)
            if not same_status(body, pna.status):
                await write_pna_status(ctx, pna, body)
            return Result.after(result.retry_in or WAIT_FOR_POOL_S)
        ctx.metrics.transitions.labels(from_state=before.value, to_state="Released", reason="Released").inc()
        ctx.first_seen.pop(pna.allocation_key, None)
        ctx.events.post(involved(pna), warning=False, reason="Released", message="all resources released")
        await set_pna_finalizers(ctx, pna, remaining)
        if network is not None:
            wake_waiting(ctx, node)
        return Result.after(0)  # a pod of the same name may be waiting for its own PNA


def wake_waiting(ctx: Context, node: str) -> None:
    """Capacity came back on this node: PNAs waiting for it look again now."""
    for pna in ctx.state.pnas_on(node):
        if pna.status.get("state") == AllocationState.WAITING_FOR_CAPACITY.value:
            ctx.enqueue(("pna", pna.namespace, pna.name))
