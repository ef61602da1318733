"""NodeNetworkPool objects: built from a Node, and their status from a node's pool."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from controller.core.conditions import rfc3339
from controller.engine.node_network import NodeNetwork
from controller.k8s.resources import NODE_NETWORK_POOL
from controller.settings import PoolSettings

_PROVIDER_ID = re.compile(r"^aws:///(?P<zone>[a-z0-9-]+)/(?P<instance>i-[0-9a-f]{8,17})$")


class ProviderId(BaseModel):
    model_config = ConfigDict(frozen=True)

    zone: str
    instance_id: str


def parse_provider_id(provider_id: str) -> ProviderId | None:
    """`aws:///us-west-2a/i-0123456789abcdef0` -> zone and instance id; None for anything else."""
    match = _PROVIDER_ID.match(provider_id.strip())
    return None if match is None else ProviderId(zone=match["zone"], instance_id=match["instance"])


def settings_spec(settings: PoolSettings) -> dict[str, int]:
    values = {
        "warmEniTarget": settings.warm_eni_target,
        "warmIpTarget": settings.warm_ip_target,
        "minimumIpTarget": settings.minimum_ip_target,
        "warmPrefixTarget": settings.warm_prefix_target,
        "maxEni": settings.max_eni,
        "warmBranchEniTarget": settings.warm_branch_eni_target,
    }
    return {k: v for k, v in values.items() if v is not None}


def new_nnp(
    *, node: Mapping[str, Any], instance_id: str, instance_type: str, subnet_id: str, settings: PoolSettings
) -> dict[str, Any]:
    meta = node["metadata"]
    return {
        "apiVersion": NODE_NETWORK_POOL.api_version,
        "kind": NODE_NETWORK_POOL.kind,
        "metadata": {
            "name": meta["name"],
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": {
            "nodeName": meta["name"],
            "instanceId": instance_id,
            "instanceType": instance_type,
            "subnetId": subnet_id,
            "mode": "PrefixDelegation" if settings.enable_prefix_delegation else "SecondaryIP",
            "podENI": settings.enable_pod_eni,
            "settings": settings_spec(settings),
        },
    }


def nnp_status(network: NodeNetwork, *, ready: bool) -> dict[str, Any]:
    pool = network.pool
    status = pool.status()
    limits = pool.limits
    report = network.last_report
    problem = report.first_error if report is not None else None
    reason, message = ("PoolReady", "the pool is at its targets") if ready else ("PoolIncomplete", "")
    if problem is not None:
        reason, message = problem.code.replace(".", ""), problem.message
    return {
        "limits": {
            "maxEnis": limits.max_enis,
            "ipv4PerEni": limits.ipv4_per_eni,
            "branchEnis": limits.branch_enis,
            "maxPods": limits.max_pods(prefix_delegation=pool.settings.enable_prefix_delegation),
            "vcpus": limits.vcpus,
        },
        "trunkEniId": status.trunk_eni_id,
        "enis": list(status.enis),
        "branchEnis": {
            "warm": status.branch_warm,
            "inUse": status.branch_in_use,
            "coolingDown": status.branch_cooling,
            "total": status.branch_warm + status.branch_in_use + status.branch_cooling,
        },
        "freeIps": status.free_ips,
        "usedIps": status.used_ips,
        "lastPlan": list(report.completed) if report is not None else [],
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready and problem is None else "False",
                "reason": reason,
                "message": message,
                "lastTransitionTime": rfc3339(network.clock.now()),
            }
        ],
    }
