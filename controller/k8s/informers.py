"""The caches' feeds: watch events applied as they come, and full lists that correct what they missed.

kopf lists a kind again when its watch broke and its history expired (410 Gone), replaying what
exists but saying nothing of what went away in the gap. So whenever kopf relists (an event of type
None after start), every kind is listed again here and each cache replaced by the list; the other
kinds' watches most likely broke too, and a kind whose list is now empty sends nothing at all. Every
kind is also listed again every `resync_interval_s`. At most one list per kind per `relist_gap_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from controller.k8s.cache import Change, ClusterState, Store
from controller.k8s.kube_api import KubeError, KubePort, NotFound
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
ChangeHandler = Callable[[str, Change[Any, Any]], None]


class Informers:
    def __init__(
        self, kube: KubePort, state: ClusterState, on_change: ChangeHandler, *, gap_s: float, resync_s: float
    ) -> None:
        self.kube = kube
        self.on_change = on_change
        self.gap_s = gap_s
        self.resync_s = resync_s
        self.stores: dict[str, Store[Any, Any]] = {
            "namespaces": state.namespaces,
            "serviceaccounts": state.service_accounts,
            "securitygrouppolicies": state.policies,
            "nodes": state.nodes,
            "nodenetworkpools": state.nnps,
            "podnetworkallocations": state.pnas,
            "pods": state.pods,
        }
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._last: dict[str, float] = {}
        self.live = False  # after the first full list: kopf's listings are relists from then on

    def on_event(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        change = self.stores[kind].apply_event(event_type, body)
        if change is not None:
            self.on_change(kind, change)
        if event_type is None and self.live:
            for other in KINDS:
                self.schedule(other)

    async def list_all(self) -> None:
        for kind in KINDS:
            await self.relist(kind)
        self.live = True

    async def relist(self, kind: str) -> None:
        """List the kind and make its cache exactly what the API server has."""
        self._last[kind] = asyncio.get_running_loop().time()
        store = self.stores[kind]
        listed: set[Any] = set()
        version = ""
        try:
            async for items, page_version in self.kube.pages(REFS[kind]):  # a page of bodies at a time
                version = page_version
                for body in items:
                    change = store.upsert_listed(body, listed)
                    if change is not None:
                        self.on_change(kind, change)
        except NotFound:
            if kind != "securitygrouppolicies":
                raise
            version = ""  # the SecurityGroupPolicy CRD is not installed: no pod gets groups
        for change in store.finish_list(listed, version):
            self.on_change(kind, change)

    def schedule(self, kind: str) -> None:
        if kind in self._pending and not self._pending[kind].done():
            return
        loop = asyncio.get_running_loop()
        wait = max(0.0, self._last.get(kind, 0.0) + self.gap_s - loop.time())

        async def later() -> None:
            await asyncio.sleep(wait)
            try:
                await self.relist(kind)
            except KubeError as error:
                logger.warning("relisting %s failed (%s); the next resync lists it again", kind, error)

        self._pending[kind] = loop.create_task(later(), name=f"relist-{kind}")

    async def resync_forever(self) -> None:
        while True:
            await asyncio.sleep(self.resync_s)
            for kind in KINDS:
                try:
                    await self.relist(kind)
                except KubeError as error:
                    logger.warning("resync of %s failed (%s); retried at the next resync", kind, error)

    async def stop(self) -> None:
        for task in self._pending.values():
            task.cancel()
        for task in self._pending.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
