"""The controller's runtime: the caches (fed by `informers`), one work queue, the workers.

Watch events (from kopf's `on.event`, which writes nothing) only update the caches and queue work
items; every decision is made by the reconcilers in `controller.k8s.reconcilers`, from the caches and
the pools, so a missed event is healed by the next pass. One rate-limited queue with per-item backoff
carries all work; one item runs at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from typing import Any

from controller.clock import Clock, LoopClock, WallClock
from controller.core.allocation_state import AllocationState
from controller.core.errors import Ec2Error
from controller.core.pod_selection import LabelSelector
from controller.engine.ec2_pacing import Ec2Pacer, PacedEc2
from controller.engine.node_network import NodeNetwork
from controller.engine.work_queue import RateLimitingQueue
from controller.k8s.cache import Change, ClusterState
from controller.k8s.heap import trim_forever
from controller.k8s.informers import KINDS, REFS, Informers
from controller.k8s.kube_api import Conflict, KubeError, KubePort
from controller.k8s.kube_limit import limited
from controller.k8s.objects import allocation_key
from controller.k8s.reconcilers import LEAKS, SUBNETS, Reconcilers, WorkItem, node_item, pna_item
from controller.k8s.reconcilers.context import (
    Context,
    ControllerConfig,
    EventRecorder,
    InstanceHook,
    LimitsLookup,
    PoolRegistry,
)
from controller.observability import Metrics
from controller.ports.ec2 import Ec2Port

__all__ = ["KINDS", "REFS", "ControllerRuntime"]
# A PNA in one of these states (or with no status) waits on an allocation step, and so on EC2.
SEEKING_STATES = frozenset(
    {"", *(s.value for s in (AllocationState.PENDING, AllocationState.ALLOCATING, AllocationState.RETRYING))}
)
logger = logging.getLogger("netalloc.controller")


class ControllerRuntime:
    def __init__(
        self,
        *,
        config: ControllerConfig,
        ec2: Ec2Port,
        limits_for: LimitsLookup,
        kube: KubePort,
        metrics: Metrics | None = None,
        clock: Clock | None = None,
        on_new_instance: InstanceHook | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        clock = clock or WallClock()
        kube = limited(kube, qps=config.kube_client_qps, burst=config.kube_client_burst, clock=clock)
        self.kube = kube
        self.state = ClusterState()
        self.queue: RateLimitingQueue[WorkItem] = RateLimitingQueue(
            LoopClock(),
            base_delay_s=config.error_backoff_base_s,
            max_delay_s=config.error_backoff_max_s,
            overall_qps=50.0,
            overall_burst=500,
        )
        pacer: Ec2Pacer | None = None
        if config.ec2_pacing_share > 0:  # each action under its own EC2 bucket, pods before refills
            pacer = Ec2Pacer(clock, share=config.ec2_pacing_share)
            ec2 = PacedEc2(ec2, pacer)
        self.ctx = Context(
            config=config,
            kube=kube,
            ec2=ec2,
            limits_for=limits_for,
            clock=clock,
            metrics=metrics or Metrics(),
            state=self.state,
            pools=PoolRegistry(),
            events=EventRecorder(kube, clock=clock),
            rng=random.Random(seed),
            enqueue=self.enqueue,
            enqueue_rate_limited=self.queue.add_rate_limited,
            on_new_instance=on_new_instance,
            selector=LabelSelector.parse(config.namespace_selector),
        )
        if pacer is not None:
            pacer.pods_seeking = lambda: bool(self.ctx.seeking)
        self.state.pnas.listeners.append(self._track_seeking)  # every change, by event or by our writes
        self.reconcilers = Reconcilers(self.ctx)
        self.informers = Informers(
            kube, self.state, self._changed, gap_s=config.relist_gap_s, resync_s=config.resync_interval_s
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.started = asyncio.Event()

    # ----- what the sandbox, benchmarks and tests read ---------------------------------------------
    @property
    def networks(self) -> dict[str, NodeNetwork]:
        return self.ctx.pools.networks()

    @property
    def latencies(self) -> list[float]:
        return list(self.ctx.latencies)

    # ----- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """List every kind into the caches and queue all work, then start the workers."""
        await self.informers.list_all()
        for name in self.state.nodes.all_keys():
            self.enqueue(node_item(name))
        for name in self.state.nnps.all_keys():
            self.enqueue(node_item(name))
        self.enqueue(LEAKS)
        self.enqueue(SUBNETS)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._worker(), name=f"worker-{i}") for i in range(self.config.workers)
        ]
        self._tasks.append(loop.create_task(self.informers.resync_forever(), name="resync"))
        self._tasks.append(loop.create_task(trim_forever(self.config.heap_trim_interval_s), name="heap-trim"))
        self.started.set()
        logger.info(
            "controller started: %d nodes, %d pods, %d PodNetworkAllocations",
            len(self.state.nodes),
            len(self.state.pods),
            len(self.state.pnas),
        )

    async def stop(self) -> None:
        self.queue.shutdown()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.informers.stop()
        for network in self.networks.values():
            await network.close()
        await self.ctx.events.close()

    # ----- events ----------------------------------------------------------------------------------------
    def on_event(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event from kopf (type None: kopf is listing the kind again)."""
        self.informers.on_event(kind, event_type, body)

    async def relist(self, kind: str) -> None:
        await self.informers.relist(kind)

    def _track_seeking(self, change: Change[Any, Any]) -> None:
        new = change.new
        if new is not None and not new.deleting and new.state in SEEKING_STATES:
            self.ctx.seeking.add(change.key)
        else:
            self.ctx.seeking.discard(change.key)

    def _changed(self, kind: str, change: Change[Any, Any]) -> None:
        """Queue the work a cache change may call for."""
        if kind == "pods":
            namespace, name = change.key
            if self.ctx.managed_namespace(namespace) or self.state.pnas.get(change.key) is not None:
                self.enqueue(pna_item(namespace, name))
            pod = change.new
            if pod is not None and pod.deleting and pod.node_name:
                network = self.ctx.pools.network(pod.node_name)
                if network is not None:  # its branch comes back after the grace period: no replacement
                    network.pool.mark_returning(allocation_key(namespace, name, pod.uid))
        elif kind == "podnetworkallocations":
            self.enqueue(pna_item(*change.key))
            if change.old is None and change.new is not None:
                self.ctx.first_seen.setdefault(change.new.allocation_key, self.ctx.clock.now())
            elif change.new is None and change.old is not None:
                self.ctx.first_seen.pop(change.old.allocation_key, None)
        elif kind in ("namespaces", "securitygrouppolicies", "serviceaccounts"):
            namespace = change.key if kind == "namespaces" else change.key[0]
            for key in self.state.pod_keys_in(namespace):
                self.enqueue(pna_item(*key))
        elif kind in ("nodes", "nodenetworkpools"):
            self.enqueue(node_item(change.key))

    # ----- the queue -----------------------------------------------------------------------------------
    def enqueue(self, item: WorkItem) -> None:
        self.queue.add(item)

    async def _worker(self) -> None:
        metrics = self.ctx.metrics
        while True:
            item = await self.queue.get()
            metrics.queue_depth.set(len(self.queue))
            try:
                result = await self.reconcilers.reconcile(item)
            except asyncio.CancelledError:
                raise
            except Conflict:
                self.queue.add_rate_limited(item)  # the cache holds the newer object now
            except (KubeError, Ec2Error) as error:
                metrics.reconcile_errors.labels(kind=item[0], error=type(error).__name__).inc()
                logger.warning("%s: %s; retried with backoff", "/".join(item), error)
                self.queue.add_rate_limited(item)
            except Exception:
                metrics.reconcile_errors.labels(kind=item[0], error="Unexpected").inc()
                logger.exception("%s failed; retried with backoff", "/".join(item))
                self.queue.add_rate_limited(item)
            else:
                self.queue.forget(item)
                if result.requeue_after is not None:
                    self.queue.add_after(item, result.requeue_after)
            finally:
                self.queue.done(item)
