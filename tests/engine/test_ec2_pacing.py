"""EC2 call pacing: one bucket per action, a token per logical call, pods before warm-pool work."""

from __future__ import annotations

import asyncio

import pytest

from controller.adapters.sim_vpc import LatencyConfig
from controller.clock import LoopClock
from controller.core.allocation_model import AllocationMode, AllocationRequest
from controller.core.ec2_limits import DEFAULT_ACTION_BUCKETS
from controller.core.pod_selection import warm_branch_groups
from controller.core.token_bucket import BucketSpec
from controller.engine.ec2_pacing import (
    Ec2Pacer,
    PacedEc2,
    Priority,
    PriorityCell,
    current_priority,
    pool_work,
)
from controller.engine.node_network import NodeNetwork
from controller.research.virtual_time import run_virtual
from controller.settings import PoolSettings
from controller.sim_fleet import NodeSpec, SimFleet

TABLE = {"A": BucketSpec(capacity=2, refill_per_s=1.0), "B": BucketSpec(capacity=2, refill_per_s=1.0)}


def test_each_action_has_its_own_bucket_a_burst_of_one_never_delays_another() -> None:
    async def scenario() -> dict[str, list[float]]:
        clock = LoopClock()
        pacer = Ec2Pacer(clock, table=TABLE)
        done: dict[str, list[float]] = {"A": [], "B": []}

        async def call(action: str) -> None:
            await pacer.acquire(action)
            done[action].append(clock.now())

        await asyncio.gather(*(call("A") for _ in range(5)), call("B"), call("B"))
        return done

    done = run_virtual(scenario())
    assert done["B"] == [0.0, 0.0]  # B's burst is its own, whatever A queued
    assert done["A"] == [0.0, 0.0, 1.0, 2.0, 3.0]  # A: its burst of 2, then its refill of 1/s


def test_pool_work_takes_only_spare_tokens_and_never_before_a_queued_pod() -> None:
    async def scenario() -> list[tuple[str, float]]:
        clock = LoopClock()
        pacer = Ec2Pacer(clock, table={"A": BucketSpec(capacity=4, refill_per_s=1.0)})
        order: list[tuple[str, float]] = []

        async def pod(name: str) -> None:
            await pacer.acquire("A")
            order.append((name, clock.now()))

        async def refill() -> None:
            with pool_work():
                assert current_priority() is Priority.POOL
                await pacer.acquire("A")
            order.append(("refill", clock.now()))

        await refill()  # a full bucket and no pod waiting: the token is spare
        pods = asyncio.ensure_future(asyncio.gather(*(pod(f"pod-{i}") for i in range(6))))
        await asyncio.sleep(0)  # 3 pods took the burst's tokens, 3 are queued
        await refill()
        await pods
        return order

    order = run_virtual(scenario())
    names = [name for name, _ in order]
    assert names[0] == "refill" and dict(order)["pod-0"] == 0.0
    assert names[-1] == "refill"  # the second refill came while pods were queued: it went after them all
    # ...and only once the bucket was back above half its burst (2), plus its own token.
    assert order[-1][1] >= dict(order)["pod-5"] + 3.0 - 1e-9


def test_pool_work_waits_while_the_runtime_says_pods_seek_allocations() -> None:
    async def scenario() -> float:
        clock = LoopClock()
        pacer = Ec2Pacer(clock, table=TABLE)
        seeking = [True]
        pacer.pods_seeking = lambda: seeking[0]

        async def stop_seeking() -> None:
            await asyncio.sleep(10)
            seeking[0] = False

        stopper = asyncio.ensure_future(stop_seeking())
        with pool_work():
            await pacer.acquire("A")  # the bucket is full, but pods are waiting in the work queue
        await stopper
        return clock.now()

    assert run_virtual(scenario()) >= 10.0


def test_a_pod_that_waits_on_pool_work_promotes_it() -> None:
    async def scenario() -> float:
        clock = LoopClock()
        pacer = Ec2Pacer(clock, table=TABLE)
        pacer.pods_seeking = lambda: True  # pool work alone would wait for ever
        cell = PriorityCell(Priority.POOL)

        async def refill() -> float:
            with pool_work(cell):
                await pacer.acquire("A")
            return clock.now()

        task = asyncio.ensure_future(refill())
        await asyncio.sleep(5)
        cell.promote()
        return await task

    assert run_virtual(scenario()) == pytest.approx(5.0, abs=1e-6)  # at once, not at its next look


def test_a_share_paces_under_that_part_of_the_account_bucket() -> None:
    pacer = Ec2Pacer(LoopClock(), share=0.5)
    spec = pacer.bucket("CreateNetworkInterface").spec
    full = DEFAULT_ACTION_BUCKETS["CreateNetworkInterface"]
    assert (spec.capacity, spec.refill_per_s) == (full.capacity / 2, full.refill_per_s / 2)


def test_a_burst_above_ec2_s_bucket_is_paced_and_never_throttled() -> None:
    """150 branch ENIs at once: EC2's CreateNetworkInterface bucket holds 100 and refills 5/s."""

    async def scenario() -> tuple[int, float]:
        clock = LoopClock()
        fleet = SimFleet(clock=clock, latency=LatencyConfig.none())
        paced = PacedEc2(fleet.vpc, Ec2Pacer(clock))
        subnet = fleet.subnet.subnet_id
        group = fleet.vpc.default_security_group_id

        async def create(i: int) -> None:
            await paced.create_network_interface(
                subnet_id=subnet, security_group_ids=[group], tags={}, client_token=f"t{i}"
            )

        await asyncio.gather(*(create(i) for i in range(150)))
        throttled = sum(fleet.vpc.throttled_by_action().values())
        return throttled, clock.now()

    throttled, took = run_virtual(scenario())
    assert throttled == 0
    assert 9.5 <= took <= 10.5  # 100 at once, then 50 at 5/s


def test_warm_branch_groups_follow_the_node_s_pods_then_the_policies() -> None:
    pods = [("sg-b", "sg-a"), ("sg-a", "sg-b"), ("sg-c",)]
    assert warm_branch_groups(pods, [("sg-z",)]) == ("sg-a", "sg-b")
    assert warm_branch_groups([], [("sg-z",), ("sg-y",), ("sg-z",)]) == ("sg-z",)
    assert warm_branch_groups([], []) is None


def _paced_node(pods_seeking: bool) -> tuple[SimFleet, NodeNetwork]:
    clock = LoopClock()
    fleet = SimFleet(clock=clock, latency=LatencyConfig.none())
    network = fleet.add_node(NodeSpec(name="n1", instance_type="c5.4xlarge", settings=PoolSettings()))
    pacer = Ec2Pacer(clock)
    pacer.pods_seeking = lambda: pods_seeking
    network.ec2 = PacedEc2(fleet.vpc, pacer)
    return fleet, network


def test_registration_makes_only_what_pods_need_and_warms_the_pool_as_pool_work() -> None:
    """With pods waiting elsewhere, the warm-up waits; the pool still serves at once once registered."""

    async def scenario() -> tuple[int, int, bool]:
        _fleet, network = _paced_node(pods_seeking=True)
        await network.register()
        free_after_register = network.pool.free_ip_count()
        await asyncio.sleep(30)
        still_warming = network.busy()  # pool work waits while pods seek tokens
        resources = await asyncio.wait_for(
            network.allocate(
                AllocationRequest(key="ns/p/u", node_name="n1", mode=AllocationMode.SECONDARY_IP)
            ),
            timeout=60,
        )  # the pod promotes the warm-up it needs, and gets its address
        return free_after_register, network.pool.free_ip_count(), still_warming and resources.ip != ""

    free_after_register, free_after_allocation, ok = run_virtual(scenario())
    assert free_after_register == 0  # register() returned before the warm-up
    assert ok and free_after_allocation > 0


def test_a_pod_never_waits_on_pool_work_started_while_it_waited() -> None:
    """A pod's refill ends short of its demand, and the node's pass has started new pool work meanwhile
    (here: at once, from the done callback): the pod promotes that too. It used to wait on it at pool
    priority, for as long as other pods sought tokens."""

    async def scenario() -> bool:
        _fleet, network = _paced_node(pods_seeking=True)
        await network.register()  # the warm-up runs as pool work
        started: list[asyncio.Task[object]] = []

        def node_pass(_failed: bool) -> None:
            if started:
                return
            while network.pool.take_ip(f"ns/other-{network.pool.free_ip_count()}/u") is not None:
                pass  # other pods took the warm addresses: the next pass has EC2 work to do
            started.append(network._start_pool_work())  # type: ignore[arg-type]

        network.on_pool_work_done = node_pass
        await asyncio.wait_for(network._refill_now(demand=500), timeout=60)
        return bool(started)

    assert run_virtual(scenario())
