"""PodNetworkAllocation objects <-> the core's models. Field names follow crds/podnetworkallocations.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from controller.core.allocation_model import AllocationMode, AllocationRequest, AssignedResources
from controller.core.allocation_state import AllocationState, AllocationStatus, ErrorInfo
from controller.core.conditions import Condition, rfc3339
from controller.k8s.objects import JsonObject, PnaSpec, PnaView, PodView
from controller.k8s.resources import POD_NETWORK_ALLOCATION

RELEASE_FINALIZER = "netalloc.dev/release"
POD_LABEL = "netalloc.dev/pod"
NODE_LABEL = "netalloc.dev/node"


def new_pna(*, pod: PodView, spec: PnaSpec) -> JsonObject:
    """The PNA for a pod: owned by the pod, with netalloc's release finalizer set at create.

    The owner reference is informational (kubectl shows it; a cluster with garbage collection removes
    a PNA whose pod is gone): netalloc does not rely on it and deletes such PNAs itself.
    """
    return {
        "apiVersion": POD_NETWORK_ALLOCATION.api_version,
        "kind": POD_NETWORK_ALLOCATION.kind,
        "metadata": {
            "name": pod.name,
            "namespace": pod.namespace,
            "labels": {POD_LABEL: pod.name, NODE_LABEL: spec.node_name},
            "finalizers": [RELEASE_FINALIZER],
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod.name,
                    "uid": pod.uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": spec.to_k8s(),
    }


def request_from(pna: PnaView) -> AllocationRequest:
    return AllocationRequest(
        key=pna.allocation_key,
        node_name=pna.spec.node_name,
        mode=pna.spec.mode,
        security_group_ids=pna.spec.security_group_ids,
    )


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def status_to_k8s(status: AllocationStatus) -> JsonObject:
    """The status subresource body: a pure function of the status. Absent values are null, so a
    merge patch clears them."""
    resources = status.resources
    return {
        "state": status.state.value,
        "reason": status.reason,
        "message": status.message,
        "attempts": status.attempts,
        "releaseAttempts": status.release_attempts,
        "lastTransitionTime": rfc3339(status.last_transition_time),
        "nextAttemptTime": rfc3339(status.next_attempt_at) if status.next_attempt_at is not None else None,
        "observedGeneration": status.observed_generation,
        "ip": resources.ip if resources else None,
        "eniId": resources.eni_id if resources else None,
        "vlanId": resources.vlan_id if resources else None,
        "prefix": resources.prefix if resources else None,
        "macAddress": resources.mac_address if resources and resources.mac_address else None,
        "subnetCidr": resources.subnet_cidr if resources else None,
        "securityGroupIds": list(resources.security_group_ids) if resources else None,
        "lastError": status.last_error.model_dump(by_alias=True, mode="json") if status.last_error else None,
        "conditions": [c.model_dump(by_alias=True, mode="json") for c in status.conditions],
    }


def same_status(written: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Would writing `written` change `stored`? (Nulls in a merge patch are absent fields.)"""
    return {k: v for k, v in written.items() if v is not None} == {
        k: v for k, v in stored.items() if v is not None
    }


WAIT_STATES = frozenset({AllocationState.WAITING_FOR_CAPACITY.value, AllocationState.RETRYING.value})
# A retry passes through Allocating in memory (never written), so a steady wait's lastTransitionTime
# moves on every retry too; the stored one says when the steady wait began.
_COUNTERS = ("attempts", "nextAttemptTime", "lastTransitionTime")


def steady_wait(written: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Is `written` another retry of the wait `stored` records, with nothing new to tell?

    Once a wait's backoff is at its cap the message stops counting attempts (allocation_state), so two
    such statuses differ only in the attempt count and the times of this retry. Writing those on every
    retry cost a write a minute per waiting pod, forever; the status keeps the first steady retry's.
    """
    if written.get("state") not in WAIT_STATES:
        return False
    return same_status(
        {k: v for k, v in written.items() if k not in _COUNTERS},
        {k: v for k, v in stored.items() if k not in _COUNTERS},
    )


class StatusRead(BaseModel):
    """A PNA status as read back. Never silently None: an unreadable status keeps what it still says."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: AllocationStatus | None = None  # None: no status yet, or unreadable
    problem: str = ""  # why the status cannot be read ("" when it can, or when there is none)
    salvaged: AssignedResources | None = None  # the address an unreadable status still records

    @property
    def unreadable(self) -> bool:
        return bool(self.problem)

    @property
    def resources(self) -> AssignedResources | None:
        """What the PNA says its pod holds, readable or not: restored into the pool after a restart."""
        if self.status is not None:
            return self.status.resources
        return self.salvaged


def held_mode(raw: Mapping[str, Any]) -> AllocationMode:
    """What kind of address a status records, from the status alone (a spec can be edited by hand)."""
    if raw.get("vlanId"):
        return AllocationMode.BRANCH_ENI
    if raw.get("securityGroupIds"):  # groups without a VLAN: an address on a shared ENI
        return AllocationMode.SHARED_ENI
    return AllocationMode.PREFIX_IP if raw.get("prefix") else AllocationMode.SECONDARY_IP


def _resources(raw: Mapping[str, Any]) -> AssignedResources | None:
    if not (raw.get("ip") and raw.get("eniId")):
        return None
    mode = held_mode(raw)
    return AssignedResources(
        mode=mode,
        ip=raw["ip"],
        eni_id=raw["eniId"],
        subnet_cidr=raw.get("subnetCidr") or "",
        mac_address=raw.get("macAddress") or "",
        vlan_id=raw.get("vlanId"),
        prefix=raw.get("prefix"),
        security_group_ids=tuple(raw.get("securityGroupIds") or ()),
    )


def read_status(pna: PnaView) -> StatusRead:
    """The status as last persisted; unreadable ones say why and keep the address they record."""
    return read_status_body(pna.status, f"{pna.namespace}/{pna.name}")


def read_status_body(raw: Mapping[str, Any], name: str = "a PodNetworkAllocation") -> StatusRead:
    """`read_status` of a status body (what the API server holds under `status`)."""
    if not raw.get("state"):
        return StatusRead()
    try:
        state = AllocationState(raw["state"])
        resources = (
            _resources(raw) if state in (AllocationState.ALLOCATED, AllocationState.RELEASING) else None
        )
        status = AllocationStatus(
            state=state,
            reason=raw.get("reason") or state.value,
            message=raw.get("message") or "",
            attempts=raw.get("attempts") or 0,
            release_attempts=raw.get("releaseAttempts") or 0,
            last_transition_time=_epoch(raw.get("lastTransitionTime")) or 0.0,
            next_attempt_at=_epoch(raw.get("nextAttemptTime")),
            resources=resources,
            last_error=ErrorInfo.model_validate(raw["lastError"]) if raw.get("lastError") else None,
            observed_generation=raw.get("observedGeneration") or 1,
            conditions=tuple(Condition.model_validate(c) for c in raw.get("conditions") or ()),
        )
        return StatusRead(status=status)
    except (ValidationError, ValueError, KeyError, TypeError) as error:
        salvaged: AssignedResources | None = None
        try:
            salvaged = _resources(raw)
        except (ValidationError, ValueError, TypeError):
            salvaged = None
        problem = str(error).replace("\n", " ")[:400]
        return StatusRead(problem=f"status of {name} cannot be read: {problem}", salvaged=salvaged)
