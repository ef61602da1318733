"""What a netns holds, as comparable sets: tests assert DEL (or a failed ADD) leaves it as it was."""

from __future__ import annotations

from typing import Any

from controller.cni.lab import ipr_in


def _route(route: Any) -> tuple[Any, ...]:
    return (
        route.get_attr("RTA_TABLE"),
        route.get_attr("RTA_DST"),
        route["dst_len"],
        route.get_attr("RTA_GATEWAY"),
        route.get_attr("RTA_OIF"),
    )


def snapshot(netns: str) -> dict[str, set[Any]]:
    with ipr_in(netns) as ipr:
        return {
            "links": {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()},
            "routes": {_route(r) for r in ipr.route("dump", family=2)},
            "rules": {
                (r.get_attr("FRA_PRIORITY"), r.get_attr("FRA_TABLE"), r.get_attr("FRA_IIFNAME"))
                for r in ipr.get_rules(family=2)
            },
        }


def pod_view(netns: str, ifname: str = "eth0") -> dict[str, Any]:
    """The pod's interface: addresses, routes (dst/len, gateway) and neighbours."""
    with ipr_in(netns) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        return {
            "addresses": {
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(family=2, index=index)
            },
            "routes": {
                (f"{r.get_attr('RTA_DST') or '0.0.0.0'}/{r['dst_len']}", r.get_attr("RTA_GATEWAY"))
                for r in ipr.get_routes(family=2, oif=index)
            },
            "neighbours": {
                (n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR")) for n in ipr.get_neighbours(ifindex=index)
            },
        }
