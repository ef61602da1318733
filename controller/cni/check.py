"""CHECK: the pod's addresses and routes, and the host's, still match what its PNA says."""

from __future__ import annotations

from typing import Any

from pyroute2 import IPRoute

from controller.cni import errors
from controller.cni.branch import gateway_of
from controller.cni.errors import CniError
from controller.cni.names import POD_GATEWAY, RULE_PRIORITY
from controller.cni.pna import Pna
from controller.cni.pod_link import first_index
from controller.cni.state import Record


def _fail(problem: str) -> CniError:
    return CniError(errors.CHECK_FAILED, problem)


def _routes(ipr: IPRoute, **query: Any) -> list[tuple[str, str | None]]:
    """(dst/len, gateway) of the IPv4 routes matching `query`."""
    found = []
    for route in ipr.get_routes(family=2, **query):
        dst = route.get_attr("RTA_DST") or "0.0.0.0"
        found.append((f"{dst}/{route['dst_len']}", route.get_attr("RTA_GATEWAY")))
    return found


def verify(host: IPRoute, pod: IPRoute, record: Record, pna: Pna) -> None:
    """Raises a CNI error naming the first thing that differs."""
    ip = pna.status.ip or ""
    if ip != record.ip:
        raise _fail(f"PNA {pna.key} now says {ip}, ADD wired {record.ip}")
    pod_index = first_index(pod, record.ifname)
    if pod_index is None:
        raise _fail(f"interface {record.ifname} is missing in {record.netns}")
    addresses = {
        f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in pod.get_addr(family=2, index=pod_index)
    }
    if f"{ip}/32" not in addresses:
        raise _fail(f"{record.ifname} in {record.netns} has {sorted(addresses)}, not {ip}/32")
    if ("0.0.0.0/0", POD_GATEWAY) not in _routes(pod, oif=pod_index):
        raise _fail(f"the pod's default route via {POD_GATEWAY} is missing")
    host_index = first_index(host, record.host_veth)
    if host_index is None:
        raise _fail(f"host veth {record.host_veth} is missing")
    table = record.table if record.table is not None else 254
    if (f"{ip}/32", None) not in _routes(host, oif=host_index, table=table):
        raise _fail(f"the host route to {ip} over {record.host_veth} (table {table}) is missing")
    if pna.spec.mode == "BranchENI":
        gateway = gateway_of(pna.status.subnetCidr or "")
        if ("0.0.0.0/0", gateway) not in _routes(host, table=table):
            raise _fail(f"the default route via {gateway} in table {table} is missing")
        rules = {
            r.get_attr("FRA_IIFNAME")
            for r in host.get_rules(table=table)
            if r.get_attr("FRA_PRIORITY") == RULE_PRIORITY
        }
        for iif in (record.uplink, record.host_veth):
            if iif not in rules:
                raise _fail(f"the rule iif {iif} lookup {table} is missing")
        if record.vlan_link and first_index(host, record.vlan_link) is None:
            raise _fail(f"VLAN link {record.vlan_link} is missing")
