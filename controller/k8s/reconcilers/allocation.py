"""PNA -> allocation state machine: one step per pass, the status written is a function of the state.

The status as the server holds it is the truth between passes. A pass re-derives what to do from it
and from the node's pool: an Allocated status the pool does not back (node drained, ENI gone) is
corrected with ResourcesLost instead of being trusted; a waiting PNA is retried early when its pool
can now serve it. Only after the status write succeeds are Events posted and metrics counted, so a
refused write is simply made again on the next pass (allocation is idempotent per pod).
"""

from __future__ import annotations

import logging

from controller.core.allocation_state import (
    AllocationState,
    AllocationStatus,
    ResourcesLost,
    SpecChanged,
    transition,
)
from controller.core.node_pool import PoolInvariantError
from controller.engine.allocation_driver import AllocatingPool, UnavailablePool, allocation_step
from controller.engine.node_network import NodeNetwork
from controller.k8s.objects import PnaView, PodView
from controller.k8s.pna_mapping import read_status, request_from, same_status, status_to_k8s, steady_wait
from controller.k8s.reconcilers.context import Context, Result
from controller.k8s.reconcilers.pod_binding import involved
from controller.k8s.reconcilers.status_writer import write_pna_status

logger = logging.getLogger("netalloc.allocation")
RESTARTABLE = frozenset(
    {
        AllocationState.PENDING,
        AllocationState.FAILED,
        AllocationState.RETRYING,
        AllocationState.WAITING_FOR_CAPACITY,
    }
)
# Success is told by the status alone: at most two writes per allocation (the PNA, one status patch).
# Events stay for what waits, retries or fails, where `kubectl describe` is where people look, and
# for the recovery that ends such a wait.
QUIET_STATES = frozenset({AllocationState.ALLOCATED, AllocationState.PENDING, AllocationState.ALLOCATING})
WARNING_STATES = frozenset(
    {AllocationState.FAILED, AllocationState.WAITING_FOR_CAPACITY, AllocationState.RETRYING}
)


class Allocation:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def reconcile(self, pna: PnaView, pod: PodView | None) -> Result:
        ctx = self.ctx
        read = read_status(pna)
        if read.unreadable:
            ctx.events.post(
                involved(pna),
                warning=True,
                reason="StatusUnreadable",
                message=f"{read.problem}. Nothing is allocated or released for it until the status is "
                "readable; deleting this PodNetworkAllocation rebuilds it, and its pod keeps the address "
                "the pool holds for it",
            )
            return Result()
        if pod is None or pod.uid != pna.spec.pod_uid:
            return Result()  # the binding reconciler deletes PNAs whose pod is gone
        now = ctx.clock.now()
        persisted = read.status
        status = persisted or AllocationStatus.new(now, generation=pna.generation)
        node = pna.spec.node_name
        network = ctx.pools.network(node)
        if pna.generation > status.observed_generation and status.state in RESTARTABLE:
            status = transition(
                status, SpecChanged(generation=pna.generation), now=now, policy=ctx.config.policy, rng=ctx.rng
            )
        if status.state is AllocationState.ALLOCATED:
            checked = self._backed_by_pool(pna, status, network)
            if checked is None:
                return Result()  # held as recorded, or the pool is not loaded yet (it is woken then)
            status = checked
        request = request_from(pna)
        pool: AllocatingPool = (
            network if network is not None else UnavailablePool(ctx.clock, ctx.unavailable(node))
        )
        freed = (
            status.state is AllocationState.WAITING_FOR_CAPACITY
            and network is not None
            and network.can_serve_now(request)
        )
        result = await allocation_step(
            status, request, pool, policy=ctx.config.policy, rng=ctx.rng, capacity_freed=freed
        )
        await self._persist(pna, persisted, result.status, attempted=result.attempted)
        held = result.status.resources
        if held is not None and held.mode is not pna.spec.mode:
            return Result.after(0)  # e.g. the prefix fallback: the binding makes the spec say SecondaryIP
        return Result.after(result.retry_in)

    def _backed_by_pool(
        self, pna: PnaView, status: AllocationStatus, network: NodeNetwork | None
    ) -> AllocationStatus | None:
        """None when the pool holds what the status records (or cannot be asked yet); else the status
        after ResourcesLost, to allocate again."""
        ctx = self.ctx
        recorded = status.resources
        assert recorded is not None
        node = pna.spec.node_name
        if network is None:
            if not ctx.pool_is_gone(node):
                return None
            reason, why = "NodePoolDrained", f"node {node} is gone and its pool was drained"
        else:
            held = network.pool.holding_for(pna.allocation_key)
            if held is not None and (held.ip, held.eni_id) == (recorded.ip, recorded.eni_id):
                return None
            if held is None:
                try:
                    if network.restore(pna.allocation_key, recorded):
                        return None
                except PoolInvariantError as error:
                    ctx.events.post(involved(pna), warning=True, reason="AddressConflict", message=str(error))
            reason, why = "ResourcesLost", f"node {node}'s pool does not hold them (EC2 no longer has them)"
        ctx.events.post(
            involved(pna),
            warning=True,
            reason=reason,
            message=f"{recorded.mode.value} {recorded.ip} on {recorded.eni_id} is no longer held: {why}; "
            "allocating again",
        )
        return transition(
            status,
            ResourcesLost(reason=reason, message=why),
            now=ctx.clock.now(),
            policy=ctx.config.policy,
            rng=ctx.rng,
        )

    async def _persist(
        self, pna: PnaView, persisted: AllocationStatus | None, status: AllocationStatus, *, attempted: bool
    ) -> None:
        body = status_to_k8s(status)
        if same_status(body, pna.status):
            return
        if steady_wait(body, pna.status):
            # Nothing new to write; the Event recorder still tells it now and then (its dedup window), so
            # `kubectl describe` keeps showing why the pod waits after older Events expire.
            self.ctx.events.post(involved(pna), warning=True, reason=status.reason, message=status.message)
            return
        written = await write_pna_status(self.ctx, pna, body)
        if written is None:
            return
        self._observe(written, persisted, status, attempted=attempted)

    def _observe(
        self, pna: PnaView, persisted: AllocationStatus | None, status: AllocationStatus, *, attempted: bool
    ) -> None:
        """Metrics, the INFO line and Events for a status the server accepted."""
        before = persisted.state if persisted else None
        ctx = self.ctx
        state = status.state
        ctx.metrics.transitions.labels(
            from_state=before.value if before else "None", to_state=state.value, reason=status.reason
        ).inc()
        mode = pna.spec.mode.value
        if state is AllocationState.ALLOCATED:
            started = ctx.first_seen.pop(pna.allocation_key, None)
            if started is not None:
                elapsed = max(0.0, ctx.clock.now() - started)
                ctx.latencies.append(elapsed)
                ctx.metrics.allocation_latency.labels(mode=mode, outcome="allocated").observe(elapsed)
        elif state is AllocationState.FAILED and before is not AllocationState.FAILED:
            started = ctx.first_seen.get(pna.allocation_key, ctx.clock.now())
            ctx.metrics.allocation_latency.labels(mode=mode, outcome="failed").observe(
                ctx.clock.now() - started
            )
        warning = state in WARNING_STATES or status.reason in ("ResourcesLost", "NodePoolDrained")
        held = status.resources
        message = status.message
        if held is not None:
            message = f"{held.mode.value} {held.ip} on {held.eni_id}" + (
                f" VLAN {held.vlan_id}" if held.vlan_id else ""
            )
        had = persisted.resources if persisted else None
        # Allocated again after ResourcesLost (one write): the pod's address changed, which is a change.
        moved = held is not None and had is not None and (held.ip, held.eni_id) != (had.ip, had.eni_id)
        changed = state is not before or moved
        if changed:  # INFO tells changes, never watch events
            logger.info(
                "%s/%s: %s -> %s (%s)",
                pna.namespace,
                pna.name,
                before.value if before else "new",
                state.value,
                message if held is not None else status.reason,
            )
        quiet = (
            not warning
            and state in QUIET_STATES
            and before not in WARNING_STATES
            and not moved
            and status.reason != "PrefixFallback"  # a /32 instead of an address from a /28: worth telling
        )
        if quiet:
            return  # the status says it (reason, resources, conditions): an Event would be a second write
        if changed or (warning and attempted):
            ctx.events.post(involved(pna), warning=warning, reason=status.reason, message=message)
