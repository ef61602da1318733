import pytest

from controller.core.allocation_model import AllocationMode
from controller.core.node_pool import BranchEni, BranchState, PoolInvariantError

from .pool_fixtures import new_pool, prefix


def test_an_address_is_never_given_twice_and_cools_down_before_reuse() -> None:
    pool = new_pool(ip_cooldown_s=30)
    pool.add_ips("eni-primary", ["10.0.1.10"])
    first = pool.take_ip("pod-a")
    assert first is not None and first.ip == "10.0.1.10"
    assert first.mode is AllocationMode.SECONDARY_IP
    assert pool.take_ip("pod-b") is None
    assert pool.take_ip("pod-a") == first  # idempotent for the same key
    pool.release_ip("pod-a", now=100)
    assert pool.take_ip("pod-b") is None  # cooling down
    pool.expire_cooldowns(now=129)
    assert pool.take_ip("pod-b") is None
    pool.expire_cooldowns(now=130)
    second = pool.take_ip("pod-b")
    assert second is not None and second.ip == "10.0.1.10"


def test_prefix_addresses_carry_their_prefix() -> None:
    pool = new_pool(enable_prefix_delegation=True)
    pool.add_prefixes("eni-primary", [prefix(7)])
    taken = {pool.take_ip(f"pod-{i}") for i in range(16)}
    assert len({r.ip for r in taken if r}) == 16
    assert {r.prefix for r in taken if r} == {prefix(7)}
    assert pool.take_ip("pod-17") is None


def test_held_addresses_cannot_be_released() -> None:
    pool = new_pool()
    pool.add_ips("eni-primary", ["10.0.1.10", "10.0.1.11"])
    pool.take_ip("pod-a")
    with pytest.raises(PoolInvariantError):
        pool.remove_ips("eni-primary", ["10.0.1.10"])
    pool.remove_ips("eni-primary", ["10.0.1.11"])
    assert pool.total_ips() == 1


def test_the_same_address_cannot_enter_the_pool_twice() -> None:
    pool = new_pool()
    pool.add_ips("eni-primary", ["10.0.1.10"])
    with pytest.raises(PoolInvariantError):
        pool.add_ips("eni-primary", ["10.0.1.10"])


def test_restore_rejects_a_second_holder() -> None:
    pool = new_pool()
    pool.add_ips("eni-primary", ["10.0.1.10"])
    assert pool.restore_ip("pod-a", "10.0.1.10")
    assert not pool.restore_ip("pod-a", "10.9.9.9")
    with pytest.raises(PoolInvariantError):
        pool.restore_ip("pod-b", "10.0.1.10")


def test_warm_branch_with_matching_groups_is_preferred_and_never_shared() -> None:
    pool = new_pool(enable_pod_eni=True, branch_cooldown_s=60)
    pool.add_branch(BranchEni("eni-b1", 1, "10.0.3.1", "", "a1", ("sg-default",)))
    pool.add_branch(BranchEni("eni-b2", 2, "10.0.3.2", "", "a2", ("sg-app",)))
    chosen = pool.choose_warm_branch(("sg-app",))
    assert chosen is not None and chosen.eni_id == "eni-b2"
    pool.assign_branch("pod-a", "eni-b2")
    with pytest.raises(PoolInvariantError):
        pool.assign_branch("pod-b", "eni-b2")
    other = pool.choose_warm_branch(("sg-app",))
    assert other is not None and other.eni_id == "eni-b1"  # falls back to any warm branch
    pool.unassign_branch("pod-a", now=10)
    assert pool.branches["eni-b2"].state is BranchState.COOLING
    pool.expire_cooldowns(now=69)
    assert pool.branches["eni-b2"].state is BranchState.COOLING
    pool.expire_cooldowns(now=70)
    assert pool.branches["eni-b2"].state is BranchState.WARM


def test_vlan_ids_are_unique_and_bounded_by_the_branch_limit() -> None:
    pool = new_pool("m5.large", enable_pod_eni=True)
    for vlan in range(1, 10):
        pool.add_branch(BranchEni(f"eni-b{vlan}", vlan, f"10.0.3.{vlan}", "", f"a{vlan}", ()))
    assert pool.free_vlan() is None  # m5.large: 9 branch ENIs
    with pytest.raises(PoolInvariantError):
        pool.add_branch(BranchEni("eni-dup", 3, "10.0.3.99", "", "a99", ()))


def test_status_counts_what_the_pool_holds() -> None:
    pool = new_pool()
    pool.add_ips("eni-primary", ["10.0.1.10", "10.0.1.11", "10.0.1.12"])
    pool.take_ip("pod-a")
    pool.take_ip("pod-b")
    pool.release_ip("pod-b", now=0)
    status = pool.status()
    assert (status.used_ips, status.cooling_ips, status.free_ips, status.total_ips) == (1, 1, 1, 3)


def test_a_cooling_branch_promised_to_one_pod_is_offered_to_no_other() -> None:
    pool = new_pool(enable_pod_eni=True, branch_cooldown_s=30)
    pool.add_branch(BranchEni("eni-b1", 1, "10.0.3.1", "", "a1", ("sg-1",)))
    pool.add_branch(BranchEni("eni-b2", 2, "10.0.3.2", "", "a2", ("sg-1",)))
    pool.assign_branch("ns/old-1/u", "eni-b1")
    pool.assign_branch("ns/old-2/u", "eni-b2")
    pool.unassign_branch("ns/old-1/u", now=0)  # back at 30
    pool.unassign_branch("ns/old-2/u", now=5)  # back at 35
    first = pool.soonest_cooling_branch("ns/new-1/u")
    assert first is not None and first.eni_id == "eni-b1"
    pool.promise_branch("eni-b1", "ns/new-1/u")
    second = pool.soonest_cooling_branch("ns/new-2/u")
    assert second is not None and second.eni_id == "eni-b2"  # not the one promised to new-1
    with pytest.raises(PoolInvariantError, match="promised to ns/new-1/u"):
        pool.promise_branch("eni-b1", "ns/new-2/u")
    pool.expire_cooldowns(now=40)
    # back warm: only its pod gets it, even though it is the oldest warm branch
    taken = pool.choose_warm_branch(("sg-1",), "ns/other/u")
    assert taken is not None and taken.eni_id == "eni-b2"
    with pytest.raises(PoolInvariantError, match="promised"):
        pool.assign_branch("ns/other/u", "eni-b1")
    mine = pool.choose_warm_branch(("sg-9",), "ns/new-1/u")
    assert mine is not None and mine.eni_id == "eni-b1"
    pool.assign_branch("ns/new-1/u", "eni-b1")
    assert pool.promised == {}  # kept until taken, then gone


def test_a_promise_goes_with_the_pod_and_with_the_branch() -> None:
    pool = new_pool(enable_pod_eni=True)
    pool.add_branch(BranchEni("eni-b1", 1, "10.0.3.1", "", "a1", ("sg-1",), state=BranchState.COOLING))
    pool.promise_branch("eni-b1", "ns/p/u")
    pool.forget_promise("ns/p/u")
    assert pool.soonest_cooling_branch("ns/q/u") is not None
    pool.promise_branch("eni-b1", "ns/q/u")
    assert pool.forget_eni("eni-b1") == []
    assert pool.promised == {}
