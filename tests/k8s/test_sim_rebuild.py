"""`--ec2 sim` rebuilds its VPC from the cluster's records when a replica takes over: every recorded
address ends up where the records put it."""

from __future__ import annotations

from typing import Any

from controller.adapters.sim_vpc import LatencyConfig
from controller.k8s.resources import ResourceRef
from controller.k8s.sim_rebuild import rebuild_sim_vpc
from controller.sim_fleet import SimFleet

INSTANCE = "i-0923456789abcdef0"


class RecordsOnly:
    """The part of `KubePort` the rebuild reads: lists."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]]) -> None:
        self.objects = objects

    async def list(self, ref: ResourceRef, namespace: str | None = None) -> tuple[list[dict[str, Any]], str]:
        return self.objects.get(ref.plural, []), "1"


def fleet() -> SimFleet:
    """As `netalloc run --ec2 sim` makes it."""
    made = SimFleet(cluster_name="trial", latency=LatencyConfig.none())
    made.vpc.adopt_unknown_security_groups = True
    return made


async def test_a_branch_s_recorded_address_is_not_drawn_for_a_restored_instance_first() -> None:
    """The address a fresh VPC draws first for the restored instance's primary ENI is the one a pod's
    branch ENI holds in the records: it used to be taken by the draw, and the pod lost its address."""
    twin = fleet()
    drawn = twin.vpc.launch_instance(
        "m5.xlarge", twin.subnet.subnet_id, security_group_ids=[twin.vpc.default_security_group_id]
    )
    first_draw = twin.vpc.network_interface(drawn.primary_eni_id).private_ip  # type: ignore[union-attr]
    nnp = {
        "metadata": {"name": "n1", "uid": "nnp-1", "resourceVersion": "5"},
        "spec": {"nodeName": "n1", "instanceId": INSTANCE, "instanceType": "m5.xlarge"},
        "status": {
            "enis": [{"eniId": "eni-00000000000000001", "primary": True, "deviceIndex": 0, "ips": []}],
            "trunkEniId": "eni-00000000000000002",
            "trunkDeviceIndex": 3,
        },
    }
    pna = {
        "metadata": {"name": "web-1", "namespace": "shop", "uid": "pna-1", "resourceVersion": "7"},
        "spec": {"podName": "web-1", "podUID": "pod-1", "nodeName": "n1", "mode": "BranchENI"},
        "status": {
            "state": "Allocated",
            "ip": first_draw,
            "eniId": "eni-00000000000000003",
            "vlanId": 1,
            "subnetCidr": "10.0.0.0/16",
            "securityGroupIds": ["sg-0a1b2c3d4e5f60718"],
        },
    }
    target = fleet()
    kube = RecordsOnly({"nodenetworkpools": [nnp], "podnetworkallocations": [pna]})
    report = await rebuild_sim_vpc(target.vpc, target.subnet.subnet_id, kube, cluster_name="trial")  # type: ignore[arg-type]
    assert report.skipped == ()
    branch = target.vpc.network_interface("eni-00000000000000003")
    assert branch is not None and branch.private_ip == first_draw
    primary = target.vpc.network_interface("eni-00000000000000001")
    assert primary is not None and primary.private_ip != first_draw
