"""Names of what ADD creates, derived from the container, so DEL finds them even without a record."""

from __future__ import annotations

import hashlib

HOST_VETH_PREFIX = "nac"  # netalloc-cni; 3 + 11 hex chars stays under IFNAMSIZ (15)
ROUTE_TABLE_BASE = 100  # the VPC CNI's table for branch ENI VLAN n is 100 + n
RULE_PRIORITY = 10  # the VPC CNI's priority for branch ENI rules, ahead of the main table
POD_GATEWAY = "169.254.1.1"  # the pod's next hop: the host end of its veth (a static neighbour)


def host_veth(container_id: str, ifname: str) -> str:
    digest = hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()
    return HOST_VETH_PREFIX + digest[:11]


def vlan_link(vlan_id: int) -> str:
    """As the VPC CNI names a branch ENI's sub-interface, so operators recognise it."""
    return f"vlan.eth.{vlan_id}"


def route_table(vlan_id: int) -> int:
    return ROUTE_TABLE_BASE + vlan_id
