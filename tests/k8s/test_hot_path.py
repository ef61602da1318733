"""The allocation hot path, end to end: what the controller writes for a pod on a warm pool.

Counted by the API emulator per client (the controller's bearer token), as an API server's audit log
would: a pod served from a warm pool costs the PNA create and one status patch, no Event; a pod that
had to wait is told with Events, the wait and the recovery.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from controller.k8s.harness import MANAGED_NAMESPACE, SimCluster, fast_config, wait_until
from controller.settings import PoolSettings

pytestmark = pytest.mark.slow
TIMEOUT = 20.0
CONTROLLER = "harness"  # ControllerProcess's bearer token


@pytest.fixture
def cluster() -> Iterator[SimCluster]:
    pool = PoolSettings(enable_pod_eni=True, warm_ip_target=8, warm_branch_eni_target=2)
    with SimCluster(config=fast_config(pool), seed=3) as running:
        yield running
        assert running.emulator.pod_writes() == [], "the controller wrote to a Pod"


def status(body: dict[str, Any]) -> dict[str, Any]:
    return body.get("status") or {}


def warm(cluster: SimCluster, ips: int, branches: int) -> bool:
    pools = cluster.pools()
    return bool(pools) and all(
        status(p).get("freeIps", 0) >= ips and (status(p).get("branchEnis") or {}).get("warm", 0) >= branches
        for p in pools
    )


def allocated(cluster: SimCluster, names: list[str]) -> bool:
    states = {p["metadata"]["name"]: status(p).get("state") for p in cluster.pnas()}
    return all(states.get(name) == "Allocated" for name in names)


def controller_writes(cluster: SimCluster) -> dict[str, int]:
    counts: dict[str, int] = cluster.emulator.request_counts(CONTROLLER)["requests"]
    return {
        label: n
        for label, n in counts.items()
        if label.split()[0] in ("create", "update", "patch", "delete") and "leases" not in label
    }


def events(cluster: SimCluster, pod: str) -> list[tuple[str, str]]:
    found = cluster.emulator.list("v1", "Event", namespace=MANAGED_NAMESPACE)
    return [(e["type"], e["reason"]) for e in found if e["involvedObject"]["name"] == pod]


def test_a_pod_on_a_warm_pool_costs_the_pna_create_and_one_status_patch(cluster: SimCluster) -> None:
    cluster.add_security_group_policy("web-sg", "web", [cluster.fleet.vpc.default_security_group_id])
    cluster.add_node("n1")
    cluster.start_controller()
    assert wait_until(lambda: warm(cluster, ips=8, branches=2), timeout=TIMEOUT), cluster.pools()
    time.sleep(0.5)  # the pool's own status writes settle
    cluster.emulator.clear_requests()
    names = ["api-1", "api-2", "api-3", "web-1"]
    for name in names:
        cluster.add_pod(name, "n1", app="web" if name.startswith("web") else "api")
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT), cluster.pnas()
    time.sleep(0.5)  # anything that trails the status patch (an Event) is counted too
    writes = controller_writes(cluster)
    per_pod = {label: n for label, n in writes.items() if "nodenetworkpools" not in label}
    assert per_pod == {
        "create podnetworkallocations": len(names),
        "patch podnetworkallocations/status": len(names),
    }, writes
    assert all(events(cluster, name) == [] for name in names)
    web = next(p for p in cluster.pnas() if p["metadata"]["name"] == "web-1")
    assert status(web)["reason"] == "Allocated" and status(web)["eniId"], status(web)


def test_a_pod_that_waited_is_told_the_wait_and_the_recovery(cluster: SimCluster) -> None:
    cluster.add_node("n1")
    cluster.start_controller()
    assert wait_until(lambda: warm(cluster, ips=8, branches=0), timeout=TIMEOUT), cluster.pools()
    vpc = cluster.fleet.vpc
    # No free address on the node and EC2 failing: the pod waits, then is served once EC2 answers.
    cluster.in_controller(lambda: vpc.faults.inject_throttling("AssignPrivateIpAddresses", times=400))
    names = [f"api-{i}" for i in range(12)]
    for name in names:
        cluster.add_pod(name, "n1")
    waiting = "api-11"
    assert wait_until(
        lambda: ("Warning", "RequestLimitExceeded") in events(cluster, waiting), timeout=TIMEOUT
    ), events(cluster, waiting)
    cluster.in_controller(vpc.faults.clear)
    assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT), cluster.pnas()
    assert wait_until(lambda: ("Normal", "Allocated") in events(cluster, waiting), timeout=5), events(
        cluster, waiting
    )


def test_a_pool_whose_counters_moved_is_written_once_per_interval_not_once_per_pod() -> None:
    pool = PoolSettings(warm_ip_target=8)
    with SimCluster(config=fast_config(pool, pool_status_interval_s=4.0), seed=5) as cluster:
        cluster.add_node("n1")
        cluster.start_controller()
        assert wait_until(
            lambda: warm(cluster, ips=8, branches=0) and "subnet" in status(cluster.pools()[0]),
            timeout=TIMEOUT,
        ), cluster.pools()  # settled: the subnet's report (a condition of its own) is in
        cluster.emulator.clear_requests()
        names = [f"api-{i}" for i in range(6)]
        for name in names:
            cluster.add_pod(name, "n1")
        assert wait_until(lambda: allocated(cluster, names), timeout=TIMEOUT), cluster.pnas()
        time.sleep(2.0)  # the pool refills (its counts move) and is passed every 0.25 s meanwhile
        assert "patch nodenetworkpools/status" not in controller_writes(cluster)  # the counts can wait
        assert wait_until(lambda: status(cluster.pools()[0]).get("usedIps") == len(names), timeout=10), (
            status(cluster.pools()[0])
        )
        assert controller_writes(cluster).get("patch nodenetworkpools/status", 0) <= 2, controller_writes(
            cluster
        )
