"""Informers: a relist of any kind (kopf's type-None events) lists every kind again, at most once per gap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from controller.k8s.cache import ClusterState
from controller.k8s.informers import KINDS, Informers
from controller.k8s.kube_api import NotFound
from controller.k8s.resources import ResourceRef


class Lists:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.items: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}

    async def list(self, ref: ResourceRef, namespace: str | None = None) -> tuple[list[dict[str, Any]], str]:
        self.calls.append(ref.plural)
        if ref.plural == "securitygrouppolicies":
            raise NotFound(404, "NotFound", "the CRD is not installed")
        return self.items[ref.plural], "100"

    async def pages(
        self, ref: ResourceRef, namespace: str | None = None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        """One object per page, as a paged list with limit=1 would give them."""
        items, version = await self.list(ref, namespace)
        for item in items:
            yield [item], version
            await asyncio.sleep(0)  # other events may come between pages
        if not items:
            yield [], version


def pod(name: str, rv: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "uid": name, "resourceVersion": rv}, "spec": {}}


async def test_a_relist_of_one_kind_lists_every_kind_once_and_drops_what_is_gone() -> None:
    lists = Lists()
    state = ClusterState()
    changes: list[tuple[str, Any]] = []
    informers = Informers(
        lists, state, lambda kind, change: changes.append((kind, change.key)), gap_s=0.05, resync_s=3600
    )  # type: ignore[arg-type]
    lists.items["pods"] = [pod("a", "5"), pod("b", "6")]
    await informers.list_all()
    assert len(state.pods) == 2 and state.policies.synced  # a missing SGP CRD counts as none
    lists.calls.clear()
    lists.items["pods"] = [pod("a", "5")]  # b was deleted during a watch gap
    informers.on_event("namespaces", None, {"metadata": {"name": "ns", "uid": "n", "resourceVersion": "1"}})
    informers.on_event("nodes", None, {"metadata": {"name": "n1", "uid": "x", "resourceVersion": "2"}})
    await asyncio.sleep(0.2)
    assert sorted(lists.calls) == sorted(KINDS)  # every kind once, though two kinds relisted
    assert state.pods.get(("ns", "b")) is None
    assert ("pods", ("ns", "b")) in changes


async def test_an_object_created_while_a_paged_list_is_read_is_kept() -> None:
    lists = Lists()
    state = ClusterState()
    informers = Informers(lists, state, lambda kind, change: None, gap_s=0.05, resync_s=3600)  # type: ignore[arg-type]
    lists.items["pods"] = [pod("a", "5"), pod("b", "6"), pod("c", "7")]
    relist = asyncio.create_task(informers.relist("pods"))
    await asyncio.sleep(0)
    informers.on_event("pods", "ADDED", pod("late", "150"))  # newer than the list (100): not in it
    await relist
    assert sorted(k[1] for k in state.pods.all_keys()) == ["a", "b", "c", "late"]
    lists.items["pods"] = [pod("a", "5")]
    await informers.relist("pods")
    assert sorted(k[1] for k in state.pods.all_keys()) == ["a", "late"]
