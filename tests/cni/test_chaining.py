"""netalloc-cni first in a chain, as in the node's conflist: Debian's reference plugins read its result
as prevResult. portmap's DNAT carries a real connection to the pod; bandwidth finds the host veth."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from typing import Any

from controller.cni.lab import entered, ipr_in
from controller.cni.names import host_veth
from tests.cni.conftest import MANAGED, PLUGIN, PLUGINS, Cni, needs_root, run_plugin
from tests.cni.netstate import snapshot

pytestmark = needs_root


def chain(
    cni: Cni, command: str, entries: list[dict[str, Any]], netns: str, pod: tuple[str, str, str]
) -> Any:
    """What libcni does with a conflist: ADD in order, each given the previous result; DEL in reverse."""
    result: dict[str, Any] | None = None
    ordered = entries if command == "ADD" else list(reversed(entries))
    for entry in ordered:
        conf = {"cniVersion": "1.0.0", "name": "netalloc", **entry}
        if result is not None:
            conf["prevResult"] = result
        binary = PLUGIN if entry["type"] == "netalloc-cni" else PLUGINS / entry["type"]
        done = run_plugin(cni.lab.node, binary, command, conf, container="c-chain", netns=netns, pod=pod)
        assert done.code == 0, (entry["type"], command, done.stdout)
        if command == "ADD":
            result = done.json
    return result


def serve_once(netns: str, port: int, reply: bytes) -> tuple[socket.socket, threading.Thread]:
    with entered(netns):
        server = socket.create_server(("0.0.0.0", port))
    server.settimeout(10)

    def answer() -> None:
        with contextlib.suppress(OSError):
            conn, _ = server.accept()
            with conn:
                conn.sendall(reply)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return server, thread


def fetch(netns: str, address: str, port: int) -> bytes:
    with entered(netns):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with client:
        client.settimeout(5)
        client.connect((address, port))
        return client.recv(64)


def iptables_nat(node: str) -> str:
    done = subprocess.run(
        ["nsenter", f"--net=/var/run/netns/{node}", "iptables-save", "-t", "nat"],
        capture_output=True,
        check=True,
        text=True,
    )
    return done.stdout


def test_portmap_and_bandwidth_chain_after_netalloc_cni(cni: Cni) -> None:
    lab = cni.lab
    lab.route_prefix("10.77.1.0/28")
    cni.pna("chained", "PrefixIP", ip="10.77.1.11", prefix="10.77.1.0/28")
    netns = lab.pod("chained")
    pod = (MANAGED, "chained", "uid-chained")
    before = snapshot(lab.node)
    entries = [
        {k: v for k, v in cni.conf().items() if k not in ("cniVersion", "name")},
        {
            "type": "portmap",
            "capabilities": {"portMappings": True},
            "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
        },
        {
            "type": "bandwidth",
            "capabilities": {"bandwidth": True},
            "runtimeConfig": {"bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 1_000_000}},
        },
    ]
    result = chain(cni, "ADD", entries, netns, pod)
    assert result["ips"][0]["address"] == "10.77.1.11/32"  # passed through both plugins intact

    assert "10.77.1.11:80" in iptables_nat(lab.node)
    server, thread = serve_once(lab.pods[0], 80, b"hello from the pod")
    try:
        assert fetch(lab.vpc, lab.node_ip, 8080) == b"hello from the pod"  # the VPC, via the host port
    finally:
        thread.join(timeout=5)
        server.close()

    with ipr_in(lab.node) as node:
        veth = node.link_lookup(ifname=host_veth("c-chain", "eth0"))[0]
        kinds = {q.get_attr("TCA_KIND") for q in node.get_qdiscs(index=veth)}
    assert "tbf" in kinds  # bandwidth found netalloc-cni's host veth in prevResult

    chain(cni, "DEL", entries, netns, pod)
    assert "10.77.1.11" not in iptables_nat(lab.node)
    after = snapshot(lab.node)
    assert after["links"] == before["links"] and after["rules"] == before["rules"]
    assert after["routes"] == before["routes"]
