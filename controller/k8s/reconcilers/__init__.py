"""The controller's reconcilers, one concern per module, run by one parent per kind of work item.

Work items are tuples: ``("pna", namespace, name)`` for a pod and its PodNetworkAllocation (they share
the name), ``("node", name)`` for a node and its pool, ``("leaks",)`` for the cluster-wide sweep, and
``("subnets",)`` for the subnets' fragmentation reports. As in Karpenter's NodeClaim lifecycle
controller, the parent runs small sub-reconcilers in order and the state they act on lives in the
objects (PNA status conditions, NNP conditions), not in the parent.
"""

from __future__ import annotations

from typing import Final

from controller.k8s.reconcilers.allocation import Allocation
from controller.k8s.reconcilers.context import Context, Result
from controller.k8s.reconcilers.leaks import LeakCollector
from controller.k8s.reconcilers.node_pools import NodePools
from controller.k8s.reconcilers.pod_binding import PodBinding
from controller.k8s.reconcilers.release import Release
from controller.k8s.reconcilers.subnets import SubnetReports

WorkItem = tuple[str, ...]
LEAKS: Final[WorkItem] = ("leaks",)
SUBNETS: Final[WorkItem] = ("subnets",)


def pna_item(namespace: str, name: str) -> WorkItem:
    return ("pna", namespace, name)


def node_item(name: str) -> WorkItem:
    return ("node", name)


class Reconcilers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.binding = PodBinding(ctx)
        self.allocation = Allocation(ctx)
        self.release = Release(ctx, self.binding)
        self.node_pools = NodePools(ctx)
        self.leaks = LeakCollector(ctx)
        self.subnets = SubnetReports(ctx)

    async def reconcile(self, item: WorkItem) -> Result:
        match item:
            case ("pna", namespace, name):
                return await self.reconcile_allocation((namespace, name))
            case ("node", name):
                return await self.node_pools.reconcile(name)
            case ("leaks",):
                return await self.leaks.reconcile()
            case ("subnets",):
                return await self.subnets.reconcile()
        raise ValueError(f"unknown work item {item!r}")

    async def reconcile_allocation(self, key: tuple[str, str]) -> Result:
        """Binding first (the PNA that should exist, with the spec derived from its pod), then either
        the release of a PNA being deleted or one allocation step."""
        had = self.ctx.state.pnas.get(key) is not None
        pna = await self.binding.reconcile(key)
        if pna is None:
            return Result.after(0) if had else Result()  # deleted: a same-name pod may need a new one
        pod = self.ctx.state.pods.get(key)
        if pna.deleting:
            return await self.release.reconcile(pna, pod)
        return await self.allocation.reconcile(pna, pod)
