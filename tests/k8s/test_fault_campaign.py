"""The runtime fault campaign: a fixed sample of seeded schedules in `make test` (any number through
`benchmarks/fault_campaign.py`), and planted bugs that it must catch."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from controller.k8s.fault_campaign import CampaignSettings, Schedule, ScheduleResult, run_campaign
from controller.k8s.harness import shipped_rbac

pytestmark = pytest.mark.slow
SAMPLE = 40
FIRST_SEED = 20261201


@pytest.fixture(scope="module")
def sample() -> list[ScheduleResult]:
    results: list[ScheduleResult] = []
    run_campaign(SAMPLE, seed=FIRST_SEED, on_result=results.append)
    return results


def test_the_fixed_sample_of_schedules_keeps_every_invariant(sample: list[ScheduleResult]) -> None:
    assert len(sample) == SAMPLE
    violations = [v for result in sample for v in result.violations]
    assert violations == [], "\n".join(
        f"seed {v.seed} step {v.step}: {v.invariant}: {v.detail}" for v in violations
    )


def test_the_sample_exercises_every_kind_of_fault(sample: list[ScheduleResult]) -> None:
    steps = Counter(step for result in sample for step in result.steps)
    for kind in (
        "crash_and_restart",
        "api_faults",
        "watch_gap",
        "ec2_faults",
        "replace_node",
        "same_name_again",
        "delete_pna_by_hand",
        "strip_finalizer_and_delete",
        "hand_made_pna",
    ):
        assert steps[kind] > 0, kind


@pytest.mark.parametrize("bug", ["drop-records", "keep-orphans"])
def test_a_planted_bug_makes_the_campaign_fail(bug: str) -> None:
    caught = 0
    for index in range(6):
        result = Schedule(FIRST_SEED + 7 * index, CampaignSettings(planted=bug, recovery_timeout_s=6)).run()
        caught += bool(result.violations)
        if caught:
            break
    assert caught, f"the planted bug {bug!r} went unnoticed"


def test_every_verb_the_shipped_rbac_grants_is_used() -> None:
    """deploy/rbac.yaml grants nothing the controller does not use (seen over a few schedules)."""
    used: set[tuple[str, str]] = set()
    for index in range(3):
        schedule = Schedule(FIRST_SEED + 1000 + index, CampaignSettings())
        schedule.run()
        for request in schedule.cluster.emulator.requests:
            parts = request.path.strip("/").split("/")
            if len(parts) < (3 if parts[0] == "api" else 4):
                continue  # discovery
            used.add((_verb(request.method, request.path, request.is_watch), _resource(request.path)))
    granted = {
        (verb, resource)
        for role in shipped_rbac()
        for rule in role.get("rules") or []
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    # Used outside these schedules: the Lease by leader election (tests/k8s/test_leader_election.py),
    # a NodeNetworkPool GET only after a 409 on its own write.
    elsewhere = {("get", "leases"), ("create", "leases"), ("update", "leases"), ("get", "nodenetworkpools")}
    assert granted - used - elsewhere == set()


def _resource(path: str) -> str:
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    return rest[0] + (f"/{rest[2]}" if len(rest) == 3 else "")


def _verb(method: str, path: str, watch: bool) -> str:
    named = bool(
        re.search(
            r"/(pods|nodes|namespaces|serviceaccounts|securitygrouppolicies|podnetworkallocations|nodenetworkpools|events|leases)/[^/]+",
            path,
        )
    )
    if method == "GET":
        return "watch" if watch else ("get" if named else "list")
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
