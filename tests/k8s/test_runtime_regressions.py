"""One regression test per defect of the runtime issue (numbered as in the issue), end to end.

Each runs the real kopf controller over HTTP against the API emulator without garbage collection
(a real API server without controller-manager), with the shipped RBAC enforced, and the simulated
VPC as EC2; "crash" is SIGKILL semantics (see controller.k8s.harness).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from controller.core.instance_limits import UnknownInstanceTypeError
from controller.core.node_pool import BranchState
from controller.k8s.api_emulator import ApiFault
from controller.k8s.harness import MANAGED_NAMESPACE, SimCluster, fast_config, wait_until
from controller.settings import PoolSettings

pytestmark = pytest.mark.slow
PNA = ("netalloc.dev/v1alpha1", "PodNetworkAllocation")
SGP = ("vpcresources.k8s.aws/v1beta1", "SecurityGroupPolicy")
TIMEOUT = 20.0


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[SimCluster]:
    marker = request.node.get_closest_marker("pool")
    pool = marker.args[0] if marker else None
    with SimCluster(config=fast_config(pool), seed=7) as running:
        running.add_security_group_policy("web-sg", "web", [running.fleet.app_groups[0]])
        yield running
        assert running.emulator.pod_writes() == [], "the controller wrote to a Pod"
        assert not [r for r in running.emulator.requests if r.status == 403], (
            "the shipped RBAC refused a request"
        )


def status(pna: dict[str, Any]) -> dict[str, Any]:
    return pna.get("status") or {}


def by_name(cluster: SimCluster) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in cluster.pnas()}


def allocated(cluster: SimCluster, names: list[str]) -> bool:
    pnas = by_name(cluster)
    pods = {p["metadata"]["name"]: p["metadata"]["uid"] for p in cluster.pods()}
    return all(
        n in pnas and status(pnas[n]).get("state") == "Allocated" and pnas[n]["spec"]["podUID"] == pods.get(n)
        for n in names
    )


def assert_nothing_held_twice(cluster: SimCluster) -> None:
    ips: dict[str, str] = {}
    branches: dict[str, str] = {}
    for pna in cluster.allocated():
        name, held = pna["metadata"]["name"], status(pna)
        assert held["ip"] not in ips, f"{held['ip']} held by {ips.get(held['ip'])} and {name}"
        ips[held["ip"]] = name
        if pna["spec"]["mode"] == "BranchENI":
            assert held["eniId"] not in branches, (
                f"{held['eniId']} held by {branches.get(held['eniId'])} and {name}"
            )
            branches[held["eniId"]] = name


def pods(cluster: SimCluster, node: str, names: list[str], app: str = "api") -> list[str]:
    for name in names:
        cluster.add_pod(name, node, app=app)
    return names


def held_keys(cluster: SimCluster, node: str) -> set[str]:
    controller = cluster.controller
    assert controller is not None and controller.runtime is not None
    runtime = controller.runtime
    return cluster.in_controller(
        lambda: runtime.networks[node].held_keys() if node in runtime.networks else set()
    )


# ----- 1. live ENIs deleted after a restart  ---


def test_01_a_pool_that_cannot_be_registered_after_a_restart_keeps_its_live_enis(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    names = pods(cluster, "n1", ["web-1", "web-2"], app="web") + pods(cluster, "n1", ["api-1"])
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)
    before = {n: status(p) for n, p in by_name(cluster).items()}
    trunk = cluster.pools()[0]["status"]["trunkEniId"]
    cluster.crash_controller()
    cluster.in_controller(lambda: cluster.fleet.vpc.faults.inject_throttling("DescribeInstances", times=200))
    cluster.start_controller()
    time.sleep(2.0)  # a few leak sweeps (every 0.3 s) while the node's pool cannot be registered
    vpc = cluster.fleet.vpc
    for eni_id in [trunk, *(s["eniId"] for s in before.values())]:
        assert cluster.in_controller(lambda eni_id=eni_id: vpc.network_interface(eni_id)) is not None, eni_id
    cluster.in_controller(vpc.faults.clear)
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)
    assert {n: status(p)["ip"] for n, p in by_name(cluster).items()} == {
        n: s["ip"] for n, s in before.items()
    }


# ----- 2. addresses given twice after a restart  ---


def test_02_a_failed_registration_loses_no_record_and_gives_no_address_twice(cluster: SimCluster) -> None:
    cluster.add_node("n1", "m5.large")
    cluster.start_controller()
    first = pods(cluster, "n1", [f"old-{i}" for i in range(6)])
    assert wait_until(lambda: allocated(cluster, first), timeout=TIMEOUT)
    cluster.crash_controller()
    cluster.in_controller(
        lambda: cluster.fleet.vpc.inject(
            "DescribeNetworkInterfaces", "InternalError", "An internal error has occurred.", http_status=500
        )
    )
    cluster.start_controller()
    second = pods(cluster, "n1", [f"new-{i}" for i in range(6)])
    assert wait_until(lambda: allocated(cluster, first + second), timeout=TIMEOUT)
    assert_nothing_held_twice(cluster)


# ----- 3. killed while pods are deleted: orphans and duplicates  ---


def test_03_pods_deleted_while_the_controller_is_down_lose_their_pnas_without_garbage_collection(
    cluster: SimCluster,
) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    names = pods(cluster, "n1", [f"web-{i}" for i in range(5)], app="web") + pods(
        cluster, "n1", [f"api-{i}" for i in range(5)]
    )
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)
    cluster.crash_controller()
    gone = ["web-0", "web-1", "api-0", "api-1"]
    for name in gone:
        cluster.delete_pod(name)
    cluster.start_controller()
    assert wait_until(lambda: not set(gone) & set(by_name(cluster)), timeout=TIMEOUT), "orphan PNAs stayed"
    fresh = pods(cluster, "n1", ["web-10", "web-11"], app="web") + pods(cluster, "n1", ["api-10", "api-11"])
    kept = [n for n in names if n not in gone]
    assert wait_until(lambda: allocated(cluster, kept + fresh), timeout=TIMEOUT)
    assert len(cluster.pnas()) == len(kept + fresh)
    assert_nothing_held_twice(cluster)


def test_03_a_node_replaced_under_the_same_name_gets_its_pods_allocated_again(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    names = pods(cluster, "n1", ["web-1"], app="web") + pods(cluster, "n1", ["api-1", "api-2"])
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)
    old = {n: status(p)["eniId"] for n, p in by_name(cluster).items()}
    cluster.delete_node("n1")
    cluster.add_node("n1")  # a new instance, the same node name; the pods are still bound to it
    new_instance = cluster.instances["n1"]
    vpc = cluster.fleet.vpc

    def on_new_instance() -> bool:
        for pna in cluster.allocated():
            eni = cluster.in_controller(lambda pna=pna: vpc.network_interface(status(pna)["eniId"]))
            if (
                eni is None
                or (
                    eni.tags.get("netalloc.dev/instance")
                    or (eni.attachment.instance_id if eni.attachment else "")
                )
                != new_instance
            ):
                return False
        return allocated(cluster, names)

    assert wait_until(on_new_instance, timeout=TIMEOUT), "PNAs kept resources the drain had released"
    assert all(status(p)["eniId"] != old[n] for n, p in by_name(cluster).items())


# ----- 4. a transient association error became a permanent Failed  ---


@pytest.mark.pool(PoolSettings(enable_pod_eni=True, warm_branch_eni_target=0, branch_cooldown_s=0.3))
def test_04_a_failed_association_is_retried_with_a_new_branch_not_failed(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    assert wait_until(
        lambda: bool(cluster.pools() and status(cluster.pools()[0]).get("trunkEniId")), timeout=TIMEOUT
    )
    vpc = cluster.fleet.vpc
    cluster.in_controller(
        lambda: vpc.inject(
            "AssociateTrunkInterface",
            "InternalError",
            "An internal error has occurred.",
            times=6,
            http_status=500,
        )
    )
    cluster.add_pod("web-1", "n1", app="web")
    assert wait_until(
        lambda: (
            allocated(cluster, ["web-1"])
            or status(by_name(cluster).get("web-1", {})).get("state") == "Failed"
        ),
        timeout=TIMEOUT,
    )
    assert status(by_name(cluster)["web-1"])["state"] == "Allocated", status(by_name(cluster)["web-1"])


# ----- 5. one failed status write hid an allocation for good  ---


def test_05_a_refused_status_write_is_made_again(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    assert wait_until(lambda: bool(cluster.pools()), timeout=TIMEOUT)
    for code in (500, 422, 409):
        cluster.emulator.inject_fault(
            ApiFault(methods=frozenset({"PATCH"}), path=r"/podnetworkallocations/.*/status$", code=code)
        )
    names = pods(cluster, "n1", ["api-1"])
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)


def test_05_a_refused_pool_status_write_is_made_again_and_the_leak_sweep_still_runs(
    cluster: SimCluster,
) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    assert wait_until(
        lambda: bool(cluster.pools() and status(cluster.pools()[0]).get("freeIps")), timeout=TIMEOUT
    )
    controller = cluster.controller
    assert controller is not None and controller.runtime is not None
    sweeps = controller.runtime.ctx.metrics.leak_sweeps.labels(outcome="ran")
    cluster.emulator.inject_fault(
        ApiFault(methods=frozenset({"PATCH"}), path=r"/nodenetworkpools/.*/status$", code=500, times=1000)
    )
    names = pods(cluster, "n1", ["api-1", "api-2"])
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)
    before = sweeps._value.get()
    time.sleep(1.5)  # every pool status write fails meanwhile
    assert sweeps._value.get() >= before + 2, "the leak sweep stopped with the pool status writes"
    cluster.emulator.clear_faults()
    assert wait_until(lambda: status(cluster.pools()[0]).get("usedIps") == 2, timeout=TIMEOUT), status(
        cluster.pools()[0]
    )


# ----- 6. capacity leaked when a PNA went without a real release  ---


def test_06_a_release_waits_for_the_pool_instead_of_releasing_against_nothing(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    names = pods(cluster, "n1", ["web-1"], app="web")
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)
    branch = status(by_name(cluster)["web-1"])["eniId"]
    cluster.crash_controller()
    cluster.delete_pod("web-1")
    cluster.in_controller(lambda: cluster.fleet.vpc.faults.inject_throttling("DescribeInstances", times=10))
    cluster.start_controller()
    assert wait_until(lambda: not cluster.pnas(), timeout=TIMEOUT)
    controller = cluster.controller
    assert controller is not None and controller.runtime is not None
    runtime = controller.runtime

    def returned() -> bool:
        network = runtime.networks.get("n1")
        return (
            network is not None
            and network.pool.branches.get(branch) is not None
            and network.pool.branches[branch].holder is None
        )

    assert wait_until(lambda: cluster.in_controller(returned), timeout=TIMEOUT), "the branch ENI stayed held"


def test_06_a_pna_gone_without_netalloc_s_release_gives_its_pod_s_address_back(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    names = pods(cluster, "n1", ["api-1"])
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)
    key = f"{MANAGED_NAMESPACE}/api-1/{by_name(cluster)['api-1']['spec']['podUID']}"
    emulator = cluster.emulator
    emulator.patch(*PNA, "api-1", {"metadata": {"finalizers": None}}, namespace=MANAGED_NAMESPACE)
    emulator.delete(*PNA, "api-1", MANAGED_NAMESPACE)  # DELETED, no finalizer of ours ran
    cluster.delete_pod("api-1")
    assert wait_until(lambda: key not in held_keys(cluster, "n1"), timeout=TIMEOUT), "the address stayed held"


def test_06_a_hand_made_pna_for_no_pod_is_removed_and_holds_nothing(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    assert wait_until(lambda: bool(cluster.pools()), timeout=TIMEOUT)
    cluster.emulator.create(
        {
            "apiVersion": PNA[0],
            "kind": PNA[1],
            "metadata": {"name": "ghost", "namespace": MANAGED_NAMESPACE},
            "spec": {
                "podName": "ghost",
                "podUID": "00000000-0000-0000-0000-000000000001",
                "nodeName": "n1",
                "mode": "BranchENI",
                "securityGroupIds": [cluster.fleet.app_groups[1]],
            },
        }
    )
    assert wait_until(lambda: "ghost" not in by_name(cluster), timeout=TIMEOUT)
    time.sleep(0.5)
    assert not any("/ghost/" in key for key in held_keys(cluster, "n1"))


# ----- 7. pods that waited forever  ---


def test_07_a_pod_recreated_under_the_same_name_gets_its_own_pna(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    pods(cluster, "n1", ["app-1"])
    assert wait_until(lambda: allocated(cluster, ["app-1"]), timeout=TIMEOUT)
    cluster.delete_pod("app-1")
    cluster.add_pod("app-1", "n1", app="web")
    assert wait_until(lambda: allocated(cluster, ["app-1"]), timeout=TIMEOUT)
    assert by_name(cluster)["app-1"]["spec"]["mode"] == "BranchENI"


def test_07_a_pna_whose_create_failed_once_is_created_again(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    cluster.emulator.inject_fault(
        ApiFault(methods=frozenset({"POST"}), path=r"/podnetworkallocations$", code=500)
    )
    names = pods(cluster, "n1", ["api-1"])
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)


def test_07_a_pna_deleted_by_hand_is_recreated_and_its_pod_keeps_its_address(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    names = pods(cluster, "n1", ["api-1"]) + pods(cluster, "n1", ["web-1"], app="web")
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)
    before = {n: (status(p)["ip"], p["metadata"]["uid"]) for n, p in by_name(cluster).items()}
    for name in names:
        cluster.emulator.delete(*PNA, name, MANAGED_NAMESPACE)

    def recreated() -> bool:
        now = by_name(cluster)
        return allocated(cluster, names) and all(now[n]["metadata"]["uid"] != before[n][1] for n in names)

    assert wait_until(recreated, timeout=TIMEOUT)
    assert {n: status(p)["ip"] for n, p in by_name(cluster).items()} == {
        n: ip for n, (ip, _) in before.items()
    }


# ----- 8. stale caches after a relist  ---


def test_08_a_policy_deleted_during_a_watch_gap_is_not_applied_to_new_pods(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    assert wait_until(lambda: bool(cluster.pools()), timeout=TIMEOUT)
    emulator = cluster.emulator
    emulator.expire_watch_history()
    emulator.drop_watches()
    emulator.delete(*SGP, "web-sg", MANAGED_NAMESPACE)  # no DELETED event reaches anyone
    time.sleep(1.0)
    pods(cluster, "n1", ["web-1"], app="web")
    assert wait_until(lambda: allocated(cluster, ["web-1"]), timeout=TIMEOUT)
    assert by_name(cluster)["web-1"]["spec"]["mode"] != "BranchENI"


def test_08_a_pod_deleted_during_a_watch_gap_loses_its_pna(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    pods(cluster, "n1", ["api-1", "api-2"])
    assert wait_until(lambda: allocated(cluster, ["api-1", "api-2"]), timeout=TIMEOUT)
    emulator = cluster.emulator
    emulator.expire_watch_history()
    emulator.drop_watches()
    cluster.delete_pod("api-1")
    assert wait_until(lambda: set(by_name(cluster)) == {"api-2"}, timeout=TIMEOUT)


# ----- 9. serviceAccountSelector  ---


def test_09_a_service_account_selector_matches_through_the_service_account_s_labels(
    cluster: SimCluster,
) -> None:
    group = cluster.fleet.app_groups[2]
    cluster.emulator.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "payments", "namespace": MANAGED_NAMESPACE, "labels": {"team": "pay"}},
        }
    )
    cluster.emulator.create(
        {
            "apiVersion": SGP[0],
            "kind": SGP[1],
            "metadata": {"name": "pay-sg", "namespace": MANAGED_NAMESPACE},
            "spec": {
                "serviceAccountSelector": {"matchLabels": {"team": "pay"}},
                "securityGroups": {"groupIds": [group]},
            },
        }
    )
    cluster.add_node("n1")
    cluster.start_controller()
    cluster.emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "pay-1", "namespace": MANAGED_NAMESPACE, "labels": {"app": "api"}},
            "spec": {
                "nodeName": "n1",
                "serviceAccountName": "payments",
                "containers": [{"name": "c", "image": "x"}],
            },
        }
    )
    assert wait_until(lambda: allocated(cluster, ["pay-1"]), timeout=TIMEOUT)
    pna = by_name(cluster)["pay-1"]
    assert pna["spec"]["mode"] == "BranchENI"
    assert status(pna)["securityGroupIds"] == [group]


# ----- 10. one bad security-group id degraded a whole node  ---


@pytest.mark.pool(PoolSettings(enable_pod_eni=True, warm_branch_eni_target=2, branch_cooldown_s=0.3))
def test_10_a_bad_group_fails_its_pod_only_and_the_warm_pool_keeps_refilling(cluster: SimCluster) -> None:
    cluster.add_security_group_policy("bad-sg", "bad", ["sg-00000000000000bad"])
    cluster.add_node("n1")
    cluster.start_controller()
    pods(cluster, "n1", ["bad-1"], app="bad")
    assert wait_until(
        lambda: status(by_name(cluster).get("bad-1", {})).get("state") == "Failed", timeout=TIMEOUT
    )
    assert status(by_name(cluster)["bad-1"])["reason"] == "InvalidSecurityGroupIDNotFound"
    names = pods(cluster, "n1", ["web-1", "web-2", "web-3"], app="web")
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)

    def refilled() -> bool:
        pool = status(cluster.pools()[0])
        ready = next(c for c in pool["conditions"] if c["type"] == "Ready")
        return (
            pool["branchEnis"]["warm"] + pool["branchEnis"]["coolingDown"] >= 2 and ready["status"] == "True"
        )

    assert wait_until(refilled, timeout=TIMEOUT), status(cluster.pools()[0])


# ----- 11. a lost answer to AssignPrivateIpAddresses leaked addresses  ---


@pytest.mark.pool(
    PoolSettings(enable_pod_eni=False, warm_ip_target=2, ip_cooldown_s=0.3, excess_release_delay_s=60)
)
def test_11_an_assign_whose_answer_was_lost_leaks_no_address(cluster: SimCluster) -> None:
    cluster.add_node("n1", "m5.xlarge")
    cluster.start_controller()
    assert wait_until(
        lambda: bool(cluster.pools() and status(cluster.pools()[0]).get("freeIps")), timeout=TIMEOUT
    )
    vpc = cluster.fleet.vpc
    cluster.in_controller(
        lambda: vpc.inject(
            "AssignPrivateIpAddresses",
            "InternalError",
            "An internal error has occurred.",
            http_status=500,
            after_effect=True,
        )
    )
    names = pods(cluster, "n1", [f"api-{i}" for i in range(6)])
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)
    controller = cluster.controller
    assert controller is not None and controller.runtime is not None
    runtime = controller.runtime

    def agree() -> bool:
        pool = runtime.networks["n1"].pool
        for eni_id, eni in pool.enis.items():
            found = vpc.network_interface(eni_id)
            if found is None or sorted(found.secondary_ips) != sorted(eni.ips):
                return False
        return True

    assert wait_until(lambda: cluster.in_controller(agree), timeout=TIMEOUT), (
        "EC2 holds addresses the pool does not know"
    )


# ----- 13. no clear reason when a node cannot get a pool  ---


def message_of(cluster: SimCluster, name: str) -> str:
    held = status(by_name(cluster).get(name, {}))
    return f"{held.get('reason')}: {held.get('message')}"


def test_13_a_pod_on_a_node_without_providerid_or_without_node_says_why(cluster: SimCluster) -> None:
    cluster.emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "onprem", "labels": {"node.kubernetes.io/instance-type": "m5.large"}},
            "spec": {},
        }
    )
    cluster.start_controller()
    pods(cluster, "onprem", ["a"])
    pods(cluster, "nowhere", ["b"])
    assert wait_until(lambda: "no EC2 providerID" in message_of(cluster, "a"), timeout=TIMEOUT), message_of(
        cluster, "a"
    )
    assert wait_until(lambda: "nowhere does not exist" in message_of(cluster, "b"), timeout=TIMEOUT), (
        message_of(cluster, "b")
    )
    assert status(by_name(cluster)["a"])["state"] == "WaitingForCapacity"


def test_13_an_unknown_instance_type_is_named_in_the_pool_and_the_pod(cluster: SimCluster) -> None:
    async def no_limits(instance_type: str) -> Any:
        raise UnknownInstanceTypeError(instance_type)

    cluster.limits_for = no_limits
    cluster.add_node("n1", "m5.large")
    cluster.start_controller()
    pods(cluster, "n1", ["api-1"])

    def pool_says() -> bool:
        pools = cluster.pools()
        ready = (
            next((c for c in status(pools[0]).get("conditions", []) if c["type"] == "Ready"), None)
            if pools
            else None
        )
        return (
            ready is not None and ready["reason"] == "UnknownInstanceType" and "m5.large" in ready["message"]
        )

    assert wait_until(pool_says, timeout=TIMEOUT), cluster.pools()
    assert wait_until(lambda: "UnknownInstanceType" in message_of(cluster, "api-1"), timeout=TIMEOUT), (
        message_of(cluster, "api-1")
    )


def test_13_an_ec2_error_storm_is_shown_and_retried_without_a_node_change(cluster: SimCluster) -> None:
    cluster.in_controller(lambda: cluster.fleet.vpc.faults.inject_throttling("DescribeInstances", times=30))
    cluster.add_node("n1")
    cluster.start_controller()
    pods(cluster, "n1", ["api-1"])

    def shown() -> bool:
        pools = cluster.pools()
        ready = (
            next((c for c in status(pools[0]).get("conditions", []) if c["type"] == "Ready"), None)
            if pools
            else None
        )
        return ready is not None and ready["reason"] == "RequestLimitExceeded"

    assert wait_until(shown, timeout=TIMEOUT), cluster.pools()
    assert wait_until(lambda: allocated(cluster, ["api-1"]), timeout=TIMEOUT)  # no Node event in between


# ----- 14. smaller  ---


def test_14_the_pool_ready_condition_keeps_its_transition_time(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()

    def ready_since() -> str | None:
        pools = cluster.pools()
        conditions = status(pools[0]).get("conditions", []) if pools else []
        ready = next((c for c in conditions if c["type"] == "Ready" and c["status"] == "True"), None)
        return ready["lastTransitionTime"] if ready else None

    assert wait_until(lambda: ready_since() is not None, timeout=TIMEOUT)
    since = ready_since()
    version = cluster.pools()[0]["metadata"]["resourceVersion"]
    time.sleep(1.1)  # metav1.Time has whole seconds
    names = pods(cluster, "n1", [f"api-{i}" for i in range(4)])
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)
    assert wait_until(
        lambda: status(cluster.pools()[0]).get("usedIps") == 4, timeout=TIMEOUT
    )  # rewritten since
    assert cluster.pools()[0]["metadata"]["resourceVersion"] != version
    assert ready_since() == since


def test_14_the_pool_spec_follows_a_change_of_settings(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    assert wait_until(lambda: bool(cluster.pools()), timeout=TIMEOUT)
    assert cluster.pools()[0]["spec"]["mode"] == "SecondaryIP"
    cluster.stop_controller()
    cluster.start_controller(fast_config(PoolSettings(enable_pod_eni=True, enable_prefix_delegation=True)))
    assert wait_until(lambda: cluster.pools()[0]["spec"]["mode"] == "PrefixDelegation", timeout=TIMEOUT)


def test_14_releasing_and_released_are_events(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    pods(cluster, "n1", ["api-1"])
    assert wait_until(lambda: allocated(cluster, ["api-1"]), timeout=TIMEOUT)
    cluster.delete_pod("api-1")

    def reasons() -> set[str]:
        events = cluster.emulator.list("v1", "Event", namespace=MANAGED_NAMESPACE)
        return {e["reason"] for e in events if e["involvedObject"]["name"] == "api-1"}

    assert wait_until(lambda: {"Releasing", "Released"} <= reasons(), timeout=TIMEOUT), reasons()


def test_unreadable_status_keeps_its_address_out_of_the_pool_and_is_reported(cluster: SimCluster) -> None:
    cluster.add_node("n1", "m5.large")
    cluster.start_controller()
    pods(cluster, "n1", ["api-1"])
    assert wait_until(lambda: allocated(cluster, ["api-1"]), timeout=TIMEOUT)
    held = status(by_name(cluster)["api-1"])
    cluster.crash_controller()
    # a status the API server accepts but netalloc cannot read back (Allocated after no attempt)
    cluster.emulator.patch(
        *PNA,
        "api-1",
        {"status": {"attempts": 0, "conditions": None}},
        namespace=MANAGED_NAMESPACE,
        subresource="status",
    )
    cluster.start_controller()
    names = pods(cluster, "n1", [f"new-{i}" for i in range(8)])
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT)
    assert held["ip"] not in {
        status(p)["ip"] for p in cluster.allocated() if p["metadata"]["name"] != "api-1"
    }

    def reported() -> bool:
        events = cluster.emulator.list("v1", "Event", namespace=MANAGED_NAMESPACE)
        return any(
            e["reason"] == "StatusUnreadable" and e["involvedObject"]["name"] == "api-1" for e in events
        )

    assert wait_until(reported, timeout=TIMEOUT)


def test_warm_branches_cool_down_and_come_back_without_a_new_eni(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    pods(cluster, "n1", ["web-1"], app="web")
    assert wait_until(lambda: allocated(cluster, ["web-1"]), timeout=TIMEOUT)
    branch = status(by_name(cluster)["web-1"])["eniId"]
    cluster.delete_pod("web-1")
    controller = cluster.controller
    assert controller is not None and controller.runtime is not None
    runtime = controller.runtime
    assert wait_until(
        lambda: cluster.in_controller(
            lambda: runtime.networks["n1"].pool.branches[branch].state is not BranchState.ASSIGNED
        ),
        timeout=TIMEOUT,
    )
