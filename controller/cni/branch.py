"""A branch ENI on the node: its VLAN sub-interface on the trunk, and the route table and rules that
keep the pod's traffic on that VLAN (the VPC CNI's layout: table 100+VLAN, rules at priority 10).

The sub-interface step is separate from the routing step so the routing can be exercised on any link
(tests on kernels without 802.1Q give it a stand-in link; production always makes the VLAN).
"""

from __future__ import annotations

import errno
import ipaddress
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from controller.cni import errors
from controller.cni.errors import CniError
from controller.cni.names import RULE_PRIORITY, route_table
from controller.cni.pod_link import SCOPE_LINK, first_index

NO_8021Q_MESSAGE = "kernel has no 802.1Q support"


def gateway_of(subnet_cidr: str) -> str:
    """The VPC router: the first address of the subnet (.1 of a /24), as the VPC CNI uses for branch ENIs."""
    return str(ipaddress.IPv4Network(subnet_cidr, strict=False).network_address + 1)


def _vlan_id(link: Any) -> int | None:
    info = link.get_attr("IFLA_LINKINFO")
    if info is None or info.get_attr("IFLA_INFO_KIND") != "vlan":
        return None
    data = info.get_attr("IFLA_INFO_DATA")
    return int(data.get_attr("IFLA_VLAN_ID")) if data is not None else None


def trunk_index(host: IPRoute, trunk: str | None) -> int:
    if not trunk:
        raise CniError(
            errors.INVALID_NETWORK_CONFIG, 'a BranchENI pod needs "trunkInterface" in the network config'
        )
    index = first_index(host, trunk)
    if index is None:
        raise CniError(errors.TRUNK_MISSING, f"trunk interface {trunk} is not on this node")
    return index


def ensure_vlan_free(host: IPRoute, trunk: str, trunk_idx: int, vlan_id: int) -> None:
    """No sub-interface with this VLAN on the trunk, and no rule or route in its table: another pod's."""
    for link in host.get_links():
        if link.get_attr("IFLA_LINK") == trunk_idx and _vlan_id(link) == vlan_id:
            name = link.get_attr("IFLA_IFNAME")
            raise CniError(
                errors.VLAN_IN_USE, f"VLAN {vlan_id} is already in use on trunk {trunk} by link {name}"
            )
    table = route_table(vlan_id)
    if host.get_rules(table=table) or host.get_routes(table=table):
        raise CniError(
            errors.VLAN_IN_USE,
            f"VLAN {vlan_id} is already in use on this node: route table {table} is not empty",
        )


def create_vlan(
    host: IPRoute, *, trunk_idx: int, name: str, vlan_id: int, mac: str | None, mtu: int | None
) -> int:
    """The sub-interface, with the branch ENI's MAC so the VPC delivers its frames here."""
    extra: dict[str, Any] = {}
    if mac:
        extra["address"] = mac
    if mtu:
        extra["mtu"] = mtu
    try:
        host.link("add", ifname=name, kind="vlan", link=trunk_idx, vlan_id=vlan_id, **extra)
    except NetlinkError as error:
        if error.code == errno.EOPNOTSUPP:
            raise CniError(
                errors.NO_8021Q,
                f"cannot create VLAN {vlan_id} for a branch ENI: {NO_8021Q_MESSAGE} (load the 8021q module)",
            ) from error
        raise
    index = first_index(host, name)
    if index is None:
        raise RuntimeError(f"VLAN link {name} vanished right after it was created")
    host.link("set", index=index, state="up")
    return index


def route_via_uplink(
    host: IPRoute, *, uplink_idx: int, uplink_name: str, host_veth: str, vlan_id: int, gateway: str
) -> int:
    """Table 100+VLAN: the gateway on the uplink, the default through it; rules send the uplink's and the
    pod veth's traffic there. The pod's own route in it is added with its veth. Returns the table."""
    table = route_table(vlan_id)
    host.route("add", dst=f"{gateway}/32", oif=uplink_idx, scope=SCOPE_LINK, table=table)
    host.route("add", dst="0.0.0.0/0", gateway=gateway, oif=uplink_idx, table=table)
    for iif in (uplink_name, host_veth):
        host.rule("add", iifname=iif, table=table, priority=RULE_PRIORITY)
    return table
