"""PodNetworkAllocation objects <-> the core's models. Field names follow crds/podnetworkallocations.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from controller.core.allocation_model import AllocationMode, AllocationRequest, AssignedResources
from controller.core.allocation_state import AllocationState, AllocationStatus, ErrorInfo
from controller.core.conditions import Condition, rfc3339
from controller.k8s.resources import POD_NETWORK_ALLOCATION

RELEASE_FINALIZER = "netalloc.dev/release"
POD_LABEL = "netalloc.dev/pod"


def pna_name(pod_name: str) -> str:
    """One PNA per pod, named after it (pod names are valid object names)."""
    return pod_name


def allocation_key(namespace: str, name: str, uid: str) -> str:
    return f"{namespace}/{name}/{uid}"


def new_pna(
    *,
    pod: Mapping[str, Any],
    mode: AllocationMode,
    security_group_ids: tuple[str, ...],
) -> dict[str, Any]:
    """The PNA for a pod: owned by the pod (it goes with it), with our release finalizer set at create."""
    meta = pod["metadata"]
    return {
        "apiVersion": POD_NETWORK_ALLOCATION.api_version,
        "kind": POD_NETWORK_ALLOCATION.kind,
        "metadata": {
            "name": pna_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {POD_LABEL: meta["name"]},
            "finalizers": [RELEASE_FINALIZER],
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {
            "podName": meta["name"],
            "podUID": meta["uid"],
            "nodeName": pod["spec"]["nodeName"],
            "mode": mode.value,
            "securityGroupIds": list(security_group_ids),
        },
    }


def request_from_pna(pna: Mapping[str, Any]) -> AllocationRequest:
    meta, spec = pna["metadata"], pna["spec"]
    return AllocationRequest(
        key=allocation_key(meta["namespace"], spec["podName"], spec["podUID"]),
        node_name=spec["nodeName"],
        mode=AllocationMode(spec["mode"]),
        security_group_ids=tuple(spec.get("securityGroupIds") or ()),
    )


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def status_to_k8s(status: AllocationStatus) -> dict[str, Any]:
    """The status subresource body. Absent values are written as null so a merge patch clears them."""
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


def status_from_k8s(pna: Mapping[str, Any]) -> AllocationStatus | None:
    """The status as last persisted, or None if the PNA has none yet (or it is unreadable)."""
    raw = pna.get("status") or {}
    if not raw.get("state"):
        return None
    try:
        state = AllocationState(raw["state"])
        resources = None
        if raw.get("ip") and raw.get("eniId"):
            mode = AllocationMode(pna["spec"]["mode"])
            resources = AssignedResources(
                mode=mode,
                ip=raw["ip"],
                eni_id=raw["eniId"],
                subnet_cidr=raw.get("subnetCidr") or "",
                mac_address=raw.get("macAddress") or "",
                vlan_id=raw.get("vlanId"),
                prefix=raw.get("prefix"),
                security_group_ids=tuple(raw.get("securityGroupIds") or ()),
            )
        return AllocationStatus(
            state=state,
            reason=raw.get("reason") or state.value,
            message=raw.get("message") or "",
            attempts=raw.get("attempts") or 0,
            release_attempts=raw.get("releaseAttempts") or 0,
            last_transition_time=_epoch(raw.get("lastTransitionTime")) or datetime.now(UTC).timestamp(),
            next_attempt_at=_epoch(raw.get("nextAttemptTime")),
            resources=resources,
            last_error=ErrorInfo.model_validate(raw["lastError"]) if raw.get("lastError") else None,
            observed_generation=raw.get("observedGeneration") or 1,
            conditions=tuple(Condition.model_validate(c) for c in raw.get("conditions") or ()),
        )
    except (ValueError, KeyError, TypeError):
        return None
