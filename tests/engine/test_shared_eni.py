"""SharedENI: the pods of one node whose group sets are identical share an ENI made with those groups."""

from __future__ import annotations

import random

from controller.adapters.sim_vpc import LatencyConfig
from controller.clock import ManualClock
from controller.core.allocation_model import AllocationMode, AllocationRequest
from controller.core.allocation_state import AllocationStatus
from controller.core.retry_policy import RetryPolicy
from controller.engine.allocation_driver import allocation_step
from controller.engine.node_network import NodeNetwork
from controller.settings import PoolSettings
from controller.sim_fleet import NodeSpec, SimFleet


def fleet() -> SimFleet:
    return SimFleet(clock=ManualClock(1_000.0), latency=LatencyConfig.none())


def shared(key: str, groups: tuple[str, ...], node: str = "n1") -> AllocationRequest:
    return AllocationRequest(
        key=key, node_name=node, mode=AllocationMode.SHARED_ENI, security_group_ids=groups
    )


def mutating(f: SimFleet) -> dict[str, int]:
    return {a: n for a, n in f.vpc.calls_by_action().items() if not a.startswith(("Describe", "Get"))}


def calls_since(f: SimFleet, before: dict[str, int]) -> dict[str, int]:
    now = mutating(f)
    return {a: n - before.get(a, 0) for a, n in now.items() if n - before.get(a, 0)}


async def node(f: SimFleet, instance_type: str = "c5.4xlarge", **settings: object) -> NodeNetwork:
    pool_settings = PoolSettings.model_validate({"warm_eni_target": 0, **settings})
    (network,) = await f.register_all(
        [NodeSpec(name="n1", instance_type=instance_type, settings=pool_settings)]
    )
    return network


async def test_two_pods_with_the_same_groups_share_one_eni_made_with_exactly_those_groups() -> None:
    f = fleet()
    network = await node(f)
    groups = (f.app_groups[0], f.app_groups[1])
    before = mutating(f)
    first = await network.allocate(shared("ns/a", groups))
    second = await network.allocate(shared("ns/b", tuple(reversed(groups))))  # order does not matter
    assert first.mode is second.mode is AllocationMode.SHARED_ENI
    assert first.eni_id == second.eni_id and first.ip != second.ip
    assert first.security_group_ids == tuple(sorted(groups))
    eni = f.vpc.network_interface(first.eni_id)
    assert eni is not None and eni.security_group_ids == tuple(sorted(groups))
    assert eni.attachment is not None and eni.attachment.instance_id == network.instance.instance_id
    assert {first.ip, second.ip} <= set(eni.secondary_ips)
    # one create and one attach for the set; its later pods cost no EC2 call
    assert calls_since(f, before) == {"CreateNetworkInterface": 1, "AttachNetworkInterface": 1}
    for i in range(5):
        await network.allocate(shared(f"ns/more-{i}", groups))
    assert calls_since(f, before) == {"CreateNetworkInterface": 1, "AttachNetworkInterface": 1}


async def test_a_different_group_set_gets_its_own_eni() -> None:
    f = fleet()
    network = await node(f)
    one = await network.allocate(shared("ns/a", (f.app_groups[0],)))
    other = await network.allocate(shared("ns/b", (f.app_groups[1],)))
    assert one.eni_id != other.eni_id
    eni = f.vpc.network_interface(other.eni_id)
    assert eni is not None and eni.security_group_ids == (f.app_groups[1],)
    # an ordinary pod never gets a shared ENI's address, nor a shared pod the common pool's
    plain = await network.allocate(
        AllocationRequest(key="ns/c", node_name="n1", mode=AllocationMode.SECONDARY_IP)
    )
    assert plain.eni_id not in (one.eni_id, other.eni_id)
    assert plain.security_group_ids == ()


async def test_when_the_instance_has_no_eni_slot_left_the_set_falls_back_to_branch_enis() -> None:
    """m5.large: 3 ENIs, the primary, the trunk and one more. The first set takes the last slot; the
    second set's pods get branch ENIs, each its own, with the set's groups."""
    f = fleet()
    network = await node(f, "m5.large", enable_pod_eni=True, warm_branch_eni_target=0)
    first = await network.allocate(shared("ns/a", (f.app_groups[0],)))
    assert first.mode is AllocationMode.SHARED_ENI
    step = await allocation_step(
        AllocationStatus.new(f.clock.now()),
        shared("ns/b", (f.app_groups[1],)),
        network,
        policy=RetryPolicy(),
        rng=random.Random(1),
    )
    held = step.status.resources
    assert held is not None and held.mode is AllocationMode.BRANCH_ENI and held.vlan_id
    assert held.security_group_ids == (f.app_groups[1],)
    assert step.status.reason == "SharedEniFallback"
    assert "no ENI attachment left" in " ".join(network.last_report.plan.notes if network.last_report else ())
    again = await network.allocate(shared("ns/c", (f.app_groups[1],)))
    assert again.mode is AllocationMode.BRANCH_ENI and again.eni_id != held.eni_id


async def test_the_last_pod_of_a_set_gone_returns_the_eni_after_the_cool_down_and_the_excess_delay() -> None:
    f = fleet()
    network = await node(f, ip_cooldown_s=30, excess_release_delay_s=30)
    clock = f.clock
    assert isinstance(clock, ManualClock)
    held = await network.allocate(shared("ns/a", (f.app_groups[0],)))
    await network.allocate(shared("ns/b", (f.app_groups[0],)))
    await network.release("ns/a")
    clock.advance(100)
    await network.reconcile()
    assert f.vpc.network_interface(held.eni_id) is not None  # ns/b still holds an address on it
    await network.release("ns/b")
    for step in (10, 25, 25):  # cooling for 30 s: in use; then idle, kept for the 30 s excess delay
        clock.advance(step)
        await network.reconcile()
        assert f.vpc.network_interface(held.eni_id) is not None
    clock.advance(10)
    await network.reconcile()
    assert f.vpc.network_interface(held.eni_id) is None
    assert held.eni_id not in network.pool.enis
    # the slot is free again: the next pod of the set gets a new shared ENI
    again = await network.allocate(shared("ns/c", (f.app_groups[0],)))
    assert again.mode is AllocationMode.SHARED_ENI and again.eni_id != held.eni_id


async def test_new_groups_move_new_pods_to_a_new_set_and_a_shared_eni_in_use_is_never_modified() -> None:
    """A SecurityGroupPolicy changes its groups: pods created after it have another set, so they get
    another shared ENI; the ENI of the running pods keeps its groups (modifying it would change the
    groups of every pod on it)."""
    f = fleet()
    network = await node(f)
    before = f.vpc.calls_by_action().get("ModifyNetworkInterfaceAttribute", 0)
    old = await network.allocate(shared("ns/old", (f.app_groups[0],)))
    new = await network.allocate(shared("ns/new", (f.app_groups[0], f.app_groups[2])))
    assert new.eni_id != old.eni_id
    eni = f.vpc.network_interface(old.eni_id)
    assert eni is not None and eni.security_group_ids == (f.app_groups[0],)
    assert f.vpc.calls_by_action().get("ModifyNetworkInterfaceAttribute", 0) == before


async def test_after_a_restart_the_sharing_is_rebuilt_from_ec2_and_no_address_is_given_twice() -> None:
    f = fleet()
    old = await node(f)
    groups = (f.app_groups[0],)
    held = {f"ns/p{i}": await old.allocate(shared(f"ns/p{i}", groups)) for i in range(6)}
    await old.close()
    new = NodeNetwork(
        ec2=f.vpc,
        clock=f.clock,
        limits=old.pool.limits,
        settings=old.pool.settings,  # the same settings, as a restarted controller reads them again
        node_name="n1",
        instance=old.instance,
        subnet_cidr=f.subnet.cidr_block,
        cluster_name="sim",
        rng=random.Random(9),
    )
    await new.recover_from_ec2()
    for key, resources in held.items():
        assert new.restore(key, resources)
    shared_enis = new.pool.shared_enis(groups)
    assert [e.eni_id for e in shared_enis] == [held["ns/p0"].eni_id]
    new.registered = True
    before = mutating(f)
    fresh = [await new.allocate(shared(f"ns/q{i}", groups)) for i in range(6)]
    assert {r.eni_id for r in fresh} == {held["ns/p0"].eni_id}  # the same shared ENI, no new one
    assert not {r.ip for r in fresh} & {r.ip for r in held.values()}
    assert calls_since(f, before) == {}


async def test_without_a_slot_or_a_trunk_the_pod_waits_saying_which_setting_to_change() -> None:
    """m5.large without ENABLE_POD_ENI: the primary and two more ENIs. Two sets take them; a third
    set has no attachment and no branch to fall back to."""
    f = fleet()
    network = await node(f, "m5.large")
    await network.allocate(shared("ns/a", (f.app_groups[0],)))
    await network.allocate(shared("ns/b", (f.app_groups[1],)))
    step = await allocation_step(
        AllocationStatus.new(f.clock.now()),
        shared("ns/c", (f.app_groups[2],)),
        network,
        policy=RetryPolicy(),
        rng=random.Random(1),
    )
    assert step.status.state.value == "WaitingForCapacity"
    assert step.status.reason == "SharedEniUnavailable"
    assert "ENABLE_POD_ENI" in step.status.message


async def test_in_the_simulated_vpc_modifying_a_shared_eni_changes_the_groups_of_every_pod_on_it() -> None:
    """Why netalloc never modifies a shared ENI: the groups belong to the ENI, so a modify meant for
    one pod would change them for all the pods of the set (the simulated VPC models it as EC2 does)."""
    f = fleet()
    network = await node(f)
    pods = [await network.allocate(shared(f"ns/p{i}", (f.app_groups[0],))) for i in range(3)]
    await f.vpc.modify_security_groups(pods[0].eni_id, security_group_ids=[f.app_groups[1]])
    for held in pods:
        carrier = next(e for e in f.vpc.network_interfaces() if held.ip in e.secondary_ips)
        assert carrier.security_group_ids == (f.app_groups[1],)


async def test_node_pool_exhausted_counts_only_the_common_pool_s_addresses_as_in_use() -> None:
    """Without a trunk two sets take m5.large's two free slots; the ordinary pods then have the primary's
    9 addresses. The 10th is told 9 in use, and the shared pods' addresses apart, not 11 in use."""
    from controller.core.errors import Ec2Error

    f = fleet()
    network = await node(f, "m5.large")
    await network.allocate(shared("ns/a", (f.app_groups[0],)))
    await network.allocate(shared("ns/b", (f.app_groups[1],)))
    for i in range(9):
        await network.allocate(
            AllocationRequest(key=f"ns/plain-{i}", node_name="n1", mode=AllocationMode.SECONDARY_IP)
        )
    try:
        await network.allocate(
            AllocationRequest(key="ns/plain-9", node_name="n1", mode=AllocationMode.SECONDARY_IP)
        )
    except Ec2Error as error:
        assert error.code == "NodePoolExhausted"
        assert "0 free, 9 in use, 0 cooling down (and 2 on shared ENIs, for their group sets only)" in (
            error.message
        )
    else:
        raise AssertionError("the 10th ordinary pod got an address the node does not have")


def test_a_set_s_first_pod_arriving_mid_pass_waits_for_its_shared_eni_not_a_branch() -> None:
    """A pass already planned (without the set) is running when the set's first pod comes: the pod used
    to take that pass's report, find no shared ENI and fall back to a branch. It now gets a pass planned
    for its set."""
    import asyncio

    from controller.research.virtual_time import run_virtual

    async def scenario() -> tuple[bool, AllocationMode]:
        f = SimFleet(seed=5, latency=LatencyConfig())  # real per-call latencies, in virtual time
        settings = PoolSettings(warm_eni_target=0, enable_pod_eni=True, warm_branch_eni_target=0)
        (network,) = await f.register_all(
            [NodeSpec(name="n1", instance_type="c5.4xlarge", settings=settings)]
        )
        # No warm address: an ordinary pod's pass (planned for it alone) assigns one, in flight.
        plain = asyncio.ensure_future(
            network.allocate(
                AllocationRequest(key="ns/plain", node_name="n1", mode=AllocationMode.SECONDARY_IP)
            )
        )
        await asyncio.sleep(0.01)
        mid_pass = network._refill is not None and not network._refill.done()
        held = await network.allocate(shared("ns/sg-0", (f.app_groups[0],)))
        await plain
        return mid_pass, held.mode

    mid_pass, mode = run_virtual(scenario())
    assert mid_pass, "the scenario must catch a pass in flight"
    assert mode is AllocationMode.SHARED_ENI
