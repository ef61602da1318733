"""Caches of watched objects that a relist can correct.

A watch can miss deletions: after a 410 Gone kopf lists again and replays what exists, but says
nothing of what went away in the gap. `Store.upsert_listed` takes a full list page by page and
`finish_list` its resourceVersion, as client-go's reflector does: objects missing from the list that
the list is newer than are dropped.
Resource versions order the writes, so an event older than what the store holds (the echo of a write
whose answer was applied first, or a late event after a relist) changes nothing, and a recent
deletion is remembered (a tombstone) so a stale list cannot bring the object back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from controller.k8s.objects import (
    NamespaceView,
    NnpView,
    NodeView,
    PnaView,
    PodView,
    PolicyView,
    ServiceAccountView,
)

TOMBSTONE_LIMIT = 50_000


class _Versioned(Protocol):
    @property
    def uid(self) -> str: ...

    @property
    def resource_version(self) -> str: ...


V = TypeVar("V", bound=_Versioned)
K = TypeVar("K", bound=Hashable)


def newer_or_same(a: str, b: str) -> bool:
    """Is resourceVersion `a` at least `b`? Versions are opaque, but etcd's are integers; compare those."""
    if a.isdigit() and b.isdigit():
        return int(a) >= int(b)
    return a == b


@dataclass(frozen=True)
class Change(Generic[K, V]):
    key: K
    old: V | None
    new: V | None


class Store(Generic[K, V]):
    """Objects of one kind by key. Not thread-safe: the controller's loop owns it."""

    def __init__(
        self, parse: Callable[[Mapping[str, Any]], V], key_of: Callable[[V], K], *, namespaced: bool
    ) -> None:
        self._parse = parse
        self._key_of = key_of
        self._namespaced = namespaced  # keys are (namespace, name), else the name
        self._items: dict[K, V] = {}
        self._tombstones: OrderedDict[K, str] = OrderedDict()
        # UIDs whose DELETED event the watch delivered: those objects are gone for good (a UID is never
        # used again), so a reconciler need not ask the API server again. A list that no longer shows
        # an object does not count: a list may be served from a cache older than the object.
        self._deleted_uids: OrderedDict[str, None] = OrderedDict()
        self.listeners: list[Callable[[Change[K, V]], None]] = []
        self.synced = False

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[V]:
        return iter(list(self._items.values()))

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def all_keys(self) -> list[K]:
        return list(self._items)

    def key_of(self, view: V) -> K:
        return self._key_of(view)

    def parse(self, body: Mapping[str, Any]) -> V:
        return self._parse(body)

    def apply_event(self, event_type: str | None, body: Mapping[str, Any]) -> Change[K, V] | None:
        if event_type != "DELETED" and self._held_as_new(body):
            return None  # the echo of our own write, whose answer the cache already took: not even parsed
        view = self._parse(body)
        if event_type == "DELETED":
            if view.uid:
                self._deleted_uids[view.uid] = None
                while len(self._deleted_uids) > TOMBSTONE_LIMIT:
                    self._deleted_uids.popitem(last=False)
            return self.remove(self._key_of(view), view.resource_version)
        return self.upsert(view)

    def saw_deleted(self, uid: str) -> bool:
        """Did a watch say the object with this UID was deleted? (False when unknown: ask the server.)"""
        return bool(uid) and uid in self._deleted_uids

    def _raw_key(self, body: Mapping[str, Any]) -> Any:
        """The key of an unparsed body, or None when it has no name."""
        meta = body.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(name, str):
            return None
        return (meta.get("namespace"), name) if self._namespaced else name

    def _held_as_new(self, body: Mapping[str, Any]) -> bool:
        version = (body.get("metadata") or {}).get("resourceVersion")
        key = self._raw_key(body)
        if key is None or not isinstance(version, str) or not version:
            return False
        held = self._items.get(key)
        return held is not None and newer_or_same(held.resource_version, version)

    def upsert(self, view: V) -> Change[K, V] | None:
        """Store `view` unless what is held (or a recent deletion) is newer."""
        key = self._key_of(view)
        old = self._items.get(key)
        if old is not None and newer_or_same(old.resource_version, view.resource_version):
            return None  # what we hold is as new (an echo) or newer (a late event)
        deleted_at = self._tombstones.get(key)
        if old is None and deleted_at is not None and newer_or_same(deleted_at, view.resource_version):
            return None
        self._tombstones.pop(key, None)
        self._items[key] = view
        return self._notify(Change(key, old, view))

    def remove(self, key: K, resource_version: str = "") -> Change[K, V] | None:
        old = self._items.get(key)
        if old is not None and resource_version and not newer_or_same(resource_version, old.resource_version):
            return None  # a deletion older than what we hold: the object was created again since
        self._tombstones[key] = resource_version
        self._tombstones.move_to_end(key)
        while len(self._tombstones) > TOMBSTONE_LIMIT:
            self._tombstones.popitem(last=False)
        if old is None:
            return None
        del self._items[key]
        return self._notify(Change(key, old, None))

    def upsert_listed(self, body: Mapping[str, Any], listed: set[K]) -> Change[K, V] | None:
        """One object of a list being read (page by page); its key joins `listed`."""
        if self._held_as_new(body):  # unchanged since we last saw it: a resync parses nothing
            listed.add(self._raw_key(body))
            return None
        view = self._parse(body)
        listed.add(self._key_of(view))
        return self.upsert(view)

    def finish_list(self, listed: set[K], list_version: str) -> list[Change[K, V]]:
        """After the last page: drop what the list (taken at `list_version`) no longer has."""
        changes: list[Change[K, V]] = []
        for key in [k for k in self._items if k not in listed]:
            held = self._items[key]
            if not held.resource_version or newer_or_same(list_version, held.resource_version):
                change = self.remove(key)
                if change is not None:
                    changes.append(change)
        for key in [k for k, rv in self._tombstones.items() if newer_or_same(list_version, rv)]:
            del self._tombstones[key]
        self.synced = True
        return changes

    def _notify(self, change: Change[K, V]) -> Change[K, V]:
        for listener in self.listeners:
            listener(change)
        return change


NamespacedKey = tuple[str, str]


def _namespaced(view: PodView | PnaView | ServiceAccountView | PolicyView) -> NamespacedKey:
    return (view.namespace, view.name)


class ClusterState:
    """Everything the reconcilers read about the cluster, with the indexes they look things up by."""

    def __init__(self) -> None:
        # A pod and its PNA share the strings of the pod's name and uid (whichever was cached first).
        self.pods: Store[NamespacedKey, PodView] = Store(
            lambda body: PodView.from_k8s(body, self.pnas.get), _namespaced, namespaced=True
        )
        self.pnas: Store[NamespacedKey, PnaView] = Store(
            lambda body: PnaView.from_k8s(body, self.pods.get), _namespaced, namespaced=True
        )
        self.namespaces: Store[str, NamespaceView] = Store(
            NamespaceView.from_k8s, lambda v: v.name, namespaced=False
        )
        self.service_accounts: Store[NamespacedKey, ServiceAccountView] = Store(
            ServiceAccountView.from_k8s, _namespaced, namespaced=True
        )
        self.policies: Store[NamespacedKey, PolicyView] = Store(
            PolicyView.from_k8s, _namespaced, namespaced=True
        )
        self.nodes: Store[str, NodeView] = Store(NodeView.from_k8s, lambda v: v.name, namespaced=False)
        self.nnps: Store[str, NnpView] = Store(NnpView.from_k8s, lambda v: v.name, namespaced=False)
        self._pnas_by_node: dict[str, set[NamespacedKey]] = {}
        self._pods_by_namespace: dict[str, set[NamespacedKey]] = {}
        self.pnas.listeners.append(self._index_pna)
        self.pods.listeners.append(self._index_pod)

    def _index_pna(self, change: Change[NamespacedKey, PnaView]) -> None:
        if (
            change.old is not None
            and change.new is not None
            and change.old.spec.node_name == change.new.spec.node_name
        ):
            return  # the index keeps the key it has (a status write would swap in another copy of it)
        if change.old is not None:
            self._pnas_by_node.get(change.old.spec.node_name, set()).discard(change.key)
        if change.new is not None:
            self._pnas_by_node.setdefault(change.new.spec.node_name, set()).add(change.key)

    def _index_pod(self, change: Change[NamespacedKey, PodView]) -> None:
        if change.old is None and change.new is not None:
            self._pods_by_namespace.setdefault(change.key[0], set()).add(change.key)
        elif change.new is None:
            self._pods_by_namespace.get(change.key[0], set()).discard(change.key)

    def pnas_on(self, node_name: str) -> list[PnaView]:
        found = (self.pnas.get(key) for key in sorted(self._pnas_by_node.get(node_name, ())))
        return [pna for pna in found if pna is not None]

    def pod_keys_in(self, namespace: str) -> list[NamespacedKey]:
        return sorted(self._pods_by_namespace.get(namespace, ()))

    def policies_in(self, namespace: str) -> list[PolicyView]:
        return [p for p in self.policies if p.namespace == namespace]

    def service_account_labels(self, namespace: str, name: str) -> dict[str, str]:
        account = self.service_accounts.get((namespace, name))
        return dict(account.labels) if account is not None else {}

    @property
    def synced(self) -> bool:
        return all(
            store.synced
            for store in (
                self.pods,
                self.pnas,
                self.namespaces,
                self.service_accounts,
                self.policies,
                self.nodes,
                self.nnps,
            )
        )
