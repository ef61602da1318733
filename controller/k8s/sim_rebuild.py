"""`netalloc run --ec2 sim`: rebuild the simulated VPC from the cluster's records when a replica leads.

The simulated VPC lives in the controller's memory, so a restart or a standby's takeover would start
from an empty VPC, unlike real EC2. Before the controller starts, the VPC is rebuilt from what the
cluster records: each NodeNetworkPool's instance, trunk and ENIs with their addresses and prefixes,
and each PodNetworkAllocation's address (on its ENI) or branch ENI (with its VLAN on the trunk). The
controller then recovers from it exactly as it would from real EC2. What no record names (warm branch
ENIs, addresses cooling down) is not rebuilt; the pools make it again.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from controller.adapters.sim_vpc import SimulatedVpc
from controller.core import tags as tagging
from controller.core.allocation_model import AllocationMode
from controller.k8s.kube_api import KubePort
from controller.k8s.objects import NnpView, PnaView
from controller.k8s.pna_mapping import read_status
from controller.k8s.resources import NAMESPACES, NODE_NETWORK_POOL, POD_NETWORK_ALLOCATION
from controller.ports.ec2 import InterfaceType

logger = logging.getLogger("netalloc.sim")


class RebuildReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    instances: int
    enis: int
    addresses: int
    branches: int
    skipped: tuple[str, ...]


def _tagger(cluster: str, cluster_id: str) -> Callable[..., dict[str, str]]:
    def tags(
        instance_id: str, node: str, role: str, allocation: str = tagging.POOL_ALLOCATION
    ) -> dict[str, str]:
        return tagging.eni_tags(
            cluster=cluster,
            instance_id=instance_id,
            owner=node,
            role=role,
            allocation=allocation,
            cluster_id=cluster_id,
        )

    return tags


async def rebuild_sim_vpc(
    vpc: SimulatedVpc, subnet_id: str, kube: KubePort, *, cluster_name: str
) -> RebuildReport:
    """Make `vpc` hold what the cluster's NNPs and PNAs record. Idempotent: what exists is kept."""
    namespaces, _ = await kube.list(NAMESPACES)
    system = next((n for n in namespaces if (n.get("metadata") or {}).get("name") == "kube-system"), {})
    _tags = _tagger(cluster_name, str((system.get("metadata") or {}).get("uid") or ""))
    nnp_bodies, _ = await kube.list(NODE_NETWORK_POOL)
    pna_bodies, _ = await kube.list(POD_NETWORK_ALLOCATION)
    nnps = [NnpView.from_k8s(b) for b in nnp_bodies]
    pnas = [PnaView.from_k8s(b) for b in pna_bodies]
    known_instances = {i.instance_id for i in vpc.instances()}
    # The addresses the records name are kept out of the fresh draws (a restored instance's primary
    # ENI, a restored ENI's own address) until they are restored where the records put them: a draw
    # used to take a branch's recorded address first, and that pod lost its address at a takeover.
    recorded = _recorded_addresses(nnps, pnas)
    held_back = [a for a in recorded if vpc.address_is_free(subnet_id, a)]
    vpc.occupy(subnet_id, held_back)
    deferred: list[tuple[str, str, list[str], list[str]]] = []  # node, ENI, its ips, its prefixes
    counts = {"instances": 0, "enis": 0, "addresses": 0, "branches": 0}
    skipped: list[str] = []
    trunks: dict[str, str] = {}  # node -> trunk ENI id
    instances: dict[str, str] = {}  # node -> instance id
    for nnp in nnps:
        instance_id, instance_type = nnp.instance_id, str(nnp.spec.get("instanceType") or "")
        node = nnp.name
        instances[node] = instance_id
        if instance_id in known_instances:
            trunk = str(nnp.status.get("trunkEniId") or "")
            if trunk:
                trunks[node] = trunk
            continue
        enis: list[dict[str, Any]] = list(nnp.status.get("enis") or [])
        primary = next((e for e in enis if e.get("primary")), None)
        try:
            if primary is not None:
                vpc.restore_instance(
                    instance_type,
                    subnet_id,
                    instance_id=instance_id,
                    primary_eni_id=primary["eniId"],
                    security_group_ids=[vpc.default_security_group_id],
                )
            else:
                vpc.launch_instance(
                    instance_type,
                    subnet_id,
                    security_group_ids=[vpc.default_security_group_id],
                    instance_id=instance_id,
                )
        except ValueError as error:
            skipped.append(f"instance {instance_id} of node {node}: {error}")
            continue
        counts["instances"] += 1
        for eni in enis:
            try:
                if not eni.get("primary"):
                    shared_groups = list(eni.get("securityGroupIds") or ())
                    vpc.restore_eni(
                        eni_id=eni["eniId"],
                        subnet_id=subnet_id,
                        interface_type=InterfaceType.INTERFACE,
                        tags=_tags(instance_id, node, tagging.ROLE_SHARED if shared_groups else "pod-ips"),
                        attach_to=(instance_id, int(eni["deviceIndex"])),
                        security_group_ids=shared_groups,
                    )
                    counts["enis"] += 1
                deferred.append(
                    (node, eni["eniId"], list(eni.get("ips") or ()), list(eni.get("prefixes") or ()))
                )
            except (ValueError, KeyError) as error:
                skipped.append(f"ENI {eni.get('eniId')} of node {node}: {error}")
        trunk = str(nnp.status.get("trunkEniId") or "")
        if trunk:
            index = nnp.status.get("trunkDeviceIndex")
            used = {int(e["deviceIndex"]) for e in enis if "deviceIndex" in e}
            device = int(index) if index is not None else next(i for i in range(1, 64) if i not in used)
            try:
                vpc.restore_eni(
                    eni_id=trunk,
                    subnet_id=subnet_id,
                    interface_type=InterfaceType.TRUNK,
                    tags=_tags(instance_id, node, "trunk"),
                    attach_to=(instance_id, device),
                )
                trunks[node] = trunk
                counts["enis"] += 1
            except ValueError as error:
                skipped.append(f"trunk {trunk} of node {node}: {error}")
    vpc.vacate(subnet_id, held_back)
    for node, eni_id, ips, prefixes in deferred:
        try:
            vpc.restore_addresses(eni_id, ips=ips, prefixes=prefixes)
            counts["addresses"] += len(ips) + 16 * len(prefixes)
        except (ValueError, KeyError) as error:
            skipped.append(f"ENI {eni_id} of node {node}: {error}")
    for pna in pnas:
        resources = read_status(pna).resources
        node = pna.spec.node_name
        if resources is None or node not in instances:
            continue
        instance_id = instances[node]
        try:
            if resources.mode is AllocationMode.BRANCH_ENI:
                if (
                    vpc.network_interface(resources.eni_id) is not None
                    or node not in trunks
                    or not resources.vlan_id
                ):
                    continue
                vpc.restore_eni(
                    eni_id=resources.eni_id,
                    subnet_id=subnet_id,
                    interface_type=InterfaceType.BRANCH,
                    tags=_tags(instance_id, node, "branch", pna.allocation_key),
                    security_group_ids=resources.security_group_ids,
                    private_ip=resources.ip,
                    mac_address=resources.mac_address or None,
                )
                vpc.restore_association(
                    branch_eni_id=resources.eni_id, trunk_eni_id=trunks[node], vlan_id=resources.vlan_id
                )
                counts["branches"] += 1
            elif vpc.network_interface(resources.eni_id) is not None:
                if resources.prefix:
                    vpc.restore_addresses(resources.eni_id, prefixes=[resources.prefix])
                else:
                    vpc.restore_addresses(resources.eni_id, ips=[resources.ip])
        except (ValueError, KeyError) as error:
            skipped.append(f"{pna.namespace}/{pna.name} {resources.ip} on {resources.eni_id}: {error}")
    report = RebuildReport(skipped=tuple(skipped), **counts)
    logger.info(
        "simulated VPC rebuilt from the cluster: %d instances, %d ENIs, %d addresses, %d branch ENIs%s",
        report.instances,
        report.enis,
        report.addresses,
        report.branches,
        f"; skipped: {'; '.join(skipped)}" if skipped else "",
    )
    return report


def _recorded_addresses(nnps: list[NnpView], pnas: list[PnaView]) -> list[str]:
    """Every address the records say is in use: the pools' ENIs (their IPs and /28s) and the PNAs'."""
    found: set[str] = set()
    for nnp in nnps:
        for eni in nnp.status.get("enis") or []:
            found.update(str(ip) for ip in eni.get("ips") or ())
            for prefix in eni.get("prefixes") or ():
                with contextlib.suppress(ValueError):
                    found.update(str(a) for a in ipaddress.ip_network(str(prefix)))
    for pna in pnas:
        resources = read_status(pna).resources
        if resources is not None:
            found.add(resources.ip)
    return sorted(found)
