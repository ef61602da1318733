"""The veth pair into the pod: its address as /32, its routes, and the host route back to it.

Every mode ends in the same shape the VPC CNI uses: the pod's only next hop is 169.254.1.1, a static
neighbour whose MAC is the host end of the veth, so the pod needs no ARP for a gateway and the host
decides where its traffic goes (main table for pool addresses, the VLAN's table for branch ENIs).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyroute2 import IPRoute

from controller.cni.names import POD_GATEWAY

SCOPE_LINK = 253
NUD_PERMANENT = 0x80


@dataclass(frozen=True)
class PodLink:
    host_name: str
    host_index: int
    host_mac: str
    pod_name: str
    pod_index: int
    pod_mac: str


def first_index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def mac_of(ipr: IPRoute, index: int) -> str:
    return str(ipr.link("get", index=index)[0].get_attr("IFLA_ADDRESS"))


def create_veth(
    host: IPRoute, pod: IPRoute, *, netns_fd: int, host_name: str, pod_name: str, mtu: int | None
) -> PodLink:
    """The pair, its pod end moved into the netns at creation (never visible on the host by that name)."""
    extra = {"mtu": mtu} if mtu else {}
    host.link(
        "add",
        ifname=host_name,
        kind="veth",
        peer={"ifname": pod_name, "net_ns_fd": netns_fd, **extra},
        **extra,
    )
    host_index = first_index(host, host_name)
    pod_index = first_index(pod, pod_name)
    if host_index is None or pod_index is None:
        raise RuntimeError(f"veth {host_name}/{pod_name} vanished right after it was created")
    host.link("set", index=host_index, state="up")
    return PodLink(
        host_name, host_index, mac_of(host, host_index), pod_name, pod_index, mac_of(pod, pod_index)
    )


def configure_pod_side(pod: IPRoute, link: PodLink, ip: str) -> None:
    """IP/32, a link route to 169.254.1.1, the default route through it, and its static neighbour."""
    pod.link("set", index=link.pod_index, state="up")
    pod.addr("add", index=link.pod_index, address=ip, prefixlen=32)
    pod.route("add", dst=f"{POD_GATEWAY}/32", oif=link.pod_index, scope=SCOPE_LINK)
    pod.route("add", dst="0.0.0.0/0", gateway=POD_GATEWAY, oif=link.pod_index)
    pod.neigh("add", dst=POD_GATEWAY, lladdr=link.host_mac, ifindex=link.pod_index, state=NUD_PERMANENT)


def add_host_route(host: IPRoute, link: PodLink, ip: str, table: int | None = None) -> None:
    """The route from the host to the pod's address over its veth (in `table`, else the main table)."""
    host.route(
        "add", dst=f"{ip}/32", oif=link.host_index, scope=SCOPE_LINK, **({"table": table} if table else {})
    )
