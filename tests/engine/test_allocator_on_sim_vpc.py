"""The allocator end to end on the simulated VPC: many pods, random order, injected faults."""

from __future__ import annotations

import asyncio
import random

from controller.core.allocation_state import AllocationState
from controller.core.pool_planner import plan_pool
from controller.research.virtual_time import run_virtual
from controller.settings import PoolSettings
from controller.sim_fleet import NodeSpec, SimFleet

from .fleet_driver import PodDriver

NODES = [
    NodeSpec(
        name="prefix-sg",
        instance_type="c5.4xlarge",
        settings=PoolSettings(enable_prefix_delegation=True, enable_pod_eni=True, warm_branch_eni_target=3),
    ),
    NodeSpec(
        name="ip-target",
        instance_type="c5.4xlarge",
        settings=PoolSettings(warm_ip_target=5, enable_pod_eni=True),
    ),
    NodeSpec(name="eni-target", instance_type="m5.large", settings=PoolSettings()),
    NodeSpec(
        name="prefix",
        instance_type="m5.large",
        settings=PoolSettings(enable_prefix_delegation=True, warm_prefix_target=2),
    ),
]
FAULTY_ACTIONS = [
    "CreateNetworkInterface",
    "AssignPrivateIpAddresses",
    "AssociateTrunkInterface",
    "AttachNetworkInterface",
    "ModifyNetworkInterfaceAttribute",
]


async def churn(seed: int, allocations: int) -> dict[str, object]:
    rng = random.Random(seed)
    fleet = SimFleet(seed=seed)
    networks = await fleet.register_all(NODES)
    targets_at_start = {n.node_name: n.pool.status() for n in networks}
    driver = PodDriver(fleet, seed)
    injected = {"throttling": 0, "capacity": 0}
    started = 0
    while started < allocations:
        if rng.random() < 0.05:
            fleet.vpc.inject(
                rng.choice(FAULTY_ACTIONS),
                "RequestLimitExceeded",
                "Request limit exceeded.",
                times=rng.randint(1, 6),
                http_status=503,
            )
            injected["throttling"] += 1
        if rng.random() < 0.02:
            fleet.vpc.inject(
                "AssignPrivateIpAddresses",
                "InsufficientCidrBlocks",
                "The specified subnet does not have enough free cidr blocks to satisfy the request.",
                times=rng.randint(1, 3),
            )
            injected["capacity"] += 1
        if driver.pods and (len(driver.pods) >= 70 or rng.random() < 0.45):
            await driver.delete(rng.choice(sorted(driver.pods)))
        else:
            network = rng.choice(networks)
            branch = (
                network.pool.limits.trunking and network.pool.settings.enable_pod_eni and rng.random() < 0.5
            )
            driver.start(f"ns/pod-{started}", network, branch)
            started += 1
        await asyncio.sleep(rng.expovariate(20))
        driver.check_invariants()
    # let everything still waiting get its turn, then delete all pods
    await asyncio.sleep(300)
    driver.check_invariants()
    not_allocated = {
        k: p.status.state for k, p in driver.pods.items() if p.status.state is not AllocationState.ALLOCATED
    }
    for key in sorted(driver.pods):
        await driver.delete(key)
    # cool-downs and the excess-release delay pass; the periodic reconcile runs
    for _ in range(4):
        await asyncio.sleep(60)
        for network in networks:
            await network.reconcile()
    settled = {n.node_name: plan_pool(n.pool, n.clock.now()) for n in networks}
    statuses = {n.node_name: n.pool.status() for n in networks}
    problems = [p for n in networks for p in await n.drain()]
    return {
        "fleet": fleet,
        "driver": driver,
        "injected": injected,
        "not_allocated": not_allocated,
        "settled": settled,
        "statuses": statuses,
        "targets_at_start": targets_at_start,
        "problems": problems,
    }


def test_a_thousand_allocations_and_releases_with_faults_leave_nothing_behind() -> None:
    out = run_virtual(churn(seed=11, allocations=1000))
    fleet, driver = out["fleet"], out["driver"]
    assert isinstance(fleet, SimFleet) and isinstance(driver, PodDriver)
    assert len(driver.released) == 1000
    assert out["not_allocated"] == {}, "every pod got its network before the end"
    histories = [state for pod in driver.released for state in pod.history]
    assert AllocationState.RETRYING in histories or AllocationState.WAITING_FOR_CAPACITY in histories, (
        "faults were felt"
    )
    assert sum(fleet.vpc.throttled_by_action().values()) + sum(out["injected"].values()) > 0  # type: ignore[arg-type]
    # the pools went back to their targets: the planner has nothing left to do
    for name, plan in out["settled"].items():  # type: ignore[attr-defined]
        assert plan.empty, f"{name}: {plan.actions}"
    for name, status in out["statuses"].items():  # type: ignore[attr-defined]
        start = out["targets_at_start"][name]  # type: ignore[index]
        assert status.used_ips == 0 and status.branch_in_use == 0
        assert status.free_ips == start.free_ips, (
            f"{name}: {status.free_ips} free vs {start.free_ips} at start"
        )
        assert status.branch_warm == start.branch_warm
    # draining the nodes leaves no ENI of ours behind
    assert out["problems"] == []
    census = fleet.census()
    assert census.total == 0 and census.unattached == 0, census
