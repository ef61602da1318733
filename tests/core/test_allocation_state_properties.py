"""Random event sequences, with controller crashes, never bring an allocation into an inconsistent state.

A crash reloads the last persisted status (a JSON round trip, as it comes back from the PNA status) and
then sends `Resumed` where it is accepted. Every successful transition is persisted (write-through).
"""

from __future__ import annotations

import random

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from controller.core.allocation_model import AllocationMode, AssignedResources
from controller.core.allocation_state import (
    WAITING_STATES,
    AllocationEvent,
    AllocationState,
    AllocationStatus,
    AttemptFailed,
    Begin,
    CapacityFreed,
    ErrorInfo,
    EventKind,
    IllegalTransition,
    ReleaseAttemptFailed,
    ReleaseRequested,
    ReleaseSucceeded,
    Resumed,
    RetryDue,
    SpecChanged,
    Succeeded,
    accepted_event_kinds,
    transition,
)
from controller.core.conditions import ConditionType
from controller.core.errors import Ec2Error
from controller.core.retry_policy import RetryPolicy

S = AllocationState
POLICY = RetryPolicy()

EC2_ERRORS = [
    Ec2Error("RequestLimitExceeded", "Request limit exceeded."),
    Ec2Error("InternalError", "An internal error has occurred"),
    Ec2Error("SomethingNew", "unknown code answered with HTTP 503", http_status=503),
    Ec2Error("InsufficientCidrBlocks", "The specified subnet does not have enough free cidr blocks."),
    Ec2Error("InvalidParameterValue", "There aren't sufficient free Ipv4 addresses or prefixes"),
    Ec2Error("InsufficientFreeAddressesInSubnet", "no free addresses"),
    Ec2Error("InvalidSubnetID.NotFound", "The subnet ID 'subnet-0abc' does not exist"),
    Ec2Error("UnauthorizedOperation", "You are not authorized to perform this operation."),
]
errors = st.sampled_from([ErrorInfo.from_ec2_error(error) for error in EC2_ERRORS])
resources = st.builds(
    AssignedResources,
    mode=st.sampled_from(list(AllocationMode)),
    ip=st.sampled_from(["10.0.1.23", "10.0.2.200"]),
    eni_id=st.just("eni-0123456789abcdef0"),
    subnet_cidr=st.just("10.0.0.0/16"),
    vlan_id=st.one_of(st.none(), st.integers(min_value=1, max_value=120)),
)


class AllocationLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1_700_000_000.0
        self.rng = random.Random(0)
        self.status = AllocationStatus.new(self.now)
        self.persisted = self.status.model_dump_json()
        # What the model knows independently of the status under test:
        self.release_holds_resources = False  # release was requested while Allocated
        self.release_waiting = False  # a release failed and its retry is not due yet

    def apply(self, event: AllocationEvent) -> None:
        before = self.status
        snapshot = before.model_dump_json()
        try:
            after = transition(before, event, now=self.now, policy=POLICY, rng=self.rng)
        except IllegalTransition as refused:
            assert (refused.state, refused.event_kind) == (before.state, event.kind)
            assert before.model_dump_json() == snapshot  # illegal events leave the status unchanged
            return
        assert before.model_dump_json() == snapshot  # the input is never mutated

        if event.kind is EventKind.SPEC_CHANGED:
            assert after.attempts == 0
        else:
            assert after.attempts >= before.attempts
        assert after.release_attempts >= before.release_attempts
        if after.next_attempt_at is not None and after.next_attempt_at != before.next_attempt_at:
            assert after.next_attempt_at >= self.now

        if before.state is not S.RELEASING and after.state is S.RELEASING:
            self.release_holds_resources = before.state is S.ALLOCATED
        if after.state is S.RELEASING:
            if event.kind is EventKind.RELEASE_ATTEMPT_FAILED:
                self.release_waiting = True
            elif event.kind is EventKind.RETRY_DUE:
                self.release_waiting = False
        self.status = after
        self.persisted = after.model_dump_json()

    @rule(seconds=st.floats(min_value=0.0, max_value=200.0))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def begin(self) -> None:
        self.apply(Begin())

    @rule(assigned=resources)
    def succeed(self, assigned: AssignedResources) -> None:
        self.apply(Succeeded(resources=assigned))

    @rule(error=errors)
    def attempt_fails(self, error: ErrorInfo) -> None:
        self.apply(AttemptFailed(error=error))

    @rule(wait_it_out=st.booleans())
    def retry_due(self, wait_it_out: bool) -> None:
        if wait_it_out and self.status.next_attempt_at is not None:
            self.now = max(self.now, self.status.next_attempt_at)
        self.apply(RetryDue())

    @rule()
    def capacity_freed(self) -> None:
        self.apply(CapacityFreed())

    @rule(delta=st.integers(min_value=-1, max_value=2))
    def spec_changes(self, delta: int) -> None:
        self.apply(SpecChanged(generation=max(0, self.status.observed_generation + delta)))

    @rule()
    def release_requested(self) -> None:
        self.apply(ReleaseRequested())

    @rule()
    def release_succeeds(self) -> None:
        self.apply(ReleaseSucceeded())

    @rule(error=errors)
    def release_fails(self, error: ErrorInfo) -> None:
        self.apply(ReleaseAttemptFailed(error=error))

    @rule()
    def stray_resumed(self) -> None:
        self.apply(Resumed())

    @precondition(lambda self: self.status.state is not S.RELEASED)
    @rule()
    def controller_crashes(self) -> None:
        reloaded = AllocationStatus.model_validate_json(self.persisted)
        assert reloaded == self.status
        self.status = reloaded
        if EventKind.RESUMED in accepted_event_kinds(reloaded.state):
            self.apply(Resumed())

    @invariant()
    def resources_only_while_held(self) -> None:
        holds = self.status.state is S.ALLOCATED or (
            self.status.state is S.RELEASING and self.release_holds_resources
        )
        assert (self.status.resources is not None) is holds
        if self.status.state is S.RELEASED:
            assert self.status.resources is None

    @invariant()
    def next_attempt_only_while_waiting(self) -> None:
        waiting = self.status.state in WAITING_STATES or (
            self.status.state is S.RELEASING and self.release_waiting
        )
        assert (self.status.next_attempt_at is not None) is waiting

    @invariant()
    def exactly_one_ready_condition_true_iff_allocated(self) -> None:
        ready = [c for c in self.status.conditions if c.type == ConditionType.READY.value]
        assert len(ready) == 1
        assert (ready[0].status == "True") is (self.status.state is S.ALLOCATED)
        assert len({c.type for c in self.status.conditions}) == len(self.status.conditions)

    @invariant()
    def errors_recorded_while_blocked(self) -> None:
        if self.status.state in WAITING_STATES or self.status.state is S.FAILED:
            assert self.status.last_error is not None
        if self.status.state in (S.ALLOCATED, S.PENDING):
            assert self.status.last_error is None


AllocationLifecycle.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestAllocationLifecycle = AllocationLifecycle.TestCase


def test_a_seeded_run_is_reproducible() -> None:
    """The same seed and event list give byte-identical persisted statuses (the simulation relies on it)."""

    def run(seed: int) -> list[str]:
        rng, now = random.Random(seed), 0.0
        status = AllocationStatus.new(now)
        persisted = []
        for error in [ErrorInfo.from_ec2_error(e) for e in EC2_ERRORS[:6]]:
            status = transition(
                status, Begin() if status.state is S.PENDING else RetryDue(), now=now, policy=POLICY, rng=rng
            )
            status = transition(status, AttemptFailed(error=error), now=now, policy=POLICY, rng=rng)
            now = status.next_attempt_at or now
            persisted.append(status.model_dump_json())
        return persisted

    assert run(3) == run(3)
    assert run(3) != run(4)
