"""netalloc-cni driven as a container runtime drives it: CNI_* in the environment, config on stdin,
the installed console script as a subprocess in the node's netns, PNAs in the API emulator."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from controller.cni import errors
from controller.cni.lab import ipr_in, ping
from controller.cni.names import host_veth
from tests.cni.conftest import MANAGED, PLUGIN, UNMANAGED, Cni, Outcome, needs_root, run_plugin
from tests.cni.netstate import pod_view, snapshot

pytestmark = needs_root

BRANCH_MAC = "0a:1b:2c:3d:4e:05"
STAND_IN = "vlanstandin5"


def plugin(
    cni: Cni,
    command: str,
    conf: dict[str, Any],
    container: str,
    netns: str = "",
    pod: tuple[str, str, str] | None = None,
) -> Outcome:
    return run_plugin(cni.lab.node, PLUGIN, command, conf, container=container, netns=netns, pod=pod)


def managed(name: str) -> tuple[str, str, str]:
    return (MANAGED, name, f"uid-{name}")


def assert_error(outcome: Outcome, code: int, *fragments: str) -> dict[str, Any]:
    assert outcome.code != 0, outcome.stdout
    body = outcome.json
    assert body["code"] == code, body
    assert set(body) >= {"cniVersion", "code", "msg"}
    for fragment in fragments:
        assert fragment in body["msg"], body
    return body


def test_branch_eni_and_prefix_ip_pods_reach_the_vpc_and_each_other(cni: Cni) -> None:
    lab = cni.lab
    lab.route_prefix("10.77.1.0/28")
    lab.branch_stand_in(STAND_IN, 5, BRANCH_MAC)
    lab.route_branch("10.77.2.7", 5, BRANCH_MAC)
    before = snapshot(lab.node)
    cni.pna("web", "BranchENI", ip="10.77.2.7", vlan=5, mac=BRANCH_MAC)
    cni.pna("api", "PrefixIP", ip="10.77.1.5", prefix="10.77.1.0/28")
    web_ns, api_ns = lab.pod("web"), lab.pod("api")
    dns = {"nameservers": ["10.100.0.10"], "search": ["shop.svc.cluster.local"]}
    conf = cni.conf(testBranchUplink=STAND_IN, dns=dns)

    web = plugin(cni, "ADD", conf, "c-web", web_ns, managed("web"))
    api = plugin(cni, "ADD", conf, "c-api", api_ns, managed("api"))
    assert (web.code, api.code) == (0, 0), (web.stdout, api.stdout)

    result = web.json
    assert result["cniVersion"] == "1.0.0"
    assert result["interfaces"][0]["name"] == host_veth("c-web", "eth0")
    assert result["interfaces"][1] == {
        "name": "eth0",
        "mac": result["interfaces"][1]["mac"],
        "sandbox": web_ns,
    }
    assert result["ips"] == [{"address": "10.77.2.7/32", "gateway": "169.254.1.1", "interface": 1}]
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}]
    assert result["dns"]["nameservers"] == ["10.100.0.10"]
    assert pod_view(lab.pods[0])["addresses"] == {"10.77.2.7/32"}
    assert ("0.0.0.0/0", "169.254.1.1") in pod_view(lab.pods[1])["routes"]

    # The branch pod's traffic is in VLAN 5's table (105), by rule; the prefix pod's is in main.
    during = snapshot(lab.node)
    assert {(10, 105, STAND_IN), (10, 105, host_veth("c-web", "eth0"))} <= during["rules"]
    tables = {(route[0], route[1], route[3]) for route in during["routes"]}
    assert {(105, None, "10.77.0.1"), (105, "10.77.2.7", None), (254, "10.77.1.5", None)} <= tables

    web_pod, api_pod = lab.pods
    assert ping(web_pod, lab.gateway), "branch ENI pod cannot reach the VPC"
    assert ping(api_pod, lab.gateway), "prefix pod cannot reach the VPC"
    assert ping(web_pod, "10.77.1.5"), "branch ENI pod cannot reach the prefix pod"
    assert ping(api_pod, "10.77.2.7"), "prefix pod cannot reach the branch ENI pod"

    checked = plugin(cni, "CHECK", {**conf, "prevResult": result}, "c-web", web_ns, managed("web"))
    assert (checked.code, checked.stdout) == (0, ""), checked.stdout
    with ipr_in(lab.node) as node:  # another party removes the VLAN table's default route
        node.route("del", dst="0.0.0.0/0", gateway=lab.gateway, table=105)
    broken = plugin(cni, "CHECK", {**conf, "prevResult": result}, "c-web", web_ns, managed("web"))
    assert_error(broken, errors.CHECK_FAILED, "default route via 10.77.0.1 in table 105 is missing")

    for container, netns, name in (("c-web", web_ns, "web"), ("c-api", api_ns, "api")):
        for _ in range(2):  # a second DEL succeeds and changes nothing
            done = plugin(cni, "DEL", conf, container, netns, managed(name))
            assert (done.code, done.stdout) == (0, ""), done.stdout
    assert snapshot(lab.node) == before
    assert not list(cni.state_dir.iterdir())


def test_add_waits_on_a_watch_until_the_pna_is_allocated(cni: Cni) -> None:
    cni.lab.route_prefix("10.77.1.0/28")
    cni.pna("late", "PrefixIP", state="Allocating", reason="Allocating")
    netns = cni.lab.pod("late")
    allocated = {
        "state": "Allocated",
        "reason": "Allocated",
        "ip": "10.77.1.6",
        "prefix": "10.77.1.0/28",
        "eniId": "eni-0123456789abcdef0",
        "subnetCidr": cni.lab.subnet,
    }
    timer = threading.Timer(0.8, cni.set_status, args=("late", allocated))
    timer.start()
    started = time.monotonic()
    try:
        done = plugin(cni, "ADD", cni.conf(allocationTimeoutSeconds=20), "c-late", netns, managed("late"))
    finally:
        timer.cancel()
    assert done.code == 0, done.stdout
    assert done.json["ips"][0]["address"] == "10.77.1.6/32"
    assert time.monotonic() - started >= 0.8  # it did wait for the status change
    assert ping(cni.lab.pods[0], cni.lab.gateway)


def test_add_gives_up_at_the_bound_quoting_state_reason_and_message(cni: Cni) -> None:
    cni.pna(
        "starved",
        "PrefixIP",
        state="WaitingForCapacity",
        reason="InsufficientCidrBlocks",
        message="no free /28 in subnet-0abc",
    )
    before = snapshot(cni.lab.node)
    netns = cni.lab.pod("starved")
    started = time.monotonic()
    done = plugin(cni, "ADD", cni.conf(allocationTimeoutSeconds=1), "c-starved", netns, managed("starved"))
    assert_error(
        done, errors.TRY_AGAIN_LATER, "WaitingForCapacity InsufficientCidrBlocks: no free /28 in subnet-0abc"
    )
    assert 1 <= time.monotonic() - started < 10
    assert snapshot(cni.lab.node) == before
    assert not cni.state_dir.exists() or not list(cni.state_dir.iterdir())


def test_a_managed_namespace_without_a_pna_waits_and_says_so(cni: Cni) -> None:
    netns = cni.lab.pod("nopna")
    done = plugin(cni, "ADD", cni.conf(allocationTimeoutSeconds=1), "c-nopna", netns, managed("nopna"))
    assert_error(done, errors.TRY_AGAIN_LATER, "no PodNetworkAllocation shop/nopna", "controller running")


def test_a_failed_pna_fails_at_once_naming_its_reason(cni: Cni) -> None:
    cni.pna(
        "bad",
        "BranchENI",
        state="Failed",
        reason="InvalidSecurityGroupID.NotFound",
        message="sg-0123456789abcdef0 does not exist",
    )
    before = snapshot(cni.lab.node)
    started = time.monotonic()
    done = plugin(
        cni, "ADD", cni.conf(allocationTimeoutSeconds=30), "c-bad", cni.lab.pod("bad"), managed("bad")
    )
    assert_error(
        done, errors.ALLOCATION_FAILED, "Failed", "InvalidSecurityGroupID.NotFound", "does not exist"
    )
    assert time.monotonic() - started < 10  # no waiting on a permanent failure
    assert snapshot(cni.lab.node) == before


def test_a_pna_of_another_pod_uid_is_refused(cni: Cni) -> None:
    cni.pna("stale", "PrefixIP", uid="uid-of-the-old-pod", ip="10.77.1.7", prefix="10.77.1.0/28")
    before = snapshot(cni.lab.node)
    netns = cni.lab.pod("stale")
    done = plugin(
        cni, "ADD", cni.conf(allocationTimeoutSeconds=1), "c-stale", netns, (MANAGED, "stale", "uid-new")
    )
    assert_error(done, errors.POD_UID_MISMATCH, "uid-of-the-old-pod", "uid-new")
    assert snapshot(cni.lab.node) == before
    assert pod_view_links(cni.lab.pods[0]) == {"lo"}


def pod_view_links(netns: str) -> set[str]:
    with ipr_in(netns) as ipr:
        return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}


def test_a_vlan_already_in_use_is_refused_and_the_first_pod_keeps_it(cni: Cni) -> None:
    cni.lab.branch_stand_in(STAND_IN, 5, BRANCH_MAC)
    cni.pna("first", "BranchENI", ip="10.77.2.8", vlan=5, mac=BRANCH_MAC)
    cni.pna("second", "BranchENI", ip="10.77.2.9", vlan=5, mac=BRANCH_MAC)
    conf = cni.conf(testBranchUplink=STAND_IN)
    first = plugin(cni, "ADD", conf, "c-first", cni.lab.pod("first"), managed("first"))
    assert first.code == 0, first.stdout
    held = snapshot(cni.lab.node)
    done = plugin(cni, "ADD", conf, "c-second", cni.lab.pod("second"), managed("second"))
    assert_error(done, errors.VLAN_IN_USE, "VLAN 5 is already in use", "table 105")
    assert snapshot(cni.lab.node) == held
    assert pod_view_links(cni.lab.pods[1]) == {"lo"}


def test_a_missing_trunk_interface_is_refused(cni: Cni) -> None:
    cni.pna("lost", "BranchENI", ip="10.77.2.10", vlan=6, mac=BRANCH_MAC)
    before = snapshot(cni.lab.node)
    done = plugin(cni, "ADD", cni.conf(trunkInterface="eth9"), "c-lost", cni.lab.pod("lost"), managed("lost"))
    assert_error(done, errors.TRUNK_MISSING, "trunk interface eth9 is not on this node")
    assert snapshot(cni.lab.node) == before


def test_a_config_without_a_delegate_is_refused(cni: Cni) -> None:
    cni.pna("nodel", "PrefixIP", ip="10.77.1.8", prefix="10.77.1.0/28")
    before = snapshot(cni.lab.node)
    conf = cni.conf()
    del conf["delegate"]
    for command in ("ADD", "DEL"):
        done = plugin(cni, command, conf, "c-nodel", cni.lab.pod(f"nodel-{command}"), managed("nodel"))
        assert_error(done, errors.INVALID_NETWORK_CONFIG, 'no "delegate"')
    assert snapshot(cni.lab.node) == before


def test_an_unmanaged_pod_goes_to_the_delegate_unchanged(cni: Cni) -> None:
    """ptp with host-local stands in for aws-cni: netalloc-cni passes its result through as it is."""
    netns = cni.lab.pod("outsider")
    pod = (UNMANAGED, "outsider", "uid-outsider")
    before = snapshot(cni.lab.node)
    done = plugin(cni, "ADD", cni.conf(), "c-out", netns, pod)
    assert done.code == 0, done.stdout
    result = done.json
    assert result["ips"][0]["address"].startswith("10.99.0.")  # host-local's subnet, not netalloc's
    ptp_host = result["interfaces"][0]["name"]
    assert ptp_host.startswith("veth") and ptp_host in snapshot(cni.lab.node)["links"]
    assert pod_view(cni.lab.pods[0])["addresses"] == {result["ips"][0]["address"]}
    assert list((cni.ipam_dir / "netalloc").iterdir())  # host-local recorded its lease
    for _ in range(2):
        gone = plugin(cni, "DEL", cni.conf(), "c-out", netns, pod)
        assert gone.code == 0, gone.stdout
    assert snapshot(cni.lab.node)["links"] == before["links"]
    assert not [p for p in (cni.ipam_dir / "netalloc").iterdir() if p.name.startswith("10.99.")]


def test_check_passes_then_names_what_went_missing(cni: Cni) -> None:
    cni.lab.route_prefix("10.77.1.0/28")
    cni.pna("checked", "PrefixIP", ip="10.77.1.9", prefix="10.77.1.0/28")
    netns = cni.lab.pod("checked")
    conf = cni.conf()
    added = plugin(cni, "ADD", conf, "c-chk", netns, managed("checked"))
    assert added.code == 0, added.stdout
    ok = plugin(cni, "CHECK", {**conf, "prevResult": added.json}, "c-chk", netns, managed("checked"))
    assert (ok.code, ok.stdout) == (0, ""), ok.stdout
    with ipr_in(cni.lab.pods[0]) as pod:
        pod.route("del", dst="0.0.0.0/0", gateway="169.254.1.1")
    broken = plugin(cni, "CHECK", {**conf, "prevResult": added.json}, "c-chk", netns, managed("checked"))
    assert_error(broken, errors.CHECK_FAILED, "default route via 169.254.1.1 is missing")


def test_del_succeeds_when_the_netns_is_already_gone(cni: Cni) -> None:
    cni.pna("gone", "PrefixIP", ip="10.77.1.10", prefix="10.77.1.0/28")
    before = snapshot(cni.lab.node)
    netns = cni.lab.pod("gone")
    conf = cni.conf()
    assert plugin(cni, "ADD", conf, "c-gone", netns, managed("gone")).code == 0
    cni.lab.close_pod(cni.lab.pods[0])
    for _ in range(2):
        done = plugin(cni, "DEL", conf, "c-gone", netns, managed("gone"))
        assert (done.code, done.stdout) == (0, ""), done.stdout
    assert snapshot(cni.lab.node) == before


@pytest.mark.parametrize("version", ["1.0.0", "0.4.0"])
def test_version(cni: Cni, version: str) -> None:
    done = plugin(cni, "VERSION", {"cniVersion": version}, "")
    assert done.code == 0
    assert done.json == {"cniVersion": version, "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]}


def test_del_without_a_record_still_removes_the_veth_named_after_the_container(cni: Cni) -> None:
    """A lost state dir: DEL cannot know the pod was netalloc's, so it runs the delegate's DEL (which
    tolerates an unknown container) and removes the host veth derived from the container id."""
    cni.pna("amnesia", "PrefixIP", ip="10.77.1.13", prefix="10.77.1.0/28")
    before = snapshot(cni.lab.node)
    netns = cni.lab.pod("amnesia")
    conf = cni.conf()
    assert plugin(cni, "ADD", conf, "c-amnesia", netns, managed("amnesia")).code == 0
    for record in cni.state_dir.iterdir():
        record.unlink()
    done = plugin(cni, "DEL", conf, "c-amnesia", netns, managed("amnesia"))
    assert (done.code, done.stdout) == (0, ""), done.stdout
    assert snapshot(cni.lab.node) == before


def test_a_shared_eni_pod_is_wired_as_an_address_on_a_node_eni(cni: Cni) -> None:
    """SharedENI: an address on an ENI the node's pods of one group set share; the node side wires it
    as it wires a secondary IP (host route in the main table), with no VLAN."""
    lab = cni.lab
    lab.route_prefix("10.77.1.0/28")
    before = snapshot(lab.node)
    cni.pna("shared", "SharedENI", ip="10.77.1.6")
    netns = lab.pod("shared")
    conf = cni.conf()
    added = plugin(cni, "ADD", conf, "c-shared", netns, managed("shared"))
    assert added.code == 0, added.stdout
    assert added.json["ips"] == [{"address": "10.77.1.6/32", "gateway": "169.254.1.1", "interface": 1}]
    tables = {(route[0], route[1], route[3]) for route in snapshot(lab.node)["routes"]}
    assert (254, "10.77.1.6", None) in tables
    assert ping(lab.pods[0], lab.gateway), "shared ENI pod cannot reach the VPC"
    for _ in range(2):
        done = plugin(cni, "DEL", conf, "c-shared", netns, managed("shared"))
        assert (done.code, done.stdout) == (0, ""), done.stdout
    assert snapshot(lab.node) == before
