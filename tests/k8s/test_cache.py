"""The caches: resourceVersions order the writes, and a relist corrects what a watch missed."""

from __future__ import annotations

import json
import zlib
from typing import Any

from controller.k8s.cache import ClusterState, Store, newer_or_same
from controller.k8s.objects import PnaView, PodView, pack_json, unpack_json


def pod(name: str, rv: int, uid: str = "u1", node: str = "n1") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": str(rv)},
        "spec": {"nodeName": node},
    }


def store() -> Store[tuple[str, str], PodView]:
    return Store(PodView.from_k8s, lambda v: (v.namespace, v.name), namespaced=True)


def replace(s: Store[tuple[str, str], PodView], bodies: list[dict[str, Any]], version: str) -> list[Any]:
    """A full list read into the store, as the informers read one page after another."""
    listed: set[tuple[str, str]] = set()
    changes = [c for c in (s.upsert_listed(b, listed) for b in bodies) if c is not None]
    return changes + s.finish_list(listed, version)


def test_resource_versions_compare_as_integers_when_they_are() -> None:
    assert newer_or_same("10", "9") and not newer_or_same("9", "10") and newer_or_same("7", "7")
    assert not newer_or_same("abc", "abd") and newer_or_same("abc", "abc")


def test_an_older_event_or_the_echo_of_our_own_write_changes_nothing() -> None:
    s = store()
    assert s.apply_event("ADDED", pod("a", 5)) is not None
    assert s.apply_event("MODIFIED", pod("a", 5)) is None  # echo
    assert s.apply_event("MODIFIED", pod("a", 4)) is None  # late
    assert s.get(("ns", "a")) is not None and s.get(("ns", "a")).resource_version == "5"  # type: ignore[union-attr]


def test_the_echo_of_a_write_the_cache_took_is_not_even_parsed() -> None:
    parsed: list[str] = []

    def parse(body: Any) -> PodView:
        parsed.append(body["metadata"]["resourceVersion"])
        return PodView.from_k8s(body)

    s = Store(parse, lambda v: (v.namespace, v.name), namespaced=True)
    s.upsert(PodView.from_k8s(pod("a", 5)))  # the answer to our own write
    assert s.apply_event("MODIFIED", pod("a", 5)) is None
    assert s.apply_event("MODIFIED", pod("a", 4)) is None
    assert parsed == []
    assert s.apply_event("MODIFIED", pod("a", 6)) is not None  # someone else's write is taken
    assert s.apply_event("DELETED", pod("a", 7)) is not None
    assert parsed == ["6", "7"]


def test_a_late_deletion_of_the_old_object_does_not_remove_its_successor() -> None:
    s = store()
    s.apply_event("ADDED", pod("a", 10, uid="new"))
    assert s.apply_event("DELETED", pod("a", 9, uid="old")) is None
    assert s.get(("ns", "a")) is not None


def test_a_relist_drops_what_was_deleted_in_a_watch_gap_and_keeps_what_is_newer() -> None:
    s = store()
    for name, rv in (("a", 1), ("b", 2), ("c", 3)):
        s.apply_event("ADDED", pod(name, rv))
    s.apply_event("ADDED", pod("late", 12))  # created after the list was taken
    changes = replace(s, [pod("a", 1), pod("c", 3)], "10")
    assert {c.key for c in changes if c.new is None} == {("ns", "b")}
    assert sorted(k[1] for k in s.all_keys()) == ["a", "c", "late"]
    assert s.synced


def test_a_recent_deletion_is_not_brought_back_by_an_older_list() -> None:
    s = store()
    s.apply_event("ADDED", pod("a", 5))
    s.apply_event("DELETED", pod("a", 8))
    replace(s, [pod("a", 5)], "6")  # a list taken before the deletion
    assert s.get(("ns", "a")) is None


def test_the_index_of_pnas_by_node_follows_changes() -> None:
    state = ClusterState()
    body = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "x", "resourceVersion": "1"},
        "spec": {"podName": "p", "podUID": "u", "nodeName": "n1", "mode": "SecondaryIP"},
    }
    state.pnas.apply_event("ADDED", body)
    assert [p.name for p in state.pnas_on("n1")] == ["p"]
    state.pnas.apply_event("DELETED", {**body, "metadata": {**body["metadata"], "resourceVersion": "2"}})
    assert state.pnas_on("n1") == []


def test_pods_of_one_workload_share_one_read_only_labels_mapping() -> None:
    a, b = pod("a", 1), pod("b", 2)
    for body in (a, b):
        body["metadata"]["labels"] = {"app": "web", "tier": "front"}
    first, second = PodView.from_k8s(a), PodView.from_k8s(b)
    assert first.labels is second.labels and dict(first.labels) == {"app": "web", "tier": "front"}
    try:
        first.labels["app"] = "other"  # type: ignore[index]
    except TypeError:
        pass
    else:
        raise AssertionError("a shared labels mapping could be changed")
    assert PodView.from_k8s(pod("c", 3)).labels == {}


def allocated_status(ip: str, eni: str) -> dict[str, Any]:
    message = f"PrefixIP {ip} on {eni}"
    condition = {"status": "True", "observedGeneration": 1, "reason": "Allocated", "message": message}
    return {
        "state": "Allocated",
        "reason": "Allocated",
        "message": message,
        "attempts": 1,
        "lastTransitionTime": "2026-12-02T14:06:30Z",
        "ip": ip,
        "eniId": eni,
        "prefix": f"{ip}/28",
        "securityGroupIds": [],
        "conditions": [{"type": t, **condition} for t in ("ResourcesAssigned", "Ready")],
    }


def test_a_packed_status_unpacks_to_the_same_status_without_its_nulls() -> None:
    status = allocated_status("10.0.62.128", "eni-9a0518b84e11a78d1")
    assert unpack_json(pack_json({**status, "vlanId": None})) == status
    failed = {"state": "Failed", "lastError": {"code": "X", "message": "y" * 20_000}}  # past the window
    assert unpack_json(pack_json(failed)) == failed
    assert pack_json({}) == b"" and unpack_json(b"") == {}
    # The preset dictionary holds what every status repeats: a status packs smaller than deflate alone.
    assert len(pack_json(status)) < len(zlib.compress(json.dumps(status).encode(), 9))


def test_a_pod_and_its_pna_keep_one_copy_of_the_pods_name_and_uid() -> None:
    state = ClusterState()
    state.pods.apply_event("ADDED", pod("web-1", 1, uid="pod-uid"))
    pna = {
        "metadata": {"name": "web-1", "namespace": "ns", "uid": "pna-uid", "resourceVersion": "2"},
        "spec": {"podName": "web-1", "podUID": "pod-uid", "nodeName": "n1", "mode": "SecondaryIP"},
    }
    state.pnas.apply_event("ADDED", json.loads(json.dumps(pna)))  # fresh strings, as from the wire
    cached_pod, cached_pna = state.pods.get(("ns", "web-1")), state.pnas.get(("ns", "web-1"))
    assert cached_pod is not None and cached_pna is not None
    assert cached_pna.spec.pod_uid is cached_pod.uid and cached_pna.name is cached_pod.name
    assert cached_pna.spec.pod_name is cached_pod.name and cached_pna.uid == "pna-uid"
    # Read again (a relist that finds the pod changed), the pod takes its PNA's copies.
    state.pods.apply_event("MODIFIED", json.loads(json.dumps(pod("web-1", 3, uid="pod-uid"))))
    again = state.pods.get(("ns", "web-1"))
    assert again is not None and again.resource_version == "3" and again.uid is cached_pna.spec.pod_uid
    # Another pod of the same name (a new uid) shares nothing with the old PNA.
    state.pods.apply_event("MODIFIED", pod("web-1", 4, uid="other-uid"))
    other = state.pods.get(("ns", "web-1"))
    assert other is not None and other.uid == "other-uid"


def test_pnas_share_one_tuple_of_their_finalizers() -> None:
    def body(name: str) -> dict[str, Any]:
        meta = {"name": name, "namespace": "ns", "finalizers": ["netalloc.dev/release"]}
        return json.loads(json.dumps({"metadata": meta, "spec": {"podName": name, "nodeName": "n1"}}))

    first, second = PnaView.from_k8s(body("a")), PnaView.from_k8s(body("b"))
    assert first.finalizers == ("netalloc.dev/release",) and first.finalizers is second.finalizers
