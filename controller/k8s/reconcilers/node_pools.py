"""Node -> NodeNetworkPool -> the node's pool: register with backoff, keep at target, drain when it goes.

Registration rebuilds the pool from EC2 (what the instance has) and from every PNA on the node (who
holds what), read from the cache each attempt: a failed attempt loses nothing, the next one starts
over. A pool that cannot be made says why, with the EC2 code or the missing field, in the NNP's Ready
condition and in the message of every PNA waiting on it, and is retried on the retry policy's backoff
rather than on the next Node event.

A node is drained only once the API server confirms it is gone (a GET, not the cache): draining takes
every address of its pods. A NodeNetworkPool deleted by hand while its node lives is let go and made
again; the pool itself stays.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from controller.core.allocation_model import AssignedResources
from controller.core.errors import Ec2Error, ErrorClass, NotFoundError
from controller.core.instance_limits import UnknownInstanceTypeError
from controller.core.pod_selection import warm_branch_groups
from controller.engine.node_network import NodeNetwork, open_node_network
from controller.k8s.kube_api import AlreadyExists
from controller.k8s.nnp_mapping import (
    POOL_FINALIZER,
    new_nnp,
    nnp_spec,
    nnp_status,
    spec_outdated,
    unready_status,
)
from controller.k8s.objects import JsonObject, NnpView, NodeView
from controller.k8s.pna_mapping import read_status
from controller.k8s.reconcilers.context import Context, PoolPhase, Result, logger
from controller.k8s.reconcilers.holdings import collect_orphan_holdings
from controller.k8s.reconcilers.release import wake_waiting
from controller.k8s.reconcilers.status_writer import patch_nnp
from controller.k8s.resources import NODE_NETWORK_POOL, NODES


def pool_error(code: str, message: str) -> Ec2Error:
    return Ec2Error(code, message, action="RegisterPool")


class NodePools:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # node -> when its pool's counts first moved since the record had them (the write is due an
        # interval later: a burst's moved counts are written once, after it, not at its first pass)
        self._counts_moved_at: dict[str, float] = {}

    async def reconcile(self, name: str) -> Result:
        ctx = self.ctx
        node = ctx.state.nodes.get(name)
        nnp = ctx.state.nnps.get(name)
        if node is None or node.deleting or (nnp is not None and nnp.deleting):
            node = await self._confirm_node(name, node)  # the cache may lag: ask before draining
        if node is None or node.deleting:
            return await self._drain(name, node)
        instance_id, instance_type = node.instance_id, node.instance_type
        if instance_id is None or not instance_type:
            return self._not_served(node)
        entry = ctx.pools.get(name)
        if entry is not None and entry.phase is PoolPhase.REGISTERED and entry.instance_id != instance_id:
            logger.warning(
                "node %s is now instance %s (was %s): draining the old pool",
                name,
                instance_id,
                entry.instance_id,
            )
            drained = await self._drain(name, node, keep_record=True)
            if ctx.pools.network(name) is not None:
                return drained
        nnp = await self._ensure_record(node, instance_id, instance_type)
        network = ctx.pools.network(name)
        if network is None:
            return await self._register(node, nnp, instance_id)
        self._set_warm_groups(network)
        report = network.maintain()  # pool work, in the background: pods waiting on EC2 go first
        if network.stale:
            await self._refresh(network)
        if report is not None and report.completed:
            wake_waiting(ctx, name)
        await self._collect_orphans(network)
        counts_due_in = await self._write_status(name, nnp_status_of(ctx, network, nnp))
        ctx.update_pool_metrics(network)
        interval = ctx.config.reconcile_interval_s
        return Result.after(interval if counts_due_in is None else min(interval, counts_due_in))

    # ----- the record ------------------------------------------------------------------------------
    async def _confirm_node(self, name: str, cached: NodeView | None) -> NodeView | None:
        body = await self.ctx.kube.get(NODES, name)
        if body is None:
            if cached is not None:
                self.ctx.state.nodes.remove(name)
            return None
        view = NodeView.from_k8s(body)
        self.ctx.state.nodes.upsert(view)
        return self.ctx.state.nodes.get(name) or view

    async def _ensure_record(self, node: NodeView, instance_id: str, instance_type: str) -> NnpView | None:
        """The node's NodeNetworkPool exists with the spec the current settings give it."""
        ctx = self.ctx
        nnp = ctx.state.nnps.get(node.name)
        network = ctx.pools.network(node.name)
        subnet = (
            network.pool.subnet_id if network is not None else (nnp.spec.get("subnetId") if nnp else None)
        )
        desired = nnp_spec(
            node_name=node.name,
            instance_id=instance_id,
            instance_type=instance_type,
            subnet_id=subnet,
            settings=ctx.config.pool,
        )
        if nnp is not None and nnp.deleting:
            if POOL_FINALIZER in nnp.finalizers:  # deleted by hand while the node lives: made again
                await patch_nnp(
                    ctx, nnp, {"metadata": {"finalizers": [f for f in nnp.finalizers if f != POOL_FINALIZER]}}
                )
            return None
        if nnp is None:
            try:
                created = await ctx.kube.create(NODE_NETWORK_POOL, new_nnp(node=node, spec=desired))
            except AlreadyExists:
                found = await ctx.kube.get(NODE_NETWORK_POOL, node.name)
                if found is None:
                    return None
                created = found
            ctx.state.nnps.upsert(NnpView.from_k8s(created))
            return ctx.state.nnps.get(node.name)
        if spec_outdated(nnp.spec, desired):
            return await patch_nnp(ctx, nnp, {"spec": desired})
        if POOL_FINALIZER not in nnp.finalizers:
            return await patch_nnp(ctx, nnp, {"metadata": {"finalizers": [*nnp.finalizers, POOL_FINALIZER]}})
        return nnp

    async def _refresh(self, network: NodeNetwork) -> None:
        """EC2 no longer has something the pool has: read it again; PNAs that lost theirs start over."""
        ctx = self.ctx
        why = network.stale
        lost = await network.refresh_from_ec2()
        logger.warning(
            "node %s: pool read again from EC2 after %s; %d allocation(s) lost",
            network.node_name,
            why,
            len(lost),
        )
        for pna in ctx.state.pnas_on(network.node_name):
            ctx.enqueue(("pna", pna.namespace, pna.name))

    async def _write_status(self, name: str, status: JsonObject | None) -> float | None:
        """Write the pool's status if it changed. A change of what a reader must learn at once (`_gist`)
        is written now; counts that moved wait `pool_status_interval_s` from when they first moved (the
        pool says when; else the pass that sees it), so a burst of allocations costs one write per node,
        after it, with the counts it left. Returns in how many seconds held-back counts are due (None:
        nothing is held back)."""
        nnp = self.ctx.state.nnps.get(name)
        if nnp is None or status is None or nnp.deleting:
            return None
        if {k: v for k, v in status.items()} == {k: nnp.status.get(k) for k in status}:
            self._counts_moved_at.pop(name, None)  # back to what the record says: nothing to write
            return None
        if _gist(status) == _gist(nnp.status):
            now_s = self.ctx.clock.now()
            moved_at = self._counts_moved_at.setdefault(name, now_s)
            due_in = moved_at + self.ctx.config.pool_status_interval_s - now_s
            if due_in > 0:
                return due_in  # only counters moved: written once, when they have waited the interval
        was = _condition(nnp.status, "SubnetFragmented")
        now = _condition(status, "SubnetFragmented")
        written = await patch_nnp(self.ctx, nnp, {"status": status}, subresource="status")
        if written is not None:
            self._counts_moved_at.pop(name, None)  # the record has them now
        if (
            written is not None
            and now is not None
            and now.get("status") == "True"
            and (was or {}).get("status") != "True"
        ):
            self.ctx.events.post(
                {
                    "apiVersion": NODE_NETWORK_POOL.api_version,
                    "kind": NODE_NETWORK_POOL.kind,
                    "metadata": {"name": name, "uid": nnp.uid},
                },
                warning=True,
                reason="SubnetFragmented",
                message=str(now.get("message", "")),
            )
        return None

    # ----- registration ----------------------------------------------------------------------------
    def _pool_work_done_for(self, name: str) -> Callable[[bool], None]:
        """Background pool work of `name` did something: its pass runs again (with backoff if it failed)."""
        item = ("node", name)

        def done(failed: bool) -> None:
            ctx = self.ctx
            (ctx.enqueue_rate_limited if failed and ctx.enqueue_rate_limited else ctx.enqueue)(item)

        return done

    def _counts_moved_for(self, name: str) -> Callable[[], None]:
        """The pool's counts moved: their write is due an interval after the first move since the record
        last had them. The pass that holds them back asks for its next look at that time."""
        moved_at = self._counts_moved_at

        def moved() -> None:
            if name not in moved_at:
                moved_at[name] = self.ctx.clock.now()

        return moved

    def _set_warm_groups(self, network: NodeNetwork) -> None:
        """Warm branches get the groups the node's pods (or, before any, the policies) ask for."""
        ctx = self.ctx
        groups = warm_branch_groups(
            (
                p.spec.security_group_ids
                for p in ctx.state.pnas_on(network.node_name)
                if p.spec.security_group_ids
            ),
            (p.policy.group_ids for p in ctx.state.policies if ctx.managed_namespace(p.namespace)),
        )
        if groups is not None:
            network.warm_branch_groups = groups

    def holdings(self, node_name: str) -> dict[str, AssignedResources]:
        """What each PNA on the node says its pod holds (readable, or salvaged from an unreadable status)."""
        held: dict[str, AssignedResources] = {}
        for pna in self.ctx.state.pnas_on(node_name):
            resources = read_status(pna).resources
            if resources is not None:
                held[pna.allocation_key] = resources
        return held

    async def _register(self, node: NodeView, nnp: NnpView | None, instance_id: str) -> Result:
        ctx = self.ctx
        name = node.name
        try:
            if ctx.on_new_instance is not None:
                await ctx.on_new_instance(name, instance_id, node.instance_type)
            network = await self._open(name, instance_id)
            self._set_warm_groups(network)
            network.on_pool_work_done = self._pool_work_done_for(name)
            network.on_counts_moved = self._counts_moved_for(name)
            lost: list[str] = []
            await network.register(self.holdings(name), lost=lost)
        except UnknownInstanceTypeError as error:
            return await self._failed(name, pool_error("UnknownInstanceType", str(error)), retryable=False)
        except Ec2Error as error:
            return await self._failed(name, error, retryable=error.error_class is not ErrorClass.PERMANENT)
        for key in lost:
            logger.warning(
                "%s: %s records resources the pool no longer has; it is allocated again", name, key
            )
        ctx.pools.registered(network, instance_id)
        logger.info("node %s: pool registered (%s)", name, network.pool.limits.instance_type)
        for pna in ctx.state.pnas_on(name):
            ctx.enqueue(("pna", pna.namespace, pna.name))
        await self._ensure_record(node, instance_id, node.instance_type)  # now with the subnet
        await self._write_status(name, nnp_status_of(ctx, network, ctx.state.nnps.get(name)))
        ctx.enqueue(("subnets",))  # a new subnet may be in use: report on it
        ctx.update_pool_metrics(network)
        return Result.after(ctx.config.reconcile_interval_s)

    async def _failed(self, name: str, error: Ec2Error, *, retryable: bool) -> Result:
        ctx = self.ctx
        entry = ctx.pools.not_ready(name, error)
        logger.warning(
            "node %s: pool not ready (attempt %d): %s: %s", name, entry.failures, error.code, error.message
        )
        nnp = ctx.state.nnps.get(name)
        message = f"{error.code}: {error.message}"
        await self._write_status(
            name,
            unready_status(
                reason=error.code, message=message, previous=nnp.status if nnp else {}, now=ctx.clock.now()
            ),
        )
        for pna in ctx.state.pnas_on(name):
            ctx.enqueue(("pna", pna.namespace, pna.name))
        if not retryable:
            return Result.after(ctx.config.policy.capacity.cap_s)  # a fix (a new type table) is picked up
        backoff = ctx.config.policy.transient
        return Result.after(max(0.5, backoff.delay(min(entry.failures, 16), ctx.rng)))

    def _not_served(self, node: NodeView) -> Result:
        ctx = self.ctx
        if node.instance_id is None:
            code = "NodeNotEc2"
            message = (
                f"node {node.name} has no EC2 providerID (spec.providerID is {node.provider_id!r}; "
                "expected aws:///ZONE/i-...): netalloc serves EC2 instances only"
            )
        else:
            code = "NoInstanceType"
            message = f"node {node.name} has no node.kubernetes.io/instance-type label"
        entry = ctx.pools.get(node.name)
        if entry is None or entry.error is None or entry.error.code != code:
            ctx.pools.not_ready(node.name, pool_error(code, message), count_failure=False)
            ctx.events.post(
                {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node.name, "uid": node.uid}},
                warning=True,
                reason=code,
                message=message,
            )
            for pna in ctx.state.pnas_on(node.name):
                ctx.enqueue(("pna", pna.namespace, pna.name))
        return Result()  # a change to the Node brings it back

    # ----- holdings without a live PNA ---------------------------------------------------------------
    async def _collect_orphans(self, network: NodeNetwork) -> None:
        for key in await collect_orphan_holdings(self.ctx, network):
            logger.warning("%s: released %s: no PodNetworkAllocation or pod holds it", network.node_name, key)
            self.ctx.metrics.orphan_holdings_released.inc()

    # ----- drain -----------------------------------------------------------------------------------
    async def _drain(self, name: str, node: NodeView | None, *, keep_record: bool = False) -> Result:
        """The node is gone: give back everything its pool holds, then let its NodeNetworkPool go."""
        self._counts_moved_at.pop(name, None)
        ctx = self.ctx
        nnp = ctx.state.nnps.get(name)
        entry = ctx.pools.get(name)
        network = ctx.pools.network(name)
        instance_id = (
            entry.instance_id if entry is not None and entry.instance_id else (nnp.instance_id if nnp else "")
        )
        if entry is not None and entry.phase is PoolPhase.DRAINED and nnp is None:
            return Result()
        if network is None and instance_id and not (entry is not None and entry.phase is PoolPhase.DRAINED):
            network = await self._open_for_drain(name, instance_id)
            rebuilt = ctx.pools.get(name)
            if network is None and (rebuilt is None or rebuilt.phase is not PoolPhase.DRAINED):
                return Result.after(max(1.0, ctx.config.policy.transient.delay(3, ctx.rng)))
        if network is not None:
            problems = await network.drain()
            if problems:
                logger.warning("node %s: drain incomplete: %s", name, "; ".join(problems))
                await self._write_status(
                    name,
                    unready_status(
                        reason="DrainIncomplete",
                        message="; ".join(problems)[:4000],
                        previous=nnp.status if nnp else {},
                        now=ctx.clock.now(),
                    ),
                )
                return Result.after(max(1.0, ctx.config.policy.release.delay(2, ctx.rng)))
        ctx.pools.drained(name, instance_id)
        logger.info("node %s: pool drained", name)
        for pna in ctx.state.pnas_on(name):
            ctx.enqueue(("pna", pna.namespace, pna.name))
        if nnp is not None and not keep_record:
            await self._let_record_go(nnp)
        return Result()

    async def _open(self, name: str, instance_id: str) -> NodeNetwork:
        """The node's runtime from EC2 (instance, subnet, limits); not registered yet."""
        ctx = self.ctx
        return await open_node_network(
            ec2=ctx.ec2,
            clock=ctx.clock,
            limits_for=ctx.limits_for,
            settings=ctx.config.pool,
            node_name=name,
            instance_id=instance_id,
            cluster_name=ctx.config.cluster_name,
            rng=random.Random(ctx.rng.getrandbits(32)),
            retry_policy=ctx.config.policy,
            cluster_id=ctx.cluster_id(),
        )

    async def _open_for_drain(self, name: str, instance_id: str) -> NodeNetwork | None:
        """A pool this process never registered (the node went while it was down): rebuild it from EC2."""
        ctx = self.ctx
        try:
            network = await self._open(name, instance_id)
            await network.recover_from_ec2()
            return network
        except NotFoundError:
            # The instance is gone: its ENIs carry its tag and no current node has it, so the leak
            # collector deletes them.
            ctx.pools.drained(name, instance_id)
            return None
        except (Ec2Error, UnknownInstanceTypeError) as error:
            logger.warning("node %s: cannot rebuild the pool to drain it: %s", name, error)
            return None

    async def _let_record_go(self, nnp: NnpView) -> None:
        ctx = self.ctx
        current: NnpView | None = nnp
        if not nnp.deleting:
            body = await ctx.kube.delete(NODE_NETWORK_POOL, nnp.name, uid=nnp.uid)
            if body is None:
                ctx.state.nnps.remove(nnp.name)
                return
            ctx.state.nnps.upsert(NnpView.from_k8s(body))
            current = ctx.state.nnps.get(nnp.name)
        if current is not None and POOL_FINALIZER in current.finalizers:
            await patch_nnp(
                ctx,
                current,
                {"metadata": {"finalizers": [f for f in current.finalizers if f != POOL_FINALIZER]}},
            )


def _gist(status: Mapping[str, Any]) -> tuple[object, ...]:
    """What a reader must learn at once (readiness and why, the trunk, which ENIs the node has: a
    `--ec2 sim` restart rebuilds the VPC from them); counts can wait."""
    conditions = tuple(  # the Ready message says why; the subnet's message only carries counts
        (
            c.get("type"),
            c.get("status"),
            c.get("reason"),
            c.get("message") if c.get("type") == "Ready" else "",
        )
        for c in status.get("conditions") or ()
    )
    enis = tuple(sorted(str(e.get("eniId")) for e in status.get("enis") or () if isinstance(e, Mapping)))
    return conditions, status.get("trunkEniId"), status.get("limits"), enis


def _condition(status: JsonObject, kind: str) -> JsonObject | None:
    return next((c for c in status.get("conditions") or () if c.get("type") == kind), None)


def nnp_status_of(ctx: Context, network: NodeNetwork, nnp: NnpView | None) -> JsonObject | None:
    if nnp is None:
        return None
    subnet = ctx.subnets.get(network.pool.subnet_id)
    return nnp_status(network, previous=nnp.status, now=ctx.clock.now(), subnet=subnet)
