"""The controller's runtime: caches fed by watch events and relists, one work queue, the workers.

Watch events (from kopf's `on.event`, which writes nothing) only update the caches and queue work
items; every decision is made by the reconcilers in `controller.k8s.reconcilers`, from the caches and
the pools. Each watched kind is listed again whenever kopf relists it (a relist after 410 Gone says
nothing of deletions in the gap) and every `resync_interval_s`, so a missed event is healed by the
next pass. One rate-limited queue with per-item backoff carries all work; one item runs at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Mapping
from typing import Any

from controller.clock import Clock, LoopClock, WallClock
from controller.core.errors import Ec2Error
from controller.core.pod_selection import LabelSelector
from controller.engine.node_network import NodeNetwork
from controller.engine.work_queue import RateLimitingQueue
from controller.k8s.cache import Change, ClusterState, Store
from controller.k8s.kube_api import Conflict, KubeError, KubePort, NotFound
from controller.k8s.reconcilers import LEAKS, Reconcilers, WorkItem, node_item, pna_item
from controller.k8s.reconcilers.context import (
    Context,
    ControllerConfig,
    EventRecorder,
    InstanceHook,
    LimitsLookup,
    PoolRegistry,
)
from controller.k8s.resources import (
    NAMESPACES,
    NODE_NETWORK_POOL,
    NODES,
    POD_NETWORK_ALLOCATION,
    PODS,
    SECURITY_GROUP_POLICY,
    SERVICE_ACCOUNTS,
    ResourceRef,
)
from controller.observability import Metrics
from controller.ports.ec2 import Ec2Port

logger = logging.getLogger("netalloc.controller")
# Listed in this order at start: what the pod decisions read comes before the pods themselves.
KINDS: tuple[str, ...] = (
    "namespaces",
    "serviceaccounts",
    "securitygrouppolicies",
    "nodes",
    "nodenetworkpools",
    "podnetworkallocations",
    "pods",
)
REFS: dict[str, ResourceRef] = {
    "namespaces": NAMESPACES,
    "serviceaccounts": SERVICE_ACCOUNTS,
    "securitygrouppolicies": SECURITY_GROUP_POLICY,
    "nodes": NODES,
    "nodenetworkpools": NODE_NETWORK_POOL,
    "podnetworkallocations": POD_NETWORK_ALLOCATION,
    "pods": PODS,
}


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
        self.kube = kube
        self.state = ClusterState()
        self.queue: RateLimitingQueue[WorkItem] = RateLimitingQueue(
            LoopClock(),
            base_delay_s=config.error_backoff_base_s,
            max_delay_s=config.error_backoff_max_s,
            overall_qps=50.0,
            overall_burst=500,
        )
        self.ctx = Context(
            config=config,
            kube=kube,
            ec2=ec2,
            limits_for=limits_for,
            clock=clock or WallClock(),
            metrics=metrics or Metrics(),
            state=self.state,
            pools=PoolRegistry(),
            events=EventRecorder(kube),
            rng=random.Random(seed),
            enqueue=self.enqueue,
            on_new_instance=on_new_instance,
            selector=LabelSelector.parse(config.namespace_selector),
        )
        self.reconcilers = Reconcilers(self.ctx)
        self.stores: dict[str, Store[Any, Any]] = {
            "namespaces": self.state.namespaces,
            "serviceaccounts": self.state.service_accounts,
            "securitygrouppolicies": self.state.policies,
            "nodes": self.state.nodes,
            "nodenetworkpools": self.state.nnps,
            "podnetworkallocations": self.state.pnas,
            "pods": self.state.pods,
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._relists: dict[str, asyncio.Task[None]] = {}
        self._last_relist: dict[str, float] = {}
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
        for kind in KINDS:
            await self.relist(kind)
        for name in self.state.nodes.all_keys():
            self.enqueue(node_item(name))
        for name in self.state.nnps.all_keys():
            self.enqueue(node_item(name))
        self.enqueue(LEAKS)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._worker(), name=f"worker-{i}") for i in range(self.config.workers)
        ]
        self._tasks.append(loop.create_task(self._resync_forever(), name="resync"))
        self.started.set()
        logger.info(
            "controller started: %d nodes, %d pods, %d PodNetworkAllocations",
            len(self.state.nodes),
            len(self.state.pods),
            len(self.state.pnas),
        )

    async def stop(self) -> None:
        self.queue.shutdown()
        tasks = [*self._tasks, *self._relists.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for network in self.networks.values():
            await network.close()
        await self.ctx.events.close()

    # ----- events and relists ------------------------------------------------------------------------
    def on_event(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A watch event (type None: kopf is listing the kind again, so our caches are listed again too)."""
        store = self.stores[kind]
        change = store.apply_event(event_type, body)
        if change is not None:
            self._changed(kind, change)
        if event_type is None and self.started.is_set():
            # kopf lists a kind again when its watch broke and its history expired (410 Gone); the
            # other kinds' watches most likely broke too, and a kind whose list is now empty sends
            # nothing at all: list every kind again (at most once per relist_gap_s each).
            for other in KINDS:
                self._schedule_relist(other)

    def _schedule_relist(self, kind: str) -> None:
        if kind in self._relists and not self._relists[kind].done():
            return
        loop = asyncio.get_running_loop()
        wait = max(0.0, self._last_relist.get(kind, 0.0) + self.config.relist_gap_s - loop.time())

        async def later() -> None:
            await asyncio.sleep(wait)
            try:
                await self.relist(kind)
            except KubeError as error:
                logger.warning("relisting %s failed (%s); the next resync lists it again", kind, error)

        self._relists[kind] = loop.create_task(later(), name=f"relist-{kind}")

    async def relist(self, kind: str) -> None:
        """List the kind and make its cache exactly what the API server has."""
        self._last_relist[kind] = asyncio.get_running_loop().time()
        try:
            items, version = await self.kube.list(REFS[kind])
        except NotFound:
            if kind != "securitygrouppolicies":
                raise
            items, version = [], ""  # the SecurityGroupPolicy CRD is not installed: no pod gets groups
        for change in self.stores[kind].replace(items, version):
            self._changed(kind, change)

    async def _resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.resync_interval_s)
            for kind in KINDS:
                try:
                    await self.relist(kind)
                except KubeError as error:
                    logger.warning("resync of %s failed (%s); retried at the next resync", kind, error)

    def _changed(self, kind: str, change: Change[Any, Any]) -> None:
        """Queue the work a cache change may call for."""
        if kind == "pods":
            namespace, name = change.key
            if self.ctx.managed_namespace(namespace) or self.state.pnas.get(change.key) is not None:
                self.enqueue(pna_item(namespace, name))
        elif kind == "podnetworkallocations":
            self.enqueue(pna_item(*change.key))
            if change.old is None and change.new is not None:
                self.ctx.first_seen.setdefault(change.new.allocation_key, self.ctx.clock.now())
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
