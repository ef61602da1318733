"""Undoing ADD: every step tolerates its object being gone already, so DEL can run any number of times."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from controller.cni.pod_link import first_index
from controller.cni.state import Record

GONE = (errno.ENOENT, errno.ESRCH, errno.ENODEV, errno.EADDRNOTAVAIL)


@contextlib.contextmanager
def _tolerating_gone() -> Iterator[None]:
    try:
        yield
    except NetlinkError as error:
        if error.code not in GONE:
            raise


def _delete_link(host: IPRoute, name: str) -> None:
    index = first_index(host, name)
    if index is not None:
        with _tolerating_gone():
            host.link("del", index=index)


def undo(host: IPRoute, record: Record) -> None:
    """Remove the rules and routes of the record's table, the host veth (its pod end and its routes go
    with it) and the VLAN link ADD made. The stand-in uplink of tests is never removed."""
    if record.table is not None:
        for rule in host.get_rules(table=record.table):
            with _tolerating_gone():
                host.rule("del", **_rule_key(rule))
        for route in host.get_routes(table=record.table):
            with _tolerating_gone():
                host.route("del", **_route_key(route, record.table))
    if record.host_veth:
        _delete_link(host, record.host_veth)
    if record.vlan_link:
        _delete_link(host, record.vlan_link)


def _rule_key(rule: Any) -> dict[str, object]:
    get = rule.get_attr
    key: dict[str, object] = {"table": get("FRA_TABLE"), "priority": get("FRA_PRIORITY")}
    if get("FRA_IIFNAME"):
        key["iifname"] = get("FRA_IIFNAME")
    return key


def _route_key(route: Any, table: int) -> dict[str, object]:
    get = route.get_attr
    dst = get("RTA_DST")
    prefixlen = route["dst_len"]
    key: dict[str, object] = {
        "dst": f"{dst or '0.0.0.0'}/{prefixlen}",
        "table": table,
        "scope": route["scope"],  # a link-scope route is not found under the default scope
    }
    if get("RTA_OIF"):
        key["oif"] = get("RTA_OIF")
    return key
