"""Informers: a relist of any kind (kopf's type-None events) lists every kind again, at most once per gap."""

from __future__ import annotations

import asyncio
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
