"""Reading a pod's PodNetworkAllocation, and waiting (bounded) until the controller has allocated it.

A pod's sandbox is often created before the controller has finished: ADD waits on a watch rather than
failing at once, but never past `allocationTimeoutSeconds` (default 60 s, well under kubelet's ~4 min
sandbox limit), so kubelet retries with a message that says what the controller is waiting for.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from controller.cni import errors
from controller.cni.config import CniEnv, NetConf
from controller.cni.errors import CniError
from controller.cni.kube import KubeClient
from controller.core.pod_selection import LabelSelector

PNA_PATH = "/apis/netalloc.dev/v1alpha1/namespaces/{namespace}/podnetworkallocations"
NODE_LABEL = "netalloc.dev/node"  # set by the controller on every PNA (controller/k8s/pna_mapping.py)
Mode = Literal["BranchENI", "PrefixIP", "SecondaryIP", "SharedENI"]  # SharedENI is wired as SecondaryIP is


class PnaSpec(BaseModel):
    model_config = ConfigDict(extra="ignore")

    podName: str
    podUID: str
    nodeName: str
    mode: Mode


class PnaStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: str = ""
    reason: str = ""
    message: str = ""
    ip: str | None = None
    eniId: str | None = None
    vlanId: int | None = Field(default=None, ge=1, le=4094)
    prefix: str | None = None
    macAddress: str | None = None
    subnetCidr: str | None = None
    securityGroupIds: list[str] = Field(default_factory=list)


class Pna(BaseModel):
    """A PNA as the plugin needs it (extra fields ignored: the CRD may grow)."""

    model_config = ConfigDict(extra="ignore")

    namespace: str
    name: str
    resource_version: str
    spec: PnaSpec
    status: PnaStatus = Field(default_factory=PnaStatus)

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> Pna:
        metadata = obj.get("metadata") or {}
        try:
            return cls(
                namespace=metadata.get("namespace", ""),
                name=metadata.get("name", ""),
                resource_version=str(metadata.get("resourceVersion", "")),
                spec=obj.get("spec") or {},
                status=obj.get("status") or {},
            )
        except ValidationError as error:
            where = f"{metadata.get('namespace')}/{metadata.get('name')}"
            raise CniError(
                errors.API_FAILURE, f"PodNetworkAllocation {where} cannot be read: {error}"
            ) from error

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def describe(self) -> str:
        """State, reason and message, as the timeout error quotes them."""
        status = self.status
        text = " ".join(part for part in (status.state or "NoStatus", status.reason) if part)
        return f"{text}: {status.message}" if status.message else text

    def checked(self) -> Pna:
        """An Allocated PNA with what its mode needs to be wired, or a CNI error naming what is missing."""
        status = self.status
        missing = [
            name for name, value in (("ip", status.ip), ("subnetCidr", status.subnetCidr)) if not value
        ]
        if self.spec.mode == "BranchENI" and not status.vlanId:
            missing.append("vlanId")
        if missing:
            raise CniError(errors.API_FAILURE, f"PNA {self.key} is Allocated but has no {', '.join(missing)}")
        try:
            ipaddress.IPv4Address(status.ip)
            ipaddress.IPv4Network(status.subnetCidr, strict=False)
        except ValueError as error:
            raise CniError(errors.API_FAILURE, f"PNA {self.key} has an unusable address: {error}") from error
        return self


def verdict(pna: Pna, pod_uid: str) -> Pna | None:
    """The PNA if it is ready for this pod; None to keep waiting; raises when waiting cannot help."""
    if pod_uid and pna.spec.podUID != pod_uid:
        return None  # a PNA of an earlier pod of this name: the controller replaces it
    if pna.status.state == "Allocated":
        return pna.checked()
    if pna.status.state == "Failed":
        raise CniError(errors.ALLOCATION_FAILED, f"PNA {pna.key} is Failed: {pna.describe()}")
    return None


def _timeout_error(namespace: str, name: str, last: Pna | None, pod_uid: str, waited: float) -> CniError:
    if last is None:
        return CniError(
            errors.TRY_AGAIN_LATER,
            f"no PodNetworkAllocation {namespace}/{name} after {waited:g}s: its namespace is managed by "
            "netalloc; is the controller running?",
        )
    if pod_uid and last.spec.podUID != pod_uid:
        return CniError(
            errors.POD_UID_MISMATCH,
            f"PNA {last.key} belongs to pod uid {last.spec.podUID}, not {pod_uid} "
            f"(still so after {waited:g}s)",
        )
    return CniError(
        errors.TRY_AGAIN_LATER, f"PNA {last.key} not Allocated after {waited:g}s: {last.describe()}"
    )


def find_allocation(
    client: KubeClient, conf: NetConf, env: CniEnv, *, clock: Callable[[], float] = time.monotonic
) -> Pna | None:
    """The pod's Allocated PNA, or None when netalloc does not manage the pod (no PNA, namespace
    unmanaged). Waits on a watch, never past the configured bound."""
    namespace, name, uid = env.pod_namespace, env.pod_name, env.pod_uid
    if not namespace or not name:
        raise CniError(errors.INVALID_ENVIRONMENT, "CNI_ARGS has no K8S_POD_NAMESPACE and K8S_POD_NAME")
    path = PNA_PATH.format(namespace=namespace)
    query = {"fieldSelector": f"metadata.name={name}"}
    if conf.node_name:
        query["labelSelector"] = f"{NODE_LABEL}={conf.node_name}"
    start = clock()
    deadline = start + conf.allocation_timeout_s
    last: Pna | None = None
    first = True
    while True:
        listing = client.get(path, **query) or {}
        items = listing.get("items") or []
        last = Pna.from_object(items[0]) if items else None
        if last is not None:
            ready = verdict(last, uid)
            if ready is not None:
                return ready
        elif first and not _managed_namespace(client, namespace, conf.namespace_selector):
            return None
        first = False
        version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
        remaining = deadline - clock()
        if remaining <= 0:
            raise _timeout_error(namespace, name, last, uid, conf.allocation_timeout_s)
        for event in client.watch(path, timeout_s=remaining, resourceVersion=version, **query):
            kind = event.get("type")
            if kind == "ERROR":
                break  # e.g. 410 Gone inside the stream: list again
            obj = event.get("object") or {}
            if kind in ("ADDED", "MODIFIED"):
                last = Pna.from_object(obj)
                ready = verdict(last, uid)
                if ready is not None:
                    return ready
            elif kind == "DELETED":
                last = None
            if clock() >= deadline:
                break
        if clock() >= deadline:
            raise _timeout_error(namespace, name, last, uid, conf.allocation_timeout_s)


def _managed_namespace(client: KubeClient, namespace: str, selector: str) -> bool:
    obj = client.get(f"/api/v1/namespaces/{namespace}")
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return obj is not None and LabelSelector.parse(selector).matches(labels)
