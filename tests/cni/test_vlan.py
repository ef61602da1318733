"""The one step that needs 802.1Q: the branch ENI's VLAN sub-interface on the trunk.

Where the kernel has it, ADD makes `vlan.eth.<id>` on the trunk with the PNA's VLAN id and MAC and
DEL removes it; where it has not (this project's CI kernel), ADD fails with a clear CNI error and
leaves nothing. The rest of the BranchENI path is tested in test_plugin.py on a stand-in link.
"""

from __future__ import annotations

import pytest

from controller.cni import errors
from controller.cni.lab import ipr_in
from tests.cni.conftest import MANAGED, PLUGIN, Cni, kernel_has_8021q, needs_root, run_plugin
from tests.cni.netstate import snapshot

pytestmark = needs_root
MAC = "0a:1b:2c:3d:4e:07"


def add(cni: Cni, name: str, vlan: int) -> tuple[int, dict[str, object]]:
    cni.pna(name, "BranchENI", ip="10.77.2.20" if name == "tagged" else "10.77.2.21", vlan=vlan, mac=MAC)
    done = run_plugin(
        cni.lab.node,
        PLUGIN,
        "ADD",
        cni.conf(),
        container=f"c-{name}",
        netns=cni.lab.pod(name),
        pod=(MANAGED, name, f"uid-{name}"),
    )
    return done.code, done.json


def test_vlan_sub_interface_on_the_trunk(cni: Cni) -> None:
    if not kernel_has_8021q():
        pytest.skip("kernel has no 802.1Q support")
    before = snapshot(cni.lab.node)
    code, result = add(cni, "tagged", 7)
    assert code == 0, result
    with ipr_in(cni.lab.node) as node:
        link = node.link("get", index=node.link_lookup(ifname="vlan.eth.7")[0])[0]
        info = link.get_attr("IFLA_LINKINFO")
        assert info.get_attr("IFLA_INFO_KIND") == "vlan"
        assert info.get_attr("IFLA_INFO_DATA").get_attr("IFLA_VLAN_ID") == 7
        assert link.get_attr("IFLA_LINK") == node.link_lookup(ifname=cni.lab.trunk)[0]
        assert link.get_attr("IFLA_ADDRESS") == MAC
    assert (10, 107, "vlan.eth.7") in snapshot(cni.lab.node)["rules"]
    code, clash = add(cni, "clash", 7)
    assert code != 0 and clash["code"] == errors.VLAN_IN_USE and "vlan.eth.7" in str(clash["msg"])
    for _ in range(2):
        done = run_plugin(
            cni.lab.node,
            PLUGIN,
            "DEL",
            cni.conf(),
            container="c-tagged",
            netns=cni.lab.pods[0],
            pod=(MANAGED, "tagged", "uid-tagged"),
        )
        assert done.code == 0, done.stdout
    assert snapshot(cni.lab.node) == before


def test_without_8021q_add_fails_clearly_and_leaves_nothing(cni: Cni) -> None:
    if kernel_has_8021q():
        pytest.skip("kernel has 802.1Q support: the sub-interface is made (test above)")
    before = snapshot(cni.lab.node)
    code, body = add(cni, "tagged", 7)
    assert code != 0
    assert body["code"] == errors.NO_8021Q
    assert "kernel has no 802.1Q support" in str(body["msg"])
    assert snapshot(cni.lab.node) == before
    assert not list(cni.state_dir.iterdir())
    with ipr_in(cni.lab.pods[0]) as pod:
        assert {link.get_attr("IFLA_IFNAME") for link in pod.get_links()} == {"lo"}
