from controller.core.node_pool import BranchEni, BranchState, PoolEni
from controller.core.pool_planner import (
    AssignIps,
    AssignPrefixes,
    AttachEni,
    CreateBranches,
    CreateTrunk,
    DeleteBranches,
    DeleteEni,
    ReleaseIps,
    ReleasePrefixes,
    branch_demand_mark,
    next_action_due,
    plan_pool,
)

from .pool_fixtures import new_pool, prefix


def test_new_node_secondary_ip_mode_fills_one_eni_worth_by_warm_eni_target() -> None:
    plan = plan_pool(new_pool("m5.large"), now=0)
    assert plan.actions == (AssignIps(eni_id="eni-primary", count=9),)
    assert plan.max_pods == 29


def test_warm_eni_target_attaches_whole_enis_when_the_primary_is_full() -> None:
    pool = new_pool("m5.large", warm_eni_target=1)
    pool.add_ips("eni-primary", [f"10.0.1.{i}" for i in range(10, 19)])
    for i in range(5):
        pool.take_ip(f"pod-{i}")
    plan = plan_pool(pool, now=0)
    assert plan.actions == (AttachEni(device_index=1, ip_count=9),)


def test_prefix_mode_keeps_warm_prefix_target_free_prefixes() -> None:
    pool = new_pool("m5.large", enable_prefix_delegation=True, warm_prefix_target=2)
    plan = plan_pool(pool, now=0)
    assert plan.actions == (AssignPrefixes(eni_id="eni-primary", count=2),)
    assert plan.max_pods == 110
    pool.add_prefixes("eni-primary", [prefix(1), prefix(2)])
    pool.take_ip("pod-1")  # one prefix now in use: one more is needed to keep two free
    assert plan_pool(pool, now=0).actions == (AssignPrefixes(eni_id="eni-primary", count=1),)


def test_ip_targets_override_the_prefix_target() -> None:
    pool = new_pool("m5.large", enable_prefix_delegation=True, warm_prefix_target=5, warm_ip_target=20)
    # 20 free addresses need two /28s, not five
    assert plan_pool(pool, now=0).actions == (AssignPrefixes(eni_id="eni-primary", count=2),)


def test_minimum_ip_target_alone_counts_warm_as_zero() -> None:
    pool = new_pool("m5.large", minimum_ip_target=12)
    plan = plan_pool(pool, now=0)
    # 9 secondary slots on the primary, then a second ENI with the 3 still missing
    assert plan.actions == (AssignIps(eni_id="eni-primary", count=9), AttachEni(device_index=1, ip_count=3))
    assert plan.target_addresses == 12


def test_warm_ip_target_plus_minimum_takes_the_larger() -> None:
    pool = new_pool("m5.large", warm_ip_target=2, minimum_ip_target=5)
    assert plan_pool(pool, now=0).target_addresses == 5
    pool.add_ips("eni-primary", [f"10.0.1.{i}" for i in range(10, 15)])
    for i in range(4):
        pool.take_ip(f"pod-{i}")
    assert plan_pool(pool, now=0).target_addresses == 6


def test_max_eni_caps_attachments_and_says_why() -> None:
    pool = new_pool("m5.large", max_eni=1, minimum_ip_target=20)
    plan = plan_pool(pool, now=0)
    assert plan.actions == (AssignIps(eni_id="eni-primary", count=9),)
    assert plan.target_addresses == 9


def test_pod_eni_plans_the_trunk_at_the_highest_index_then_warm_branches() -> None:
    pool = new_pool("m5.large", enable_pod_eni=True, warm_branch_eni_target=3)
    plan = plan_pool(pool, now=0)
    assert plan.actions[0] == CreateTrunk(device_index=2)
    assert plan.actions[-1] == CreateBranches(count=3)


def test_trunk_takes_an_attachment_away_from_pod_addresses() -> None:
    pool = new_pool("m5.large", enable_pod_eni=True, minimum_ip_target=27)
    plan = plan_pool(pool, now=0)
    attaches = [a for a in plan.actions if isinstance(a, AttachEni)]
    assert [a.device_index for a in attaches] == [1]  # index 2 is the trunk's
    assert plan.target_addresses == 18


def test_branch_target_is_capped_by_the_branch_limit() -> None:
    pool = new_pool("m5.large", enable_pod_eni=True, warm_branch_eni_target=50)
    pool.trunk_eni_id, pool.trunk_device_index = "eni-trunk", 2
    assert CreateBranches(count=9) in plan_pool(pool, now=0).actions


def test_instance_that_cannot_trunk_gets_a_note_not_a_trunk() -> None:
    pool = new_pool("t2.micro", enable_pod_eni=True)
    plan = plan_pool(pool, now=0)
    assert not any(isinstance(a, CreateTrunk | CreateBranches) for a in plan.actions)
    assert any("cannot trunk" in note for note in plan.notes)


def test_excess_is_released_only_after_the_delay_and_only_free_capacity() -> None:
    pool = new_pool("m5.large", warm_ip_target=2, excess_release_delay_s=30)
    pool.add_ips("eni-primary", [f"10.0.1.{i}" for i in range(10, 19)])
    pool.take_ip("pod-held")
    first = plan_pool(pool, now=100)
    assert first.actions == ()
    assert first.excess_since == 100
    pool.excess_since = first.excess_since
    assert plan_pool(pool, now=120).actions == ()
    later = plan_pool(pool, now=131)
    (release,) = later.actions
    assert isinstance(release, ReleaseIps)
    assert len(release.ips) == 6  # 9 held: 1 in use + 2 warm stay
    assert "10.0.1.10" not in release.ips  # the held address is never released
    assert later.excess_since is None


def test_excess_clears_when_demand_returns() -> None:
    pool = new_pool("m5.large", warm_ip_target=1)
    pool.add_ips("eni-primary", ["10.0.1.10", "10.0.1.11", "10.0.1.12"])
    pool.excess_since = plan_pool(pool, now=0).excess_since
    assert pool.excess_since == 0
    pool.take_ip("a")
    pool.take_ip("b")
    assert plan_pool(pool, now=10).excess_since is None


def test_a_whole_free_secondary_eni_is_deleted_not_emptied() -> None:
    pool = new_pool("m5.large", warm_ip_target=1, excess_release_delay_s=0)
    pool.add_ips("eni-primary", [f"10.0.1.{i}" for i in range(10, 19)])
    pool.add_eni(PoolEni(eni_id="eni-second", device_index=1, primary=False, ips=["10.0.2.1", "10.0.2.2"]))
    for i in range(8):
        pool.take_ip(f"pod-{i}")
    pool.excess_since = 0
    actions = plan_pool(pool, now=1).actions
    assert DeleteEni(eni_id="eni-second") in actions


def test_prefix_excess_releases_whole_free_prefixes_only() -> None:
    pool = new_pool("m5.large", enable_prefix_delegation=True, warm_prefix_target=1, excess_release_delay_s=0)
    pool.add_prefixes("eni-primary", [prefix(1), prefix(2), prefix(3)])
    pool.take_ip("pod")  # lands in prefix 1
    pool.excess_since = 0
    (release,) = plan_pool(pool, now=1).actions
    assert isinstance(release, ReleasePrefixes)
    assert release.prefixes == (prefix(3),)


def test_excess_warm_branches_are_deleted_after_the_delay() -> None:
    pool = new_pool("m5.large", enable_pod_eni=True, warm_branch_eni_target=1, excess_release_delay_s=10)
    pool.trunk_eni_id, pool.trunk_device_index = "eni-trunk", 2
    for vlan in (1, 2, 3):
        pool.add_branch(BranchEni(f"eni-b{vlan}", vlan, f"10.0.3.{vlan}", "", f"a{vlan}", ("sg-1",)))
    plan = plan_pool(pool, now=0)
    assert not any(isinstance(a, DeleteBranches) for a in plan.actions)
    pool.branch_excess_since = plan.branch_excess_since
    later = plan_pool(pool, now=10)
    assert DeleteBranches(eni_ids=("eni-b2", "eni-b3")) in later.actions


def test_cooling_branches_count_toward_the_warm_target() -> None:
    pool = new_pool("m5.large", enable_pod_eni=True, warm_branch_eni_target=2)
    pool.trunk_eni_id, pool.trunk_device_index = "eni-trunk", 2
    pool.add_branch(BranchEni("eni-b1", 1, "10.0.3.1", "", "a1", ("sg-1",), state=BranchState.COOLING))
    # one is cooling and comes back soon: only one more is made, not two
    assert CreateBranches(count=1) in plan_pool(pool, now=0).actions


def test_the_branches_of_terminating_pods_count_toward_the_warm_target() -> None:
    """A rollout: new pods took the warm branches while the old ones terminate. Their branches come back
    after the grace period and the cool-down, so no replacement is made meanwhile."""
    pool = new_pool("m5.large", enable_pod_eni=True, warm_branch_eni_target=2)
    pool.trunk_eni_id, pool.trunk_device_index = "eni-trunk", 2
    for vlan in (1, 2):
        pool.add_branch(BranchEni(f"eni-b{vlan}", vlan, f"10.0.3.{vlan}", "", f"a{vlan}", ("sg-1",)))
        pool.assign_branch(f"ns/old-{vlan}/u", f"eni-b{vlan}")
    assert CreateBranches(count=2) in plan_pool(pool, now=0).actions
    for key in ("ns/old-1/u", "ns/old-2/u", "other/gone/u"):
        pool.mark_returning(key)
    assert pool.returning == {"ns/old-1/u", "ns/old-2/u"}  # a key holding nothing here is not kept
    assert not any(isinstance(a, CreateBranches) for a in plan_pool(pool, now=0).actions)
    pool.unassign_branch("ns/old-1/u", now=0)  # gone: its branch cools, and it no longer "returns"
    assert pool.returning == {"ns/old-2/u"} and pool.returning_branches() == 1
    assert not any(isinstance(a, CreateBranches) for a in plan_pool(pool, now=0).actions)


def test_next_action_due_is_now_with_work_then_the_first_timer_then_none() -> None:
    pool = new_pool("m5.large", enable_pod_eni=True, warm_branch_eni_target=1, branch_cooldown_s=30)
    pool.trunk_eni_id, pool.trunk_device_index = "eni-trunk", 2
    pool.add_ips("eni-primary", [f"10.0.1.{i}" for i in range(10, 19)])
    assert next_action_due(pool, now=5) == 5  # a warm branch is missing
    pool.add_branch(BranchEni("eni-b1", 1, "10.0.3.1", "", "a1", ("sg-1",)))
    assert next_action_due(pool, now=5) is None  # at its targets, nothing cooling: quiet
    pool.assign_branch("ns/p/u", "eni-b1")
    pool.returning.add("ns/p/u")
    pool.unassign_branch("ns/p/u", now=5)  # cooling until 35; it counts toward the target meanwhile
    assert next_action_due(pool, now=6) == 35  # a running cool-down is not quiet


def _rollout_pool(quiet_s: float = 300.0):  # type: ignore[no-untyped-def]
    """Target 2. A rollout held 6 branches at once (3 old pods' cooling, 3 new pods'), then the old
    ones came back warm: 3 assigned, 5 warm (2 of them the target)."""
    pool = new_pool(
        "m5.large",
        enable_pod_eni=True,
        warm_branch_eni_target=2,
        excess_release_delay_s=10,
        branch_demand_quiet_s=quiet_s,
    )
    pool.trunk_eni_id, pool.trunk_device_index = "eni-trunk", 2
    pool.add_ips("eni-primary", [f"10.0.1.{i}" for i in range(10, 19)])  # addresses at target
    for vlan in range(1, 9):
        pool.add_branch(BranchEni(f"eni-b{vlan}", vlan, f"10.0.3.{vlan}", "", f"a{vlan}", ("sg-1",)))
    for vlan in range(1, 7):
        pool.assign_branch(f"ns/p{vlan}/u", f"eni-b{vlan}")
    pool.branch_high_water, pool.branch_high_water_at = branch_demand_mark(pool, now=0)
    assert pool.branch_high_water == 6
    for vlan in range(1, 4):  # the old pods go; their branches cool, then come back warm
        pool.unassign_branch(f"ns/p{vlan}/u", now=0)
    pool.expire_cooldowns(now=40)
    return pool


def _plan_until(pool, start: float, end: float, step: float = 5.0):  # type: ignore[no-untyped-def]
    """Plan every `step` seconds as the periodic pass does, keeping the timers the plan returns;
    returns the first plan that deletes branches, with its time."""
    now = start
    while now <= end:
        plan = plan_pool(pool, now=now)
        pool.branch_excess_since = plan.branch_excess_since
        pool.branch_high_water, pool.branch_high_water_at = plan.branch_high_water, plan.branch_high_water_at
        for action in plan.actions:
            if isinstance(action, DeleteBranches):
                return now, action
        now += step
    return None


def test_warm_branches_up_to_the_demand_high_water_mark_are_kept_until_it_has_been_quiet() -> None:
    """Hysteresis: after a rollout, the branches its old pods freed are what the next rollout needs.
    They are kept while the high-water mark of assigned + cooling (6) stands, and only the surplus
    above target is deleted once the mark has not been reached for branch_demand_quiet_s."""
    pool = _rollout_pool(quiet_s=300)
    assert not any(isinstance(a, CreateBranches) for a in plan_pool(pool, now=40).actions)
    found = _plan_until(pool, start=40, end=400)
    assert found is not None
    when, action = found
    # the mark (reached at t=0) comes down at 300; the excess is deleted 10 s (the delay) after that
    assert 300 <= when <= 315
    assert len(action.eni_ids) == 3  # 5 warm, 3 in use + target 2 kept: 3 go, the target stays


def test_without_a_quiet_period_excess_warm_branches_go_after_the_release_delay() -> None:
    pool = _rollout_pool(quiet_s=0)
    found = _plan_until(pool, start=40, end=400)
    assert found is not None and found[0] == 50 and len(found[1].eni_ids) == 3


def test_new_demand_at_the_mark_restarts_the_quiet_period() -> None:
    pool = _rollout_pool(quiet_s=300)
    assert _plan_until(pool, start=40, end=250) is None
    for vlan in range(1, 4):  # the next rollout takes the kept branches back: the mark is reached again
        pool.assign_branch(f"ns/q{vlan}/u", f"eni-b{vlan}")
    plan = plan_pool(pool, now=260)
    assert plan.branch_high_water == 6 and plan.branch_high_water_at == 260
    assert not any(isinstance(a, CreateBranches | DeleteBranches) for a in plan.actions)


def test_next_action_due_counts_the_end_of_the_quiet_period() -> None:
    """A loop that waits for quiet must not stop while kept branches are still to be deleted."""
    pool = _rollout_pool(quiet_s=300)
    plan = plan_pool(pool, now=40)
    pool.branch_high_water, pool.branch_high_water_at = plan.branch_high_water, plan.branch_high_water_at
    assert next_action_due(pool, now=40) == 300


def test_a_branch_promised_to_a_waiting_pod_is_not_deleted_as_excess() -> None:
    pool = new_pool("m5.large", enable_pod_eni=True, warm_branch_eni_target=0, excess_release_delay_s=0)
    pool.trunk_eni_id, pool.trunk_device_index = "eni-trunk", 2
    pool.add_branch(BranchEni("eni-b1", 1, "10.0.3.1", "", "a1", ("sg-1",), state=BranchState.COOLING))
    pool.add_branch(BranchEni("eni-b2", 2, "10.0.3.2", "", "a2", ("sg-1",)))
    pool.promise_branch("eni-b1", "ns/waiting/u")
    pool.expire_cooldowns(now=100)
    pool.branch_excess_since = 0
    (delete,) = [a for a in plan_pool(pool, now=100).actions if isinstance(a, DeleteBranches)]
    assert delete.eni_ids == ("eni-b2",)


def test_a_subnet_that_refused_blocks_is_not_asked_again_before_its_backoff_ends() -> None:
    """prefix-exhaustion: the periodic pass asked a full subnet for its warm /28s every time, about
    eight refused calls per pod start. While the refusal's backoff runs, no prefix is planned (and
    nothing is released either), the plan says why, and next_action_due wakes at its end."""
    pool = new_pool("m5.large", enable_prefix_delegation=True, warm_prefix_target=2)
    assert AssignPrefixes(eni_id="eni-primary", count=2) in plan_pool(pool, now=0).actions
    pool.prefix_refused_until = 50.0
    held_back = plan_pool(pool, now=10)
    assert not any(isinstance(a, AssignPrefixes | AttachEni) for a in held_back.actions)
    assert any("refused /28 blocks" in note for note in held_back.notes)
    assert next_action_due(pool, now=10) == 50.0
    assert AssignPrefixes(eni_id="eni-primary", count=2) in plan_pool(pool, now=50).actions
