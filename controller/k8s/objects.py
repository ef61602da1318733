"""The slices of Kubernetes objects the controller reads, as frozen models built from watch and list bodies.

The caches keep these instead of whole objects: a pod in an unmanaged namespace costs a few hundred
bytes, and every reconciler reads the same typed fields. `from_k8s` never raises on a body the API
server accepted; what cannot be read is kept as `problem` so a reconciler can report it.

They are slotted, frozen pydantic dataclasses rather than models: a model carries a `__dict__` and a
fields-set per instance (about 1.4 KiB for a pod), which 10,000 cached pods would pay for nothing.
Strings that repeat across objects (namespaces, node names, label keys and values, status keys and
states) are interned: a watch body's JSON gives each object its own copies.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import zlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SkipValidation
from pydantic.dataclasses import dataclass

from controller.core.allocation_model import AllocationMode
from controller.core.pod_selection import TERMINAL_PHASES, SecurityGroupPolicy

JsonObject = dict[str, Any]
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
_PROVIDER_ID = re.compile(r"^aws:///(?P<zone>[a-z0-9-]+)/(?P<instance>i-[0-9a-f]{8,17})$")


VIEW = ConfigDict(extra="forbid")
_intern = sys.intern
# Status values that are unique per object (addresses, ids, times, messages) are not interned.
_UNIQUE_VALUES = frozenset({"ip", "eniId", "macAddress", "message", "lastTransitionTime", "nextAttemptTime"})


def compact(value: Any, key: str = "") -> Any:
    """A JSON value without nulls (a merge patch's nulls are absent fields), keys and repeating strings
    interned: how the caches keep statuses and specs."""
    if isinstance(value, Mapping):
        return {_intern(str(k)): compact(v, str(k)) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [compact(v, key) for v in value]
    if isinstance(value, str) and key not in _UNIQUE_VALUES and len(value) <= 64:
        return _intern(value)
    return value


@dataclass(frozen=True, slots=True, kw_only=True, config=VIEW)
class _View:
    uid: str = ""
    resource_version: str = ""


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = body.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _identity(meta: Mapping[str, Any], *, namespaced: bool = True) -> dict[str, str]:
    """name, uid, resourceVersion (and namespace): the fields every view keeps."""
    fields = {
        "name": str(meta.get("name") or ""),
        "uid": str(meta.get("uid") or ""),
        "resource_version": str(meta.get("resourceVersion") or ""),
    }
    if namespaced:
        fields["namespace"] = str(meta.get("namespace") or "")
    return fields


# Built by `_labels` (strings checked there): validation would copy the mapping and lose the sharing.
Labels = SkipValidation[Mapping[str, str]]
_EMPTY: Mapping[str, str] = MappingProxyType({})


@functools.lru_cache(maxsize=4096)
def _shared_labels(items: tuple[tuple[str, str], ...]) -> Mapping[str, str]:
    return MappingProxyType(dict(items))


def _labels(meta: Mapping[str, Any]) -> Mapping[str, str]:
    """Pods of one workload carry the same labels: they share one read-only mapping."""
    labels = meta.get("labels") or {}
    if not isinstance(labels, Mapping) or not labels:
        return _EMPTY
    return _shared_labels(tuple((_intern(str(k)), _intern(str(v))) for k, v in labels.items()))


@functools.lru_cache(maxsize=256)
def _shared_finalizers(names: tuple[str, ...]) -> tuple[str, ...]:
    return names


def _finalizers(meta: Mapping[str, Any]) -> tuple[str, ...]:
    """Objects of a kind carry the same finalizers: they share one tuple of them."""
    names = meta.get("finalizers") or ()
    return _shared_finalizers(tuple(_intern(str(f)) for f in names)) if names else ()


# Built by `_finalizers` (strings checked there): validation would copy the tuple and lose the sharing.
Finalizers = SkipValidation[tuple[str, ...]]


@dataclass(frozen=True, slots=True, kw_only=True, config=VIEW)
class PodView(_View):
    namespace: str
    name: str
    node_name: str = ""
    host_network: bool = False
    phase: str = ""
    deleting: bool = False
    labels: Labels = Field(default_factory=lambda: _EMPTY)
    service_account: str = "default"

    @classmethod
    def from_k8s(
        cls, body: Mapping[str, Any], pnas: Callable[[tuple[str, str]], PnaView | None] | None = None
    ) -> PodView:
        """`pnas` looks up the cached PNA of a pod: the pod then keeps that PNA's copies of its name and
        uid instead of its own (a body's JSON gives every object fresh strings)."""
        meta = _meta(body)
        spec = body.get("spec") or {}
        status = body.get("status") or {}
        namespace = _intern(str(meta.get("namespace") or ""))
        name = str(meta.get("name") or "")
        uid = str(meta.get("uid") or "")
        pna = pnas((namespace, name)) if pnas is not None else None
        if pna is not None and pna.spec.pod_uid == uid and pna.spec.pod_name == name:
            name, uid = pna.spec.pod_name, pna.spec.pod_uid
        return cls(
            namespace=namespace,
            name=name,
            uid=uid,
            resource_version=str(meta.get("resourceVersion") or ""),
            node_name=_intern(str(spec.get("nodeName") or "")),
            host_network=bool(spec.get("hostNetwork", False)),
            phase=_intern(str(status.get("phase") or "")),
            deleting=meta.get("deletionTimestamp") is not None,
            labels=_labels(meta),
            service_account=_intern(
                str(spec.get("serviceAccountName") or spec.get("serviceAccount") or "default")
            ),
        )

    @property
    def terminal(self) -> bool:
        """Succeeded or Failed: its containers are gone for good, so is its need for an address."""
        return self.phase in TERMINAL_PHASES


@dataclass(frozen=True, slots=True, kw_only=True, config=VIEW)
class NamespaceView(_View):
    name: str
    labels: Labels = Field(default_factory=lambda: _EMPTY)

    @classmethod
    def from_k8s(cls, body: Mapping[str, Any]) -> NamespaceView:
        meta = _meta(body)
        return cls(**_identity(meta, namespaced=False), labels=_labels(meta))


@dataclass(frozen=True, slots=True, kw_only=True, config=VIEW)
class ServiceAccountView(_View):
    namespace: str
    name: str
    labels: Labels = Field(default_factory=lambda: _EMPTY)

    @classmethod
    def from_k8s(cls, body: Mapping[str, Any]) -> ServiceAccountView:
        meta = _meta(body)
        return cls(**_identity(meta), labels=_labels(meta))


@dataclass(frozen=True, slots=True, kw_only=True, config=VIEW)
class PolicyView(_View):
    namespace: str
    name: str
    policy: SecurityGroupPolicy

    @classmethod
    def from_k8s(cls, body: Mapping[str, Any]) -> PolicyView:
        meta = _meta(body)
        return cls(**_identity(meta), policy=SecurityGroupPolicy.from_k8s(body))


class ProviderId(BaseModel):
    model_config = ConfigDict(frozen=True)

    zone: str
    instance_id: str


def parse_provider_id(provider_id: str) -> ProviderId | None:
    """`aws:///us-west-2a/i-0123456789abcdef0` -> zone and instance id; None for anything else."""
    match = _PROVIDER_ID.match(provider_id.strip())
    return None if match is None else ProviderId(zone=match["zone"], instance_id=match["instance"])


@dataclass(frozen=True, slots=True, kw_only=True, config=VIEW)
class NodeView(_View):
    name: str
    provider_id: str = ""
    instance_type: str = ""
    deleting: bool = False

    @classmethod
    def from_k8s(cls, body: Mapping[str, Any]) -> NodeView:
        meta = _meta(body)
        labels = _labels(meta)
        return cls(
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            provider_id=str((body.get("spec") or {}).get("providerID") or ""),
            instance_type=next((labels[k] for k in INSTANCE_TYPE_LABELS if labels.get(k)), ""),
            deleting=meta.get("deletionTimestamp") is not None,
        )

    @property
    def instance_id(self) -> str | None:
        parsed = parse_provider_id(self.provider_id)
        return parsed.instance_id if parsed else None


@dataclass(frozen=True, slots=True, kw_only=True, config=VIEW)
class PnaSpec:
    pod_name: str
    pod_uid: str
    node_name: str
    mode: AllocationMode
    security_group_ids: tuple[str, ...] = ()

    def to_k8s(self) -> JsonObject:
        return {
            "podName": self.pod_name,
            "podUID": self.pod_uid,
            "nodeName": self.node_name,
            "mode": self.mode.value,
            "securityGroupIds": list(self.security_group_ids),
        }


def _status_dictionary() -> bytes:
    """What a PNA status's text shares with every other: its keys, states, condition types and the shape
    of its values. Deflate starts from it (a preset dictionary), so a packed status keeps only what is
    its own (about 110 bytes instead of 340 for an Allocated one); anything else still packs, only less."""
    states = "Pending Allocating Retrying Failed Releasing Released Invalid CapacityUnavailable"
    message = "PrefixIP 10.0.0.0 on eni-00000000000000000"
    condition = (
        '{"type":"%s","status":"True","observedGeneration":1,"lastTransitionTime":"2026-01-01T00:00:00Z",'
        f'"reason":"Allocated","message":"{message}"}}'
    )
    types = ("ResourcesAssigned", "CapacityAvailable", "CloudAPIAvailable", "ConfigurationValid", "Ready")
    allocated = (
        '{"state":"Allocated","reason":"Allocated",'
        f'"message":"{message}","attempts":1,"releaseAttempts":0,'
        '"lastTransitionTime":"2026-01-01T00:00:00Z","observedGeneration":1,"ip":"10.0.0.0",'
        '"eniId":"eni-00000000000000000","prefix":"10.0.0.0/28","macAddress":"02:00:00:00:00:00",'
        '"subnetCidr":"10.0.0.0/16","securityGroupIds":[],"conditions":['
        + ",".join(condition % t for t in types)
        + "]}"
    )
    others = '"nextAttemptTime":"vlanId":"lastError":"False","SecondaryIP","BranchENI","SharedENI"'
    return f"{states} {others}{allocated}".encode()


_ZDICT = _status_dictionary()
# Raw deflate (no header or checksum: the bytes never leave the process) with an 8 KiB window, which
# holds the dictionary and a status, and a small hash table: a packer costs microseconds to set up.
_WBITS, _LEVEL, _MEM_LEVEL = -13, 6, 4


def pack_json(value: Mapping[str, Any]) -> bytes:
    """A JSON object (without its nulls) as deflated text: how the PNA cache keeps statuses."""
    if not value:
        return b""
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zdict=_ZDICT)
    return packer.compress(json.dumps(compact(value), separators=(",", ":")).encode()) + packer.flush()


def unpack_json(packed: bytes) -> JsonObject:
    loaded = json.loads(zlib.decompressobj(_WBITS, zdict=_ZDICT).decompress(packed)) if packed else {}
    return loaded if isinstance(loaded, dict) else {}


@dataclass(frozen=True, slots=True, kw_only=True, config=VIEW)
class PnaView(_View):
    """A PNA as the cache keeps it. The status is read once per pass but kept for every pod: as a dict
    with its four conditions it costs about 2.6 KiB, deflated 0.35 (`status` unpacks it)."""

    namespace: str
    name: str
    generation: int = 1
    deleting: bool = False
    finalizers: Finalizers = ()
    spec: PnaSpec
    state: str = ""  # status.state, kept apart: the runtime counts the PNAs that wait on EC2 by it
    packed_status: bytes = b""

    @classmethod
    def from_k8s(
        cls, body: Mapping[str, Any], pods: Callable[[tuple[str, str]], PodView | None] | None = None
    ) -> PnaView:
        """`pods` looks up a cached pod: a PNA of that pod keeps the pod's copies of its name and uid."""
        meta = _meta(body)
        spec = body.get("spec") or {}
        status = body.get("status")
        namespace = _intern(str(meta.get("namespace") or ""))
        name = str(meta.get("name") or "")
        pod_name = str(spec.get("podName") or "")
        pod_uid = str(spec.get("podUID") or "")
        pod = pods((namespace, pod_name)) if pods is not None else None
        if pod is not None and pod.uid == pod_uid:
            pod_name, pod_uid = pod.name, pod.uid
        return cls(
            namespace=namespace,
            name=pod_name if name == pod_name else name,
            uid=str(meta.get("uid") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            generation=int(meta.get("generation") or 1),
            deleting=meta.get("deletionTimestamp") is not None,
            finalizers=_finalizers(meta),
            spec=PnaSpec(
                pod_name=pod_name,
                pod_uid=pod_uid,
                node_name=_intern(str(spec.get("nodeName") or "")),
                mode=AllocationMode(spec.get("mode") or AllocationMode.SECONDARY_IP.value),
                security_group_ids=tuple(_intern(str(g)) for g in spec.get("securityGroupIds") or ()),
            ),
            state=_intern(str(status.get("state") or "")) if isinstance(status, Mapping) else "",
            packed_status=pack_json(status) if isinstance(status, Mapping) else b"",
        )

    @property
    def status(self) -> JsonObject:
        """The status as the server holds it, without nulls (a fresh dict: changing it changes nothing)."""
        return unpack_json(self.packed_status)

    @property
    def allocation_key(self) -> str:
        """Stable for the pod's life: the pool's holdings are keyed by it, not by the PNA's own uid."""
        return allocation_key(self.namespace, self.spec.pod_name, self.spec.pod_uid)


def allocation_key(namespace: str, pod_name: str, pod_uid: str) -> str:
    return f"{namespace}/{pod_name}/{pod_uid}"


def split_allocation_key(key: str) -> tuple[str, str, str] | None:
    parts = key.split("/")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 else None


@dataclass(frozen=True, slots=True, kw_only=True, config=VIEW)
class NnpView(_View):
    name: str
    deleting: bool = False
    finalizers: Finalizers = ()
    spec: JsonObject = Field(default_factory=dict)
    status: JsonObject = Field(default_factory=dict)

    @classmethod
    def from_k8s(cls, body: Mapping[str, Any]) -> NnpView:
        meta = _meta(body)
        status = body.get("status")
        return cls(
            name=str(meta.get("name") or ""),
            uid=str(meta.get("uid") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
            deleting=meta.get("deletionTimestamp") is not None,
            finalizers=_finalizers(meta),
            spec=compact(body.get("spec") or {}),
            status=compact(status) if isinstance(status, Mapping) else {},
        )

    @property
    def instance_id(self) -> str:
        return str(self.spec.get("instanceId") or "")
