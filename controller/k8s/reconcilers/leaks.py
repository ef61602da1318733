"""Leak collection: delete ENIs tagged for this cluster that no node of this cluster owns any more.

It is the one place netalloc deletes what it did not just make, so it is fenced three ways:
- it runs only when the caches are synced and every current EC2 node's pool is registered (an
  unregistered pool's ENIs are unknown, not leaked);
- it never touches an ENI whose instance tag is a current Node's instance: that node's own pool
  adopts or cleans what is attached to it;
- it deletes only ENIs tagged with this cluster's id (its kube-system namespace UID), so a second
  cluster given the same CLUSTER_NAME is never touched;
- an ENI must be seen unknown in `leak_passes` consecutive sweeps.
Trunks go first: deleting a trunk frees its branches, which the next sweep deletes.
"""

from __future__ import annotations

from controller.core import tags as tagging
from controller.core.errors import Ec2Error, NotFoundError
from controller.k8s.reconcilers.context import Context, PoolPhase, Result, logger
from controller.ports.ec2 import InterfaceType, NetworkInterface


class LeakCollector:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._seen: dict[str, int] = {}
        self.last_skip_reason = ""

    def _blocked(self) -> str:
        """Why a sweep must not run now ("" when it may)."""
        ctx = self.ctx
        if not ctx.state.synced:
            return "caches not synced"
        if not ctx.cluster_id():
            return "no kube-system namespace seen: this cluster's id is unknown"
        for node in ctx.state.nodes:
            if node.deleting or node.instance_id is None or not node.instance_type:
                continue
            entry = ctx.pools.get(node.name)
            if entry is None or entry.phase is not PoolPhase.REGISTERED:
                return f"node {node.name}'s pool is not registered"
        return ""

    async def reconcile(self) -> Result:
        ctx = self.ctx
        blocked = self._blocked()
        self.last_skip_reason = blocked
        if blocked:
            ctx.metrics.leak_sweeps.labels(outcome="skipped").inc()
            logger.debug("leak sweep skipped: %s", blocked)
            return Result.after(ctx.config.leak_interval_s)
        deleted = await self.sweep()
        ctx.metrics.leak_sweeps.labels(outcome="ran").inc()
        if deleted:
            logger.info("leak sweep deleted %d ENIs", deleted)
        return Result.after(ctx.config.leak_interval_s)

    async def sweep(self) -> int:
        ctx = self.ctx
        tagged = await ctx.ec2.describe_network_interfaces(
            tags={tagging.TAG_CLUSTER: ctx.config.cluster_name, tagging.TAG_CLUSTER_ID: ctx.cluster_id()}
        )
        current_instances = {node.instance_id for node in ctx.state.nodes if node.instance_id}
        known: set[str] = set()
        for network in ctx.pools.networks().values():
            pool = network.pool
            known.update(pool.enis)
            known.update(pool.branches)
            known.update(network.orphaned_enis)
            if pool.trunk_eni_id:
                known.add(pool.trunk_eni_id)
        candidates = [
            eni
            for eni in tagged
            if eni.eni_id not in known and eni.tags.get(tagging.TAG_INSTANCE, "") not in current_instances
        ]
        seen: dict[str, int] = {}
        deleted = 0
        for eni in sorted(candidates, key=_trunks_first):
            count = self._seen.get(eni.eni_id, 0) + 1
            if count < ctx.config.leak_passes:
                seen[eni.eni_id] = count
                continue
            try:
                await self._delete(eni)
            except Ec2Error as error:
                seen[eni.eni_id] = count
                logger.warning("could not delete leaked ENI %s: %s", eni.eni_id, error)
                continue
            deleted += 1
            ctx.metrics.leaked_enis_deleted.inc()
            logger.info(
                "deleted leaked ENI %s (%s, instance %s, node %s)",
                eni.eni_id,
                eni.tags.get(tagging.TAG_ROLE, "?"),
                eni.tags.get(tagging.TAG_INSTANCE, "?"),
                eni.tags.get(tagging.TAG_OWNER, "?"),
            )
        self._seen = seen
        return deleted

    async def _delete(self, eni: NetworkInterface) -> None:
        ec2 = self.ctx.ec2
        try:
            if eni.attachment is not None:
                await ec2.detach_network_interface(eni.attachment.attachment_id, force=True)
            await ec2.delete_network_interface(eni.eni_id)
        except NotFoundError:
            return


def _trunks_first(eni: NetworkInterface) -> tuple[int, str]:
    return (
        0 if eni.interface_type is InterfaceType.TRUNK or eni.tags.get(tagging.TAG_ROLE) == "trunk" else 1,
        eni.eni_id,
    )
