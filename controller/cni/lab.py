"""A node, its VPC and its pods as network namespaces on one machine: for tests and the ADD benchmark.

The "node" namespace holds the trunk, one end of a veth pair whose other end is in the "VPC"
namespace; the VPC routes the subnet as the real one does: it answers ARP for every address it
routes (proxy ARP, as the VPC fabric does) and sends each pod prefix to the node's address. A second
pair can stand in for a branch ENI's VLAN sub-interface on kernels without 802.1Q. Nothing here runs
on a real node; it is the plugin's test bench, built with the same pyroute2 calls the plugin uses.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from pyroute2 import IPRoute
from pyroute2 import netns as pr_netns
from pyroute2.netlink.exceptions import NetlinkError

from controller.cni.netns import route_in

NETNS_DIR = "/var/run/netns"


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the calling thread inside netns `name` for the block (threads it starts inherit it)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(f"{NETNS_DIR}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        pr_netns.setns(target)
        try:
            yield
        finally:
            pr_netns.setns(home)
    finally:
        os.close(target)
        os.close(home)


def sysctl(name: str, key: str, value: str) -> None:
    with entered(name), open(f"/proc/sys/{key.replace('.', '/')}", "w") as out:
        out.write(value)


@contextlib.contextmanager
def ipr_in(name: str) -> Iterator[IPRoute]:
    fd = os.open(f"{NETNS_DIR}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with route_in(fd) as ipr:
            yield ipr
    finally:
        os.close(fd)


def create_netns(name: str) -> str:
    pr_netns.create(name)
    with ipr_in(name) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
    return f"{NETNS_DIR}/{name}"


def remove_netns(name: str) -> None:
    with contextlib.suppress(FileNotFoundError, OSError):
        pr_netns.remove(name)


def veth_between(a: str, a_name: str, b: str, b_name: str) -> None:
    """A veth pair with `a_name` in netns `a` and `b_name` in netns `b`, both up."""
    b_fd = os.open(f"{NETNS_DIR}/{b}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with ipr_in(a) as ipa:
            ipa.link("add", ifname=a_name, kind="veth", peer={"ifname": b_name, "net_ns_fd": b_fd})
            ipa.link("set", index=ipa.link_lookup(ifname=a_name)[0], state="up")
    finally:
        os.close(b_fd)
    with ipr_in(b) as ipb:
        ipb.link("set", index=ipb.link_lookup(ifname=b_name)[0], state="up")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def ping(name: str, address: str, *, timeout_s: float = 2.0, count: int = 3) -> bool:
    """ICMP echo from netns `name` (a raw socket opened there): True when `address` answers."""
    with entered(name):
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    try:
        sock.settimeout(timeout_s / count)
        for seq in range(count):
            header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            payload = b"netalloc-cni"
            packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
            sock.sendto(packet, (address, 0))
            deadline = time.monotonic() + timeout_s / count
            while time.monotonic() < deadline:
                try:
                    data, source = sock.recvfrom(2048)
                except TimeoutError:
                    break
                offset = (data[0] & 0x0F) * 4
                kind, _, _, got_ident, got_seq = struct.unpack("!BBHHH", data[offset : offset + 8])
                if source[0] == address and kind == 0 and got_ident == ident and got_seq == seq:
                    return True
        return False
    finally:
        sock.close()


@dataclass
class Lab:
    """Namespaces `<tag>-node` and `<tag>-vpc`; `close()` removes them and every pod netns made."""

    tag: str
    subnet: str = "10.77.0.0/16"
    gateway: str = "10.77.0.1"
    node_ip: str = "10.77.0.10"
    trunk: str = "trunk0"
    pods: list[str] = field(default_factory=list)

    @property
    def node(self) -> str:
        return f"{self.tag}-node"

    @property
    def vpc(self) -> str:
        return f"{self.tag}-vpc"

    def build(self) -> Lab:
        prefixlen = int(self.subnet.split("/")[1])
        create_netns(self.node)
        create_netns(self.vpc)
        veth_between(self.node, self.trunk, self.vpc, "vpc0")
        with ipr_in(self.node) as node:
            trunk = node.link_lookup(ifname=self.trunk)[0]
            node.addr("add", index=trunk, address=self.node_ip, prefixlen=prefixlen)
        with ipr_in(self.vpc) as vpc:
            vpc0 = vpc.link_lookup(ifname="vpc0")[0]
            vpc.addr("add", index=vpc0, address=self.gateway, prefixlen=prefixlen)
        for space in (self.node, self.vpc):
            sysctl(space, "net.ipv4.ip_forward", "1")
        sysctl(self.vpc, "net.ipv4.conf.vpc0.proxy_arp", "1")
        return self

    def route_prefix(self, prefix: str) -> None:
        """The VPC sends a pod prefix (a /28 of PrefixIP, a secondary IP) to the node's primary address."""
        with ipr_in(self.vpc) as vpc:
            vpc.route("add", dst=prefix, gateway=self.node_ip)

    def branch_stand_in(self, name: str, vlan_id: int, mac: str) -> None:
        """A link in the node standing in for VLAN `vlan_id` on the trunk: its VPC end carries the
        gateway address and delivers to the branch ENI's MAC, as the VPC does for a branch ENI."""
        peer = f"vpcvlan{vlan_id}"
        veth_between(self.node, name, self.vpc, peer)
        with ipr_in(self.node) as node:
            index = node.link_lookup(ifname=name)[0]
            node.link("set", index=index, state="down")
            node.link("set", index=index, address=mac)
            node.link("set", index=index, state="up")
        with ipr_in(self.vpc) as vpc:
            vpc.addr("add", index=vpc.link_lookup(ifname=peer)[0], address=self.gateway, prefixlen=32)
        sysctl(self.vpc, f"net.ipv4.conf.{peer}.proxy_arp", "1")

    def route_branch(self, ip: str, vlan_id: int, mac: str) -> None:
        """The VPC's path to a branch ENI's address: over its VLAN, to its MAC."""
        with ipr_in(self.vpc) as vpc:
            index = vpc.link_lookup(ifname=f"vpcvlan{vlan_id}")[0]
            vpc.route("add", dst=f"{ip}/32", oif=index, scope=253)
            vpc.neigh("add", dst=ip, lladdr=mac, ifindex=index, state=0x80)

    def pod(self, name: str) -> str:
        """A fresh pod netns; its path, as a runtime passes it in CNI_NETNS."""
        full = f"{self.tag}-{name}"
        self.pods.append(full)
        return create_netns(full)

    def close_pod(self, full: str) -> None:
        """A pod's netns goes away, as when its sandbox is destroyed before DEL."""
        remove_netns(full)
        self.pods.remove(full)

    def close(self) -> None:
        for name in [*self.pods, self.node, self.vpc]:
            remove_netns(name)  # a netns going takes its links (and their peers) with it
        self.pods.clear()


def kernel_has_8021q() -> bool:
    """Whether this kernel can make a VLAN sub-interface: tried once in a scratch netns."""
    name = f"na-probe-{os.getpid()}"
    create_netns(name)
    try:
        with ipr_in(name) as ipr:
            ipr.link("add", ifname="probe0", kind="veth", peer={"ifname": "probe1"})
            try:
                ipr.link(
                    "add", ifname="probe0.5", kind="vlan", link=ipr.link_lookup(ifname="probe0")[0], vlan_id=5
                )
            except NetlinkError as error:
                if error.code in (errno.EOPNOTSUPP, errno.ENOENT):
                    return False
                raise
            return True
    finally:
        remove_netns(name)
