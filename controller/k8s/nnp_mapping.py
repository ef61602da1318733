"""NodeNetworkPool objects: their spec from a Node and the settings, their status from a node's pool.

The status is what an operator reads (`kubectl get nnp`) and what `--ec2 sim` rebuilds its VPC from
after a restart: limits, the trunk, every ENI with its addresses and prefixes, the branch counts, and
one `Ready` condition whose lastTransitionTime moves only when its status does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.core.conditions import condition_reason, rfc3339
from controller.core.subnet_report import SubnetReport
from controller.engine.node_network import NodeNetwork
from controller.k8s.objects import JsonObject, NodeView
from controller.k8s.resources import NODE_NETWORK_POOL, PoolMode
from controller.settings import PoolSettings

POOL_FINALIZER = "netalloc.dev/pool"


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


def nnp_spec(
    *, node_name: str, instance_id: str, instance_type: str, subnet_id: str | None, settings: PoolSettings
) -> JsonObject:
    """The spec the node's NodeNetworkPool should have now (the mode follows the current settings)."""
    spec: JsonObject = {
        "nodeName": node_name,
        "instanceId": instance_id,
        "instanceType": instance_type,
        "mode": (
            PoolMode.PREFIX_DELEGATION if settings.enable_prefix_delegation else PoolMode.SECONDARY_IP
        ).value,
        "podENI": settings.enable_pod_eni,
        "settings": settings_spec(settings),
    }
    if subnet_id:
        spec["subnetId"] = subnet_id
    return spec


def spec_outdated(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Does the stored spec differ from `desired`? A subnet not known yet does not erase a stored one."""
    wanted = dict(desired)
    if "subnetId" not in wanted and current.get("subnetId"):
        wanted["subnetId"] = current["subnetId"]
    return dict(current) != wanted


def new_nnp(*, node: NodeView, spec: JsonObject) -> JsonObject:
    """The node's NodeNetworkPool, with netalloc's finalizer: it goes only after the pool is drained."""
    return {
        "apiVersion": NODE_NETWORK_POOL.api_version,
        "kind": NODE_NETWORK_POOL.kind,
        "metadata": {
            "name": node.name,
            "finalizers": [POOL_FINALIZER],
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "name": node.name,
                    "uid": node.uid,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": spec,
    }


def _nnp_condition(
    previous: Sequence[Mapping[str, Any]], kind: str, *, true: bool, reason: str, message: str, now: float
) -> JsonObject:
    """A pool condition whose lastTransitionTime is kept while its status stays the same."""
    status = "True" if true else "False"
    before = next((c for c in previous if c.get("type") == kind), None)
    since = (
        before.get("lastTransitionTime") if before is not None and before.get("status") == status else None
    )
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": since or rfc3339(now),
    }


def ready_condition(
    previous: Sequence[Mapping[str, Any]], *, ready: bool, reason: str, message: str, now: float
) -> JsonObject:
    """The pool's `Ready` condition."""
    return _nnp_condition(
        previous, "Ready", true=ready, reason=condition_reason(reason), message=message, now=now
    )


def subnet_status(report: SubnetReport) -> JsonObject:
    return {
        "subnetId": report.subnet_id,
        "cidr": report.cidr,
        "freeAddresses": report.free_addresses,
        "freePrefixBlocks": report.free_prefix_blocks,
        "prefixReservedBlocks": report.prefix_reserved_blocks,
        "fragmented": report.fragmented,
    }


def fragmented_condition(
    previous: Sequence[Mapping[str, Any]], report: SubnetReport, *, now: float
) -> JsonObject:
    """`SubnetFragmented`: True while free addresses would hold prefixes that no free /28 block can."""
    reason = "FreeAddressesButNoPrefixBlocks" if report.fragmented else "PrefixBlocksAvailable"
    return _nnp_condition(
        previous, "SubnetFragmented", true=report.fragmented, reason=reason, message=report.advice, now=now
    )


def nnp_status(
    network: NodeNetwork, *, previous: Mapping[str, Any], now: float, subnet: SubnetReport | None = None
) -> JsonObject:
    """The status of a registered pool (with its subnet's fragmentation report, once there is one)."""
    pool = network.pool
    status = pool.status()
    limits = pool.limits
    report = network.last_report
    problem = report.first_error if report is not None else None
    if problem is None:
        reason, message, ready = "PoolReady", "the pool is at its targets", True
    else:
        reason, message, ready = problem.code, f"{problem.action}: {problem.message}", False
    body: JsonObject = {
        "limits": {
            "maxEnis": limits.max_enis,
            "ipv4PerEni": limits.ipv4_per_eni,
            "branchEnis": limits.branch_enis,
            "maxPods": limits.max_pods(prefix_delegation=pool.settings.enable_prefix_delegation),
            "vcpus": limits.vcpus,
        },
        "trunkEniId": status.trunk_eni_id,
        "trunkDeviceIndex": pool.trunk_device_index,
        "enis": list(status.enis),
        "branchEnis": {
            "warm": status.branch_warm,
            "inUse": status.branch_in_use,
            "coolingDown": status.branch_cooling,
            "total": status.branch_warm + status.branch_in_use + status.branch_cooling,
        },
        "freeIps": status.free_ips,
        "usedIps": status.used_ips,
        "lastPlan": list(report.completed)[:64] if report is not None else [],
        "conditions": [
            ready_condition(
                previous.get("conditions") or (), ready=ready, reason=reason, message=message, now=now
            )
        ],
    }
    if subnet is not None:
        body["subnet"] = subnet_status(subnet)
        body["conditions"].append(fragmented_condition(previous.get("conditions") or (), subnet, now=now))
    return body


def unready_status(*, reason: str, message: str, previous: Mapping[str, Any], now: float) -> JsonObject:
    """The status of a pool that could not be made (or drained): only the condition saying why."""
    return {
        "conditions": [
            ready_condition(
                previous.get("conditions") or (), ready=False, reason=reason, message=message, now=now
            )
        ]
    }
