"""NodeNetwork against the simulated VPC: the promises the allocator makes, one at a time."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from controller.adapters.sim_vpc import LatencyConfig
from controller.clock import ManualClock
from controller.core import tags as tagging
from controller.core.allocation_model import AllocationMode, AllocationRequest
from controller.core.allocation_state import AllocationState, AllocationStatus
from controller.core.conditions import ConditionType
from controller.core.errors import Ec2Error, ErrorClass
from controller.core.node_pool import BranchState
from controller.core.retry_policy import Backoff, RetryPolicy
from controller.engine.allocation_driver import allocation_step
from controller.engine.node_network import NodeNetwork
from controller.settings import PoolSettings
from controller.sim_fleet import NodeSpec, SimFleet


def fleet(**kwargs: object) -> SimFleet:
    return SimFleet(clock=ManualClock(1_000.0), latency=LatencyConfig.none(), **kwargs)  # type: ignore[arg-type]


def ip_request(key: str, node: str = "n1", prefix: bool = False) -> AllocationRequest:
    mode = AllocationMode.PREFIX_IP if prefix else AllocationMode.SECONDARY_IP
    return AllocationRequest(key=key, node_name=node, mode=mode)


def branch_request(key: str, groups: tuple[str, ...], node: str = "n1") -> AllocationRequest:
    return AllocationRequest(
        key=key, node_name=node, mode=AllocationMode.BRANCH_ENI, security_group_ids=groups
    )


def mutating_calls(f: SimFleet) -> int:
    return sum(n for action, n in f.vpc.calls_by_action().items() if not action.startswith("Describe"))


async def test_registration_pre_allocates_trunk_branches_and_prefixes() -> None:
    f = fleet()
    settings = PoolSettings(
        enable_prefix_delegation=True, warm_prefix_target=2, enable_pod_eni=True, warm_branch_eni_target=3
    )
    (network,) = await f.register_all([NodeSpec(name="n1", instance_type="c5.4xlarge", settings=settings)])
    status = network.pool.status()
    assert status.trunk_eni_id is not None
    assert status.branch_warm == 3
    assert status.free_ips == 32
    trunk = f.vpc.network_interface(status.trunk_eni_id)
    assert trunk is not None and trunk.interface_type.value == "trunk"
    assert trunk.attachment is not None and trunk.attachment.device_index == 7  # highest free index
    assert {a.vlan_id for a in f.vpc.trunk_associations(status.trunk_eni_id)} == {1, 2, 3}
    for eni in f.vpc.network_interfaces(tags={tagging.TAG_CLUSTER: "sim"}):
        assert eni.tags[tagging.TAG_INSTANCE] == network.instance.instance_id
        assert eni.tags[tagging.TAG_OWNER] == "n1"


async def test_a_warm_pool_serves_without_any_ec2_call() -> None:
    f = fleet()
    settings = PoolSettings(
        enable_prefix_delegation=True, warm_prefix_target=2, enable_pod_eni=True, warm_branch_eni_target=3
    )
    (network,) = await f.register_all([NodeSpec(name="n1", instance_type="c5.4xlarge", settings=settings)])
    group = network.default_security_group_ids
    before = f.vpc.calls_by_action()
    first = await network.allocate(ip_request("ns/a", prefix=True))
    branch = await network.allocate(branch_request("ns/b", group))
    assert f.vpc.calls_by_action() == before
    assert first.prefix is not None and branch.vlan_id is not None


async def test_released_branch_is_reused_after_cool_down_with_one_modify_for_new_groups() -> None:
    f = fleet()
    settings = PoolSettings(enable_pod_eni=True, warm_branch_eni_target=1, branch_cooldown_s=30)
    (network,) = await f.register_all([NodeSpec(name="n1", instance_type="m5.large", settings=settings)])
    clock = f.clock
    assert isinstance(clock, ManualClock)
    first = await network.allocate(branch_request("ns/a", (f.app_groups[0],)))
    await network.release("ns/a")
    assert network.pool.branches[first.eni_id].state is BranchState.COOLING
    clock.advance(31)
    await network.reconcile()
    modifies = f.vpc.calls_by_action().get("ModifyNetworkInterfaceAttribute", 0)
    second = await network.allocate(branch_request("ns/b", (f.app_groups[1],)))
    assert second.eni_id == first.eni_id  # reused, not recreated
    assert f.vpc.calls_by_action()["ModifyNetworkInterfaceAttribute"] == modifies + 1
    eni = f.vpc.network_interface(second.eni_id)
    assert eni is not None and eni.security_group_ids == (f.app_groups[1],)
    # the same key asks again: same answer, nothing new
    assert await network.allocate(branch_request("ns/b", (f.app_groups[1],))) == second


async def test_a_fragmented_subnet_is_capacity_and_the_pod_waits_visibly_then_gets_its_address() -> None:
    f = SimFleet(clock=ManualClock(1_000.0), latency=LatencyConfig.none(), subnet_cidr="10.1.0.0/24")
    settings = PoolSettings(
        enable_prefix_delegation=True, warm_prefix_target=1, prefix_fallback_to_secondary_ip=False
    )
    (network,) = await f.register_all([NodeSpec(name="n1", settings=settings)])
    held = [await network.allocate(ip_request(f"ns/p{i}", prefix=True)) for i in range(16)]
    assert len({r.ip for r in held}) == 16
    # every remaining /28 keeps at least one address taken: free addresses, no aligned block
    occupied = f.vpc.fragment(f.subnet.subnet_id, keep_free_per_block=15, seed=3)
    assert f.vpc.free_addresses(f.subnet.subnet_id) > 0
    assert f.vpc.free_aligned_prefixes(f.subnet.subnet_id) == 0
    status = AllocationStatus.new(f.clock.now())
    policy, rng = RetryPolicy(), random.Random(1)
    step = await allocation_step(status, ip_request("ns/late", prefix=True), network, policy=policy, rng=rng)
    assert step.status.state is AllocationState.WAITING_FOR_CAPACITY
    assert step.status.reason == "InsufficientCidrBlocks"
    assert step.status.last_error is not None and step.status.last_error.error_class is ErrorClass.CAPACITY
    ready = step.status.condition(ConditionType.READY)
    assert ready is not None and ready.status == "False" and ready.reason == "InsufficientCidrBlocks"
    assert step.retry_in is not None and step.retry_in > 0
    # space frees up; the pod's retry after its backoff, and the pool's for the subnet, succeeds
    f.vpc.vacate(f.subnet.subnet_id, occupied)
    pool_backoff = network.pool.prefix_refused_until - f.clock.now()
    f.clock.advance(max(step.retry_in, pool_backoff))  # type: ignore[attr-defined]
    again = await allocation_step(
        step.status, ip_request("ns/late", prefix=True), network, policy=policy, rng=rng
    )
    assert again.status.state is AllocationState.ALLOCATED


async def test_throttling_past_the_inline_retries_moves_to_retrying() -> None:
    f = fleet()
    (network,) = await f.register_all(
        [NodeSpec(name="n1", settings=PoolSettings(enable_pod_eni=True, warm_branch_eni_target=0))]
    )
    f.vpc.inject(
        "CreateNetworkInterface", "RequestLimitExceeded", "Request limit exceeded.", times=20, http_status=503
    )
    step = await allocation_step(
        AllocationStatus.new(f.clock.now()),
        branch_request("ns/a", (f.app_groups[0],)),
        network,
        policy=RetryPolicy(),
        rng=random.Random(2),
    )
    assert step.status.state is AllocationState.RETRYING
    assert step.status.reason == "RequestLimitExceeded"
    assert f.census().total == 1  # only the trunk: the failed create left nothing


async def test_permanent_error_fails_with_the_ec2_code_and_message() -> None:
    f = fleet()
    (network,) = await f.register_all(
        [NodeSpec(name="n1", settings=PoolSettings(enable_pod_eni=True, warm_branch_eni_target=0))]
    )
    step = await allocation_step(
        AllocationStatus.new(f.clock.now()),
        branch_request("ns/a", ("sg-0000000000badbad0",)),
        network,
        policy=RetryPolicy(),
        rng=random.Random(2),
    )
    assert step.status.state is AllocationState.FAILED
    assert step.status.last_error is not None
    assert step.status.last_error.code == "InvalidSecurityGroupID.NotFound"
    assert "sg-0000000000badbad0" in step.status.last_error.message
    assert step.retry_in is None


async def test_a_lost_create_response_is_found_again_by_its_client_token() -> None:
    f = fleet()
    (network,) = await f.register_all(
        [NodeSpec(name="n1", settings=PoolSettings(enable_pod_eni=True, warm_branch_eni_target=0))]
    )
    # EC2 creates the ENI but the answer is lost (a timeout); the retry reuses the client token
    f.vpc.inject(
        "CreateNetworkInterface",
        "InternalError",
        "An internal error has occurred.",
        http_status=500,
        after_effect=True,
    )
    resources = await network.allocate(branch_request("ns/a", (f.app_groups[0],)))
    branches = f.vpc.network_interfaces(tags={tagging.TAG_ROLE: "branch"})
    assert [b.eni_id for b in branches] == [resources.eni_id]


async def test_after_a_restart_the_pool_is_rebuilt_from_ec2_and_no_address_is_given_twice() -> None:
    f = fleet()
    settings = PoolSettings(
        enable_prefix_delegation=True, warm_prefix_target=1, enable_pod_eni=True, warm_branch_eni_target=2
    )
    (old,) = await f.register_all([NodeSpec(name="n1", instance_type="c5.4xlarge", settings=settings)])
    held = {f"ns/p{i}": await old.allocate(ip_request(f"ns/p{i}", prefix=True)) for i in range(20)}
    held["ns/b"] = await old.allocate(branch_request("ns/b", (f.app_groups[0],)))
    await old.close()  # the old process stops; its pool was topped up before it did
    await old.reconcile()
    calls_before = mutating_calls(f)
    # the controller restarts: a fresh runtime for the same instance, fed the PNAs' records
    new = NodeNetwork(
        ec2=f.vpc,
        clock=f.clock,
        limits=old.pool.limits,
        settings=settings,
        node_name="n1",
        instance=old.instance,
        subnet_cidr=f.subnet.cidr_block,
        cluster_name="sim",
        rng=random.Random(9),
    )
    await new.recover_from_ec2()
    for key, resources in held.items():
        assert new.restore(key, resources)
    assert new.pool.trunk_eni_id == old.pool.trunk_eni_id
    assert set(new.pool.branches) == set(old.pool.branches)
    assert new.pool.status() == old.pool.status()
    new.registered = True
    await new.reconcile()
    fresh = [await new.allocate(ip_request(f"ns/q{i}", prefix=True)) for i in range(10)]
    assert not {r.ip for r in fresh} & {r.ip for r in held.values()}
    assert mutating_calls(f) - calls_before <= 2  # at most a top-up, never a rebuild


async def test_drain_releases_everything() -> None:
    f = fleet()
    settings = PoolSettings(warm_ip_target=20, enable_pod_eni=True, warm_branch_eni_target=2)
    (network,) = await f.register_all([NodeSpec(name="n1", settings=settings)])
    await network.allocate(branch_request("ns/b", (f.app_groups[0],)))
    await network.allocate(ip_request("ns/a"))
    assert f.census().total > 0
    assert await network.drain() == []
    assert f.census().total == 0
    primary = f.vpc.network_interface(network.instance.primary_eni_id)
    assert primary is not None and primary.secondary_ips == ()


async def test_a_node_that_cannot_trunk_fails_branch_requests_permanently() -> None:
    f = fleet()
    (network,) = await f.register_all(
        [NodeSpec(name="n1", instance_type="t3.medium", settings=PoolSettings(enable_pod_eni=True))]
    )
    with pytest.raises(Ec2Error) as caught:
        await network.allocate(branch_request("ns/a", (f.app_groups[0],)))
    assert caught.value.code == "NodeCannotTrunk"
    assert caught.value.error_class is ErrorClass.PERMANENT


def test_drain_while_a_background_top_up_is_in_flight_leaks_nothing() -> None:
    from controller.research.virtual_time import run_virtual

    async def scenario() -> tuple[int, int]:
        f = SimFleet(seed=5, latency=LatencyConfig())  # real per-call latencies, in virtual time
        settings = PoolSettings(enable_pod_eni=True, warm_branch_eni_target=2)
        (network,) = await f.register_all([NodeSpec(name="n1", settings=settings)])
        await network.allocate(branch_request("ns/a", (f.app_groups[0],)))
        await network.allocate(branch_request("ns/b", (f.app_groups[1],)))
        branches_before = f.census().branch
        while f.census().branch == branches_before:
            await asyncio.sleep(0.01)  # the top-up's ENI now exists; its association is in flight
        in_flight = network._background is not None and not network._background.done()
        problems = await network.drain()
        return int(in_flight), len(problems) + f.census().total

    in_flight, leftovers = run_virtual(scenario())
    assert in_flight == 1, "the scenario must catch a top-up mid-flight"
    assert leftovers == 0


async def test_a_bad_group_does_not_become_the_warm_branch_groups() -> None:
    """Issue 7 item 10: the groups warm branches are made with change only once EC2 accepted them."""
    f = fleet()
    settings = PoolSettings(enable_pod_eni=True, warm_branch_eni_target=0)
    (network,) = await f.register_all([NodeSpec(name="n1", instance_type="c5.4xlarge", settings=settings)])
    good = network.warm_branch_groups
    with pytest.raises(Ec2Error) as caught:
        await network.allocate(branch_request("ns/bad/1", ("sg-00000000000000bad",)))
    assert caught.value.code == "InvalidSecurityGroupID.NotFound"
    assert network.warm_branch_groups == good
    network.pool.settings = settings.model_copy(update={"warm_branch_eni_target": 2})
    report = await network.reconcile()
    assert report.failed == ()
    assert network.pool.branch_counts()[BranchState.WARM] == 2


async def test_a_branch_whose_association_failed_is_made_again_with_a_new_client_token() -> None:
    """Issue 7 item 4: the retry after a failed association must not get the deleted ENI back."""
    f = fleet()
    settings = PoolSettings(enable_pod_eni=True, warm_branch_eni_target=0)
    (network,) = await f.register_all([NodeSpec(name="n1", instance_type="c5.4xlarge", settings=settings)])
    f.vpc.inject(
        "AssociateTrunkInterface",
        "InternalError",
        "An internal error has occurred.",
        times=6,
        http_status=500,
    )
    request = branch_request("ns/web/1", (f.app_groups[0],))
    with pytest.raises(Ec2Error) as caught:
        await network.allocate(request)
    assert caught.value.error_class is ErrorClass.TRANSIENT
    held = await network.allocate(request)
    eni = f.vpc.network_interface(held.eni_id)
    assert eni is not None and eni.private_ip == held.ip


async def test_an_assign_whose_answer_was_lost_is_adopted_not_repeated() -> None:
    """Issue 7 item 11: AssignPrivateIpAddresses has no client token; a lost answer leaks nothing."""
    f = fleet()
    settings = PoolSettings(warm_ip_target=2, excess_release_delay_s=3600)
    (network,) = await f.register_all([NodeSpec(name="n1", instance_type="m5.xlarge", settings=settings)])
    f.vpc.inject(
        "AssignPrivateIpAddresses",
        "InternalError",
        "An internal error has occurred.",
        http_status=500,
        after_effect=True,
    )
    for i in range(4):
        with contextlib.suppress(Ec2Error):
            await network.allocate(ip_request(f"ns/p/{i}"))
    await network.reconcile()
    for eni_id, eni in network.pool.enis.items():
        found = f.vpc.network_interface(eni_id)
        assert found is not None
        assert sorted(found.secondary_ips) == sorted(eni.ips), "EC2 holds addresses the pool does not know"


async def test_a_pod_is_served_even_when_every_warm_target_is_zero() -> None:
    f = fleet()
    settings = PoolSettings(warm_eni_target=0)
    (network,) = await f.register_all([NodeSpec(name="n1", instance_type="m5.large", settings=settings)])
    assert network.pool.free_ip_count() == 0
    held = await network.allocate(ip_request("ns/p/1"))
    assert held.ip


async def test_an_instance_gone_from_ec2_makes_pods_wait_not_fail() -> None:
    """The campaign found it: a refill on an ENI EC2 no longer has (its instance was terminated)
    failed a pod with a permanent InvalidNetworkInterfaceID.NotFound. It is a wait."""
    f = fleet()
    settings = PoolSettings(warm_ip_target=1, excess_release_delay_s=3600)
    (network,) = await f.register_all([NodeSpec(name="n1", instance_type="m5.xlarge", settings=settings)])
    await network.allocate(ip_request("ns/a/1"))
    f.vpc.terminate_instance(network.instance.instance_id)
    with pytest.raises(Ec2Error) as caught:
        for i in range(60):  # until the pool has to ask EC2
            await network.allocate(ip_request(f"ns/b/{i}"))
    assert (caught.value.code, caught.value.error_class) == ("NodePoolStale", ErrorClass.CAPACITY)
    assert await network.refresh_from_ec2() == []
    assert network.stale.startswith("InvalidInstanceID.NotFound")  # refused until the node goes


async def test_an_eni_deleted_outside_netalloc_is_dropped_with_its_holders() -> None:
    f = fleet()
    settings = PoolSettings(warm_eni_target=1, excess_release_delay_s=3600)
    (network,) = await f.register_all([NodeSpec(name="n1", instance_type="m5.large", settings=settings)])
    for i in range(12):  # more than the primary ENI's 9 secondary addresses
        await network.allocate(ip_request(f"ns/p/{i}"))
    secondary = next(e for e in network.pool.enis.values() if not e.primary)
    on_it = [k for k, h in network.pool.key_ips.items() if h.eni_id == secondary.eni_id]
    attachment = f.vpc.network_interface(secondary.eni_id).attachment  # type: ignore[union-attr]
    assert attachment is not None
    await f.vpc.detach_network_interface(attachment.attachment_id, force=True)
    await f.vpc.delete_network_interface(secondary.eni_id)
    lost = await network.refresh_from_ec2()
    assert on_it and sorted(lost) == sorted(on_it)
    assert secondary.eni_id not in network.pool.enis and not network.stale


async def test_a_trunk_detached_with_its_terminated_instance_makes_branch_pods_wait() -> None:
    """The campaign found it (seed 100141): AssociateTrunkInterface answered IncorrectState for a
    trunk whose instance was terminated, and the pod failed for good."""
    f = fleet()
    settings = PoolSettings(enable_pod_eni=True, warm_branch_eni_target=0)
    (network,) = await f.register_all([NodeSpec(name="n1", instance_type="c5.4xlarge", settings=settings)])
    f.vpc.terminate_instance(network.instance.instance_id)
    with pytest.raises(Ec2Error) as caught:
        await network.allocate(branch_request("ns/web/1", (f.app_groups[0],)))
    assert (caught.value.code, caught.value.error_class) == ("NodePoolStale", ErrorClass.CAPACITY)


async def test_without_a_free_prefix_block_a_pod_gets_a_secondary_ip_and_prefixes_come_back_later() -> None:
    f = SimFleet(clock=ManualClock(1_000.0), latency=LatencyConfig.none(), subnet_cidr="10.1.0.0/24")
    settings = PoolSettings(enable_prefix_delegation=True, warm_prefix_target=1, ip_cooldown_s=1)
    (network,) = await f.register_all([NodeSpec(name="n1", settings=settings)])
    for i in range(16):
        await network.allocate(ip_request(f"ns/p{i}", prefix=True))
    occupied = f.vpc.fragment(f.subnet.subnet_id, keep_free_per_block=15, seed=3)
    policy, rng = RetryPolicy(), random.Random(1)
    step = await allocation_step(
        AllocationStatus.new(f.clock.now()),
        ip_request("ns/late", prefix=True),
        network,
        policy=policy,
        rng=rng,
    )
    assert step.status.state is AllocationState.ALLOCATED
    assert step.status.reason == "PrefixFallback" and "no free aligned /28" in step.status.message
    held = step.status.resources
    assert held is not None and held.mode is AllocationMode.SECONDARY_IP and held.prefix is None
    eni = f.vpc.network_interface(held.eni_id)
    assert eni is not None and held.ip in eni.secondary_ips
    # blocks free up: new pods get prefix addresses again, and the fallback IP goes back once freed
    f.vpc.vacate(f.subnet.subnet_id, occupied)
    network.prefix_blocks_may_be_free()  # as the subnet report does when it sees free /28 blocks
    await network.release("ns/late")
    f.clock.advance(2)  # type: ignore[attr-defined]
    await network.reconcile()
    await network.reconcile()
    assert (await network.allocate(ip_request("ns/next", prefix=True))).mode is AllocationMode.PREFIX_IP
    eni = f.vpc.network_interface(held.eni_id)
    assert eni is not None and held.ip not in eni.secondary_ips


class YieldingClock(ManualClock):
    """A manual clock whose sleep lets other tasks run, as a real one does."""

    async def sleep(self, seconds: float) -> None:
        await super().sleep(seconds)
        await asyncio.sleep(0)


async def _one_cooling_branch(clock: ManualClock, *, back_in: float) -> tuple[SimFleet, NodeNetwork, str]:
    """A node with no warm branch and one cooling branch that comes back in `back_in` seconds."""
    f = SimFleet(clock=clock, latency=LatencyConfig.none())
    settings = PoolSettings(
        enable_pod_eni=True, warm_branch_eni_target=0, branch_cooldown_s=30, branch_create_estimate_s=2.0
    )
    (network,) = await f.register_all([NodeSpec(name="n1", instance_type="m5.large", settings=settings)])
    old = await network.allocate(branch_request("ns/old", (f.app_groups[0],)))
    await network.release("ns/old")
    clock.advance(30 - back_in)
    return f, network, old.eni_id


async def test_a_pod_waits_for_a_cooling_branch_that_is_back_sooner_than_a_create() -> None:
    """Rollouts: the freed branch comes back in 1 s and a create takes about 2 s. The pod waits for it
    instead of creating one (which would also leave one more to delete as excess later)."""
    clock = ManualClock(1_000.0)
    f, network, old_eni = await _one_cooling_branch(clock, back_in=1.0)
    creates = f.vpc.calls_by_action()["CreateNetworkInterface"]
    started = clock.now()
    new = await network.allocate(branch_request("ns/new", (f.app_groups[0],)))
    assert new.eni_id == old_eni
    assert f.vpc.calls_by_action()["CreateNetworkInterface"] == creates
    assert clock.now() - started == pytest.approx(1.0)
    assert network.pool.promised == {}


async def test_a_pod_creates_when_the_cooling_branch_is_back_later_than_a_create() -> None:
    clock = ManualClock(1_000.0)
    f, network, old_eni = await _one_cooling_branch(clock, back_in=10.0)
    creates = f.vpc.calls_by_action()["CreateNetworkInterface"]
    new = await network.allocate(branch_request("ns/new", (f.app_groups[0],)))
    assert new.eni_id != old_eni
    assert f.vpc.calls_by_action()["CreateNetworkInterface"] == creates + 1
    assert network.pool.branches[old_eni].state is BranchState.COOLING  # untouched, still cooling


async def test_a_cooling_branch_is_waited_for_by_one_pod_only() -> None:
    """Two pods, one cooling branch: the first waits for it, promised; the second does not wait on the
    same branch (it would find it taken) and creates at once."""
    clock = YieldingClock(1_000.0)
    f, network, old_eni = await _one_cooling_branch(clock, back_in=1.0)
    creates = f.vpc.calls_by_action()["CreateNetworkInterface"]
    first, second = await asyncio.gather(
        network.allocate(branch_request("ns/a", (f.app_groups[0],))),
        network.allocate(branch_request("ns/b", (f.app_groups[0],))),
    )
    assert first.eni_id == old_eni and second.eni_id != old_eni
    assert f.vpc.calls_by_action()["CreateNetworkInterface"] == creates + 1
    assert network.pool.promised == {}


async def test_pool_steps_retry_throttling_with_the_retry_policy_backoff_and_its_attempt_limit() -> None:
    """One retry layer: the engine's inline retries take RetryPolicy's throttling backoff and its
    step_attempts, not a backoff of their own."""
    policy = RetryPolicy(throttling=Backoff(base_s=0.25, cap_s=0.25), step_attempts=3)
    clock = ManualClock(1_000.0)
    f = SimFleet(clock=clock, latency=LatencyConfig.none())
    settings = PoolSettings(enable_pod_eni=True, warm_branch_eni_target=0)
    (network,) = await f.register_all([NodeSpec(name="n1", instance_type="m5.large", settings=settings)])
    network.retry_policy = policy
    f.vpc.inject("CreateNetworkInterface", "RequestLimitExceeded", "Rate exceeded.", times=2, http_status=503)
    started = clock.now()
    await network.allocate(branch_request("ns/a", (f.app_groups[0],)))
    assert 0 < clock.now() - started <= 2 * 0.25  # two waits, each drawn from [0, 0.25]
    f.vpc.inject("CreateNetworkInterface", "RequestLimitExceeded", "Rate exceeded.", times=3, http_status=503)
    before = f.vpc.calls_by_action()["CreateNetworkInterface"]
    with pytest.raises(Ec2Error) as raised:
        await network.allocate(branch_request("ns/b", (f.app_groups[0],)))
    assert raised.value.error_class is ErrorClass.THROTTLING
    assert f.vpc.calls_by_action()["CreateNetworkInterface"] - before == 3  # step_attempts, then up


async def test_a_subnet_that_refused_blocks_is_asked_again_only_after_the_capacity_backoff() -> None:
    f = SimFleet(clock=ManualClock(1_000.0), latency=LatencyConfig.none(), subnet_cidr="10.1.0.0/24")
    settings = PoolSettings(enable_prefix_delegation=True, warm_prefix_target=1)
    (network,) = await f.register_all([NodeSpec(name="n1", settings=settings)])
    for i in range(16):
        await network.allocate(ip_request(f"ns/p{i}", prefix=True))
    occupied = f.vpc.fragment(f.subnet.subnet_id, keep_free_per_block=15, seed=3)
    assigns = f.vpc.calls_by_action().get("AssignPrivateIpAddresses", 0)
    refused = await network.reconcile()
    assert refused.first_error is not None and refused.first_error.code == "InsufficientCidrBlocks"
    assert network.pool.prefix_refused_until > f.clock.now()
    tried = f.vpc.calls_by_action()["AssignPrivateIpAddresses"]
    assert tried > assigns
    for _ in range(5):  # the periodic passes meanwhile: no call
        await network.reconcile()
    assert f.vpc.calls_by_action()["AssignPrivateIpAddresses"] == tried
    # a pod still gets an address meanwhile: the refusal stands, so it falls back to a secondary IP
    fallback = await network.allocate(ip_request("ns/late", prefix=True))
    assert fallback.prefix is None and fallback.ip
    # other tenants free space and the subnet report sees free blocks: the pool asks at once
    f.vpc.vacate(f.subnet.subnet_id, occupied)
    network.prefix_blocks_may_be_free()
    grown = await network.reconcile()
    assert grown.failed == () and network.pool.prefix_refused_until == 0.0
    assert network.pool.free_prefix_address_count() > 0
