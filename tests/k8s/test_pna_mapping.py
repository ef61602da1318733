"""PNA status <-> the state machine's status; an unreadable status is reported, never read as empty."""

from __future__ import annotations

import random
from typing import Any

from controller.core.allocation_model import AllocationMode, AssignedResources
from controller.core.allocation_state import AllocationState, AllocationStatus, Begin, Succeeded, transition
from controller.core.retry_policy import RetryPolicy
from controller.k8s.objects import PnaSpec, PnaView, PodView
from controller.k8s.pna_mapping import RELEASE_FINALIZER, new_pna, read_status, same_status, status_to_k8s

HELD = AssignedResources(
    mode=AllocationMode.SECONDARY_IP, ip="10.0.0.9", eni_id="eni-0123456789abcdef0", subnet_cidr="10.0.0.0/16"
)


def pna(status: dict[str, Any]) -> PnaView:
    return PnaView.from_k8s(
        {
            "metadata": {"name": "p", "namespace": "ns", "uid": "x", "resourceVersion": "1"},
            "spec": {"podName": "p", "podUID": "u", "nodeName": "n1", "mode": "SecondaryIP"},
            "status": status,
        }
    )


def allocated() -> AllocationStatus:
    policy, rng = RetryPolicy(), random.Random(1)
    status = transition(AllocationStatus.new(100.0), Begin(), now=101.0, policy=policy, rng=rng)
    return transition(status, Succeeded(resources=HELD), now=102.0, policy=policy, rng=rng)


def test_a_status_round_trips() -> None:
    status = allocated()
    read = read_status(pna(status_to_k8s(status)))
    assert read.status is not None and not read.unreadable
    assert read.status.state is AllocationState.ALLOCATED
    assert read.resources == HELD


def test_no_status_is_empty_not_unreadable() -> None:
    read = read_status(pna({}))
    assert read.status is None and not read.unreadable and read.resources is None


def test_an_unreadable_status_says_why_and_keeps_the_address_it_records() -> None:
    body = status_to_k8s(allocated())
    body["attempts"] = 0  # Allocated after no attempt: no transition makes that
    read = read_status(pna(body))
    assert read.unreadable and read.status is None
    assert "cannot be read" in read.problem
    assert read.resources is not None and read.resources.ip == HELD.ip


def test_same_status_ignores_nulls_a_merge_patch_would_clear() -> None:
    body = status_to_k8s(AllocationStatus.new(1.0))
    stored = {k: v for k, v in body.items() if v is not None}
    assert same_status(body, stored)
    assert not same_status({**body, "reason": "Other"}, stored)


def test_a_new_pna_carries_the_release_finalizer_and_its_pod_as_owner() -> None:
    pod = PodView(namespace="ns", name="p", uid="u", node_name="n1")
    body = new_pna(
        pod=pod, spec=PnaSpec(pod_name="p", pod_uid="u", node_name="n1", mode=AllocationMode.SECONDARY_IP)
    )
    assert body["metadata"]["finalizers"] == [RELEASE_FINALIZER]
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u"
    assert body["spec"]["securityGroupIds"] == []


def test_a_shared_eni_status_round_trips_with_its_mode_and_groups() -> None:
    held = HELD.model_copy(
        update={
            "mode": AllocationMode.SHARED_ENI,
            "vlan_id": None,
            "security_group_ids": ("sg-0123456789abcdef0",),
        }
    )
    policy, rng = RetryPolicy(), random.Random(1)
    status = transition(AllocationStatus.new(100.0), Begin(), now=101.0, policy=policy, rng=rng)
    status = transition(status, Succeeded(resources=held), now=102.0, policy=policy, rng=rng)
    read = read_status(pna(status_to_k8s(status)))
    assert read.resources == held


def test_a_steady_wait_differs_only_in_its_counters_and_is_not_written_again() -> None:
    from controller.k8s.pna_mapping import steady_wait

    stored = {
        "state": "WaitingForCapacity",
        "reason": "InsufficientCidrBlocks",
        "message": "no /28 left (retried at most 120s apart, and at once when capacity returns)",
        "attempts": 6,
        "nextAttemptTime": "2026-12-02T10:00:00Z",
        "lastTransitionTime": "2026-12-02T09:58:00Z",
        "conditions": [{"type": "Ready", "status": "False", "reason": "InsufficientCidrBlocks"}],
    }
    retry = stored | {
        "attempts": 7,
        "nextAttemptTime": "2026-12-02T10:01:30Z",
        "lastTransitionTime": "2026-12-02T10:00:00Z",
    }
    assert steady_wait(retry, stored)
    assert not steady_wait(retry | {"message": "no /28 left (attempt 7; next attempt in 80.0s)"}, stored)
    assert not steady_wait(retry | {"reason": "BranchInterfaceLimitExceeded"}, stored)
    assert not steady_wait(
        retry | {"state": "Allocated", "reason": "Allocated"}, stored | {"state": "Allocated"}
    )
    assert not steady_wait(retry, stored | {"state": "Retrying"})
