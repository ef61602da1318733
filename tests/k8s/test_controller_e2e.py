"""The real kopf controller over HTTP against the API emulator, with the simulated VPC behind it.

Every test also checks that the controller sent no request that modifies a Pod.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import pytest

from controller.core.node_pool import BranchState
from controller.k8s.sandbox import Sandbox

pytestmark = pytest.mark.slow


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox.running(seed=3) as running:
        running.add_security_group_policy("web-sg", "web", [running.fleet.app_groups[0]])
        yield running
        assert running.emulator.pod_writes() == [], "the controller wrote to a Pod"


def pool_ready(sandbox: Sandbox, count: int) -> bool:
    """`count` pools at their warm targets (made in the background once the trunk is there)."""
    warm = sandbox.pool.warm_branch_eni_target if sandbox.pool.enable_pod_eni else 0

    def ready(status: dict[str, object]) -> bool:
        branches = status.get("branchEnis") or {}
        return bool(status.get("freeIps")) and int(branches.get("warm", 0)) >= warm  # type: ignore[union-attr]

    return sum(1 for p in sandbox.pools() if ready(p.get("status") or {})) == count


async def test_node_registration_gives_a_pre_allocated_pool(sandbox: Sandbox) -> None:
    sandbox.add_node("node-a", "c5.4xlarge")
    await sandbox.wait_for(lambda: pool_ready(sandbox, 1))
    (nnp,) = sandbox.pools()
    status = nnp["status"]
    assert nnp["spec"]["instanceId"] == sandbox.instances["node-a"]
    assert nnp["metadata"]["ownerReferences"][0]["kind"] == "Node"
    assert status["trunkEniId"].startswith("eni-")
    assert status["branchEnis"]["warm"] == sandbox.pool.warm_branch_eni_target
    assert status["freeIps"] == 16 * sandbox.pool.warm_prefix_target
    assert status["limits"]["branchEnis"] == 54
    trunk = sandbox.fleet.vpc.network_interface(status["trunkEniId"])
    assert trunk is not None and trunk.attachment is not None
    assert trunk.attachment.instance_id == sandbox.instances["node-a"]


async def test_fifty_pods_get_fifty_distinct_allocations_consistent_with_the_vpc(sandbox: Sandbox) -> None:
    for name in ("node-a", "node-b"):
        sandbox.add_node(name, "c5.4xlarge")
    await sandbox.wait_for(lambda: pool_ready(sandbox, 2))
    for i in range(50):
        sandbox.add_pod(f"pod-{i}", f"node-{'ab'[i % 2]}", app="web" if i % 3 == 0 else "api")
    await sandbox.wait_for(lambda: len(sandbox.allocated()) == 50, timeout=60)
    pnas = sandbox.allocated()
    ips = [p["status"]["ip"] for p in pnas]
    assert len(set(ips)) == 50
    branch_enis = [p["status"]["eniId"] for p in pnas if p["spec"]["mode"] == "BranchENI"]
    assert len(branch_enis) == len(set(branch_enis)) == 17
    vpc = sandbox.fleet.vpc
    for pna in pnas:
        status = pna["status"]
        eni = vpc.network_interface(status["eniId"])
        assert eni is not None, status["eniId"]
        assert pna["metadata"]["ownerReferences"][0]["uid"] == pna["spec"]["podUID"]
        if pna["spec"]["mode"] == "BranchENI":
            assert eni.private_ip == status["ip"]
            assert eni.security_group_ids == (sandbox.fleet.app_groups[0],)
            assert status["vlanId"] >= 1
        else:
            assert status["prefix"] in eni.prefixes
            assert ipaddress.ip_address(status["ip"]) in ipaddress.ip_network(status["prefix"])
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"


async def test_pod_deletion_removes_its_pna_and_returns_the_branch_eni_to_the_pool(sandbox: Sandbox) -> None:
    sandbox.add_node("node-a", "c5.4xlarge")
    await sandbox.wait_for(lambda: pool_ready(sandbox, 1))
    sandbox.add_pod("web-1", "node-a", app="web")
    await sandbox.wait_for(lambda: len(sandbox.allocated()) == 1)
    eni_id = sandbox.allocated()[0]["status"]["eniId"]
    runtime = sandbox.runtime
    assert runtime is not None
    pool = runtime.networks["node-a"].pool
    assert pool.branches[eni_id].state is BranchState.ASSIGNED
    sandbox.delete_pod("web-1")
    await sandbox.wait_for(lambda: not sandbox.pnas())
    assert pool.branches[eni_id].state is BranchState.COOLING
    assert pool.branches[eni_id].holder is None
    assert sandbox.fleet.vpc.network_interface(eni_id) is not None  # kept for reuse, not deleted


async def test_node_deletion_releases_everything_and_leaks_no_eni(sandbox: Sandbox) -> None:
    sandbox.add_node("node-a", "c5.4xlarge")
    await sandbox.wait_for(lambda: pool_ready(sandbox, 1))
    for i in range(6):
        sandbox.add_pod(f"pod-{i}", "node-a", app="web" if i % 2 else "api")
    await sandbox.wait_for(lambda: len(sandbox.allocated()) == 6)
    assert sandbox.fleet.census().total > 0
    for i in range(6):
        sandbox.delete_pod(f"pod-{i}")
    sandbox.delete_node("node-a")
    await sandbox.wait_for(lambda: not sandbox.pools() and not sandbox.pnas(), timeout=60)
    assert sandbox.fleet.census().total == 0
    primary = sandbox.fleet.vpc.network_interface(sandbox.fleet.vpc.instances()[0].primary_eni_id)
    assert primary is not None and primary.prefixes == () and primary.secondary_ips == ()


async def test_pods_outside_managed_namespaces_and_host_network_pods_get_nothing(sandbox: Sandbox) -> None:
    sandbox.add_node("node-a", "c5.4xlarge")
    await sandbox.wait_for(lambda: pool_ready(sandbox, 1))
    sandbox.emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}})
    sandbox.add_pod("elsewhere", "node-a", namespace="other")
    sandbox.emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "host", "namespace": "shop"},
            "spec": {"nodeName": "node-a", "hostNetwork": True, "containers": [{"name": "c", "image": "x"}]},
        }
    )
    sandbox.add_pod("managed", "node-a")
    await sandbox.wait_for(lambda: len(sandbox.allocated()) == 1)
    assert [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in sandbox.pnas()] == [
        ("shop", "managed")
    ]
