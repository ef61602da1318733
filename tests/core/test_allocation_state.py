"""The allocation state machine, row by row, and its conditions."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from controller.core.allocation_model import AllocationMode, AssignedResources
from controller.core.allocation_state import (
    ALLOCATION_EVENT_ADAPTER,
    TRANSITIONS,
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
    ResourcesLost,
    Resumed,
    RetryDue,
    SpecChanged,
    Succeeded,
    Transition,
    accepted_event_kinds,
    transition,
)
from controller.core.conditions import Condition, ConditionType, conditions_for, rfc3339
from controller.core.errors import Ec2Error, ErrorClass
from controller.core.retry_policy import RetryPolicy

S, K = AllocationState, EventKind
POLICY = RetryPolicy()
T0 = 1_700_000_000.0
SEED = 7

RESOURCES = AssignedResources(
    mode=AllocationMode.BRANCH_ENI,
    ip="10.0.1.23",
    eni_id="eni-0123456789abcdef0",
    subnet_cidr="10.0.1.0/24",
    mac_address="0a:1b:2c:3d:4e:5f",
    vlan_id=3,
    security_group_ids=("sg-0123456789abcdef0",),
)
THROTTLED = ErrorInfo(
    code="RequestLimitExceeded", message="Request limit exceeded.", error_class=ErrorClass.THROTTLING
)
TRANSIENT = ErrorInfo(
    code="InternalError", message="An internal error has occurred", error_class=ErrorClass.TRANSIENT
)
NO_CIDR = ErrorInfo(
    code="InsufficientCidrBlocks",
    message="The specified subnet does not have enough free cidr blocks to satisfy the request.",
    error_class=ErrorClass.CAPACITY,
)
NO_SUBNET = ErrorInfo(
    code="InvalidSubnetID.NotFound",
    message="The subnet ID 'subnet-0abc' does not exist",
    error_class=ErrorClass.PERMANENT,
)
ALL_ERRORS = (THROTTLED, TRANSIENT, NO_CIDR, NO_SUBNET)


def step(status: AllocationStatus, event: AllocationEvent, now: float | None = None) -> AllocationStatus:
    when = now if now is not None else max(status.last_transition_time, status.next_attempt_at or 0.0) + 1.0
    return transition(status, event, now=when, policy=POLICY, rng=random.Random(SEED))


def drive(*events: AllocationEvent) -> AllocationStatus:
    status = AllocationStatus.new(T0)
    for event in events:
        status = step(status, event)
    return status


# Statuses in every state, reached through legal paths only; some states in several flavours.
VARIANTS: dict[str, AllocationStatus] = {
    "pending-new": AllocationStatus.new(T0),
    "pending-after-spec-change": drive(Begin(), AttemptFailed(error=NO_SUBNET), SpecChanged(generation=2)),
    "allocating-first": drive(Begin()),
    "allocating-after-retry": drive(Begin(), AttemptFailed(error=THROTTLED), RetryDue()),
    "allocated": drive(Begin(), Succeeded(resources=RESOURCES)),
    "retrying-throttled": drive(Begin(), AttemptFailed(error=THROTTLED)),
    "retrying-transient": drive(Begin(), AttemptFailed(error=TRANSIENT)),
    "waiting-for-capacity": drive(Begin(), AttemptFailed(error=NO_CIDR)),
    "failed": drive(Begin(), AttemptFailed(error=NO_SUBNET)),
    "releasing-from-allocated": drive(Begin(), Succeeded(resources=RESOURCES), ReleaseRequested()),
    "releasing-from-pending": drive(ReleaseRequested()),
    "releasing-after-failed-release": drive(
        Begin(), Succeeded(resources=RESOURCES), ReleaseRequested(), ReleaseAttemptFailed(error=THROTTLED)
    ),
    "released": drive(Begin(), Succeeded(resources=RESOURCES), ReleaseRequested(), ReleaseSucceeded()),
}


def events_of_kind(kind: EventKind, status: AllocationStatus) -> list[AllocationEvent]:
    generation = status.observed_generation
    by_kind: dict[EventKind, list[AllocationEvent]] = {
        K.BEGIN: [Begin()],
        K.SUCCEEDED: [Succeeded(resources=RESOURCES)],
        K.ATTEMPT_FAILED: [AttemptFailed(error=error) for error in ALL_ERRORS],
        K.RETRY_DUE: [RetryDue()],
        K.CAPACITY_FREED: [CapacityFreed()],
        K.SPEC_CHANGED: [
            SpecChanged(generation=g) for g in (generation - 1, generation, generation + 1) if g >= 0
        ],
        K.RESUMED: [Resumed()],
        K.RELEASE_REQUESTED: [ReleaseRequested()],
        K.RELEASE_SUCCEEDED: [ReleaseSucceeded()],
        K.RELEASE_ATTEMPT_FAILED: [ReleaseAttemptFailed(error=error) for error in (THROTTLED, NO_SUBNET)],
        K.RESOURCES_LOST: [ResourcesLost(reason="NodePoolDrained", message="node node-a was deleted")],
    }
    return by_kind[kind]


def times_for(status: AllocationStatus) -> list[float]:
    times = [status.last_transition_time + 1.0]
    if status.next_attempt_at is not None:
        times += [status.next_attempt_at - 0.001, status.next_attempt_at, status.next_attempt_at + 5.0]
    return times


def test_every_state_has_a_variant() -> None:
    assert {status.state for status in VARIANTS.values()} == set(AllocationState)


# --- every row of the table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    reason: Callable[[AllocationEvent], str]
    attempts: str  # "+1", "same", "reset"
    release_attempts: str  # "+1", "same"
    wait: str  # "none", "allocation", "release"
    resources: str  # "kept", "event", "none"


def fixed(reason: str) -> Callable[[AllocationEvent], str]:
    return lambda event: reason


def error_code(event: AllocationEvent) -> str:
    assert isinstance(event, AttemptFailed | ReleaseAttemptFailed)
    return event.error.code.replace(".", "")  # condition reasons cannot hold dots


START = Expected(fixed("AllocationStarted"), "+1", "same", "none", "kept")
RETRY = Expected(fixed("AllocationRetried"), "+1", "same", "none", "kept")
BACKOFF = Expected(error_code, "same", "same", "allocation", "kept")
SPEC = Expected(fixed("SpecChanged"), "reset", "same", "none", "kept")
RELEASE = Expected(fixed("ReleaseRequested"), "same", "+1", "none", "kept")

# Written independently of the table: (source, event kind, guard) -> expectations. Must cover every row.
EXPECTATIONS: dict[tuple[AllocationState, EventKind, str], Expected] = {
    (S.PENDING, K.BEGIN, "unconditional"): START,
    (S.ALLOCATING, K.SUCCEEDED, "unconditional"): Expected(
        fixed("Allocated"), "same", "same", "none", "event"
    ),
    (S.ALLOCATING, K.ATTEMPT_FAILED, "is_throttling_or_transient"): BACKOFF,
    (S.ALLOCATING, K.ATTEMPT_FAILED, "is_capacity"): BACKOFF,
    (S.ALLOCATING, K.ATTEMPT_FAILED, "is_permanent"): Expected(error_code, "same", "same", "none", "kept"),
    (S.ALLOCATING, K.RESUMED, "unconditional"): Expected(
        fixed("AllocationResumed"), "+1", "same", "none", "kept"
    ),
    (S.RETRYING, K.RETRY_DUE, "retry_is_due"): RETRY,
    (S.WAITING_FOR_CAPACITY, K.RETRY_DUE, "retry_is_due"): RETRY,
    (S.WAITING_FOR_CAPACITY, K.CAPACITY_FREED, "unconditional"): Expected(
        fixed("CapacityFreed"), "+1", "same", "none", "kept"
    ),
    (S.PENDING, K.SPEC_CHANGED, "is_newer_generation"): SPEC,
    (S.RETRYING, K.SPEC_CHANGED, "is_newer_generation"): SPEC,
    (S.WAITING_FOR_CAPACITY, K.SPEC_CHANGED, "is_newer_generation"): SPEC,
    (S.FAILED, K.SPEC_CHANGED, "is_newer_generation"): SPEC,
    (S.ALLOCATED, K.RESOURCES_LOST, "unconditional"): Expected(
        fixed("NodePoolDrained"), "reset", "same", "none", "none"
    ),
    (S.PENDING, K.RELEASE_REQUESTED, "unconditional"): RELEASE,
    (S.ALLOCATING, K.RELEASE_REQUESTED, "unconditional"): RELEASE,
    (S.ALLOCATED, K.RELEASE_REQUESTED, "unconditional"): RELEASE,
    (S.RETRYING, K.RELEASE_REQUESTED, "unconditional"): RELEASE,
    (S.WAITING_FOR_CAPACITY, K.RELEASE_REQUESTED, "unconditional"): RELEASE,
    (S.FAILED, K.RELEASE_REQUESTED, "unconditional"): RELEASE,
    (S.RELEASING, K.RELEASE_SUCCEEDED, "release_in_flight"): Expected(
        fixed("Released"), "same", "same", "none", "none"
    ),
    (S.RELEASING, K.RELEASE_ATTEMPT_FAILED, "release_in_flight"): Expected(
        error_code, "same", "same", "release", "kept"
    ),
    (S.RELEASING, K.RETRY_DUE, "retry_is_due"): Expected(
        fixed("ReleaseRetried"), "same", "+1", "none", "kept"
    ),
    (S.RELEASING, K.RESUMED, "release_in_flight"): Expected(
        fixed("ReleaseResumed"), "same", "+1", "none", "kept"
    ),
}
EXPECTED_TARGETS = {
    K.BEGIN: S.ALLOCATING,
    K.SUCCEEDED: S.ALLOCATED,
    K.RETRY_DUE: None,  # Allocating, or Releasing from Releasing
    K.CAPACITY_FREED: S.ALLOCATING,
    K.SPEC_CHANGED: S.PENDING,
    K.RELEASE_REQUESTED: S.RELEASING,
    K.RELEASE_SUCCEEDED: S.RELEASED,
    K.RELEASE_ATTEMPT_FAILED: S.RELEASING,
    K.RESOURCES_LOST: S.PENDING,
}
ATTEMPT_FAILED_TARGETS = {
    ErrorClass.THROTTLING: S.RETRYING,
    ErrorClass.TRANSIENT: S.RETRYING,
    ErrorClass.CAPACITY: S.WAITING_FOR_CAPACITY,
    ErrorClass.PERMANENT: S.FAILED,
}


def row_id(row: Transition) -> str:
    return f"{row.source}-{row.event_kind}-{row.guard.__name__}"


def test_expectations_cover_exactly_the_table() -> None:
    keys = [(row.source, row.event_kind, row.guard.__name__) for row in TRANSITIONS]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(EXPECTATIONS)


def expected_target(row: Transition, event: AllocationEvent) -> AllocationState:
    if isinstance(event, AttemptFailed):
        return ATTEMPT_FAILED_TARGETS[event.error.error_class]
    if event.kind in (K.RESUMED, K.RETRY_DUE) and row.source is S.RELEASING:
        return S.RELEASING
    if event.kind is K.RESUMED:
        return row.source
    target = EXPECTED_TARGETS[event.kind]
    return target if target is not None else S.ALLOCATING


@pytest.mark.parametrize("row", TRANSITIONS, ids=row_id)
def test_row(row: Transition) -> None:
    expected = EXPECTATIONS[(row.source, row.event_kind, row.guard.__name__)]
    cases = [
        (name, status, event, now)
        for name, status in VARIANTS.items()
        if status.state is row.source
        for event in events_of_kind(row.event_kind, status)
        for now in times_for(status)
        if row.guard(status, event, now)
    ]
    assert cases, "no variant satisfies this row's guard"
    for name, before, event, now in cases:
        snapshot = before.model_dump_json()
        after = transition(before, event, now=now, policy=POLICY, rng=random.Random(SEED))
        assert before.model_dump_json() == snapshot, name  # the input is never changed

        assert after.state is row.target is expected_target(row, event), name
        assert after.reason == expected.reason(event), name
        assert (
            after.attempts
            == {"+1": before.attempts + 1, "same": before.attempts, "reset": 0}[expected.attempts]
        )
        assert after.release_attempts == before.release_attempts + (
            1 if expected.release_attempts == "+1" else 0
        )
        assert (
            after.resources
            == {"kept": before.resources, "event": RESOURCES, "none": None}[expected.resources]
        )
        if row.target is S.RELEASED:
            assert after.resources is None
        moved = after.state is not before.state
        assert after.last_transition_time == (now if moved else before.last_transition_time)

        if expected.wait == "none":
            assert after.next_attempt_at is None, name
        else:
            assert isinstance(event, AttemptFailed | ReleaseAttemptFailed)
            rng = random.Random(SEED)
            if expected.wait == "allocation":
                delay = POLICY.delay(event.error.error_class, after.attempts, rng)
                ceiling = POLICY.backoff_for(event.error.error_class).ceiling(after.attempts)
            else:
                delay = POLICY.release_delay(after.release_attempts, rng)
                ceiling = POLICY.release.ceiling(after.release_attempts)
            assert after.next_attempt_at == now + delay
            assert now <= after.next_attempt_at <= now + ceiling
            assert after.last_error == event.error

        if isinstance(event, SpecChanged):
            assert after.observed_generation == event.generation > before.observed_generation
            assert after.last_error is None
        else:
            assert after.observed_generation == before.observed_generation


@pytest.mark.parametrize(
    ("error", "target"),
    [
        (THROTTLED, S.RETRYING),
        (TRANSIENT, S.RETRYING),
        (NO_CIDR, S.WAITING_FOR_CAPACITY),
        (NO_SUBNET, S.FAILED),
    ],
)
def test_attempt_failed_guards_pick_exactly_one_row(error: ErrorInfo, target: AllocationState) -> None:
    status = VARIANTS["allocating-first"]
    event = AttemptFailed(error=error)
    rows = [r for r in TRANSITIONS if r.source is S.ALLOCATING and r.event_kind is K.ATTEMPT_FAILED]
    assert len(rows) == 3
    assert [r.target for r in rows if r.guard(status, event, T0)] == [target]


def test_guards_of_rows_sharing_a_key_never_overlap() -> None:
    for name, status in VARIANTS.items():
        for kind in EventKind:
            rows = [r for r in TRANSITIONS if r.source is status.state and r.event_kind is kind]
            for event in events_of_kind(kind, status):
                for now in times_for(status):
                    assert sum(r.guard(status, event, now) for r in rows) <= 1, (name, kind)


# --- everything else is illegal ------------------------------------------------------------------------

TABLE_PAIRS = {(row.source, row.event_kind) for row in TRANSITIONS}
ILLEGAL_PAIRS = [
    (state, kind) for state in AllocationState for kind in EventKind if (state, kind) not in TABLE_PAIRS
]


def test_released_is_terminal_and_accepted_kinds_follow_the_table() -> None:
    assert accepted_event_kinds(S.RELEASED) == frozenset()
    for state in AllocationState:
        assert accepted_event_kinds(state) == {kind for (source, kind) in TABLE_PAIRS if source is state}
    assert len(ILLEGAL_PAIRS) == len(AllocationState) * len(EventKind) - len(TABLE_PAIRS) > 0


@pytest.mark.parametrize(("state", "kind"), ILLEGAL_PAIRS, ids=str)
def test_illegal_pair_raises_and_changes_nothing(state: AllocationState, kind: EventKind) -> None:
    for status in (s for s in VARIANTS.values() if s.state is state):
        for event in events_of_kind(kind, status):
            snapshot = status.model_dump_json()
            with pytest.raises(IllegalTransition) as caught:
                step(status, event)
            assert caught.value.state is state
            assert caught.value.event_kind is kind
            assert str(state) in str(caught.value) and str(kind) in str(caught.value)
            assert status.model_dump_json() == snapshot


@pytest.mark.parametrize(
    "name", ["retrying-throttled", "waiting-for-capacity", "releasing-after-failed-release"]
)
def test_retry_due_before_its_time_is_refused(name: str) -> None:
    status = VARIANTS[name]
    assert status.next_attempt_at is not None
    with pytest.raises(IllegalTransition, match="retry_is_due"):
        step(status, RetryDue(), now=status.next_attempt_at - 0.001)
    assert step(status, RetryDue(), now=status.next_attempt_at).next_attempt_at is None


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("releasing-from-allocated", RetryDue()),  # nothing to wait for: the release is in flight
        ("releasing-after-failed-release", Resumed()),  # waiting: RetryDue restarts it, not Resumed
        ("releasing-after-failed-release", ReleaseSucceeded()),  # no release in flight to succeed
        ("releasing-after-failed-release", ReleaseAttemptFailed(error=THROTTLED)),
        ("failed", SpecChanged(generation=1)),  # not a newer generation
        ("pending-after-spec-change", SpecChanged(generation=1)),  # an older one
    ],
)
def test_guards_that_do_not_hold_raise(name: str, event: AllocationEvent) -> None:
    status = VARIANTS[name]
    snapshot = status.model_dump_json()
    with pytest.raises(IllegalTransition, match="guard not satisfied") as caught:
        step(status, event)
    assert (caught.value.state, caught.value.event_kind) == (status.state, event.kind)
    assert status.model_dump_json() == snapshot


# --- status model ----------------------------------------------------------------------------------------


def test_new_status_is_pending_and_not_ready() -> None:
    status = AllocationStatus.new(T0, generation=4)
    assert (status.state, status.reason, status.attempts, status.observed_generation) == (
        S.PENDING,
        "Created",
        0,
        4,
    )
    assert status.next_attempt_at is None and status.resources is None and not status.is_ready


@pytest.mark.parametrize("name", list(VARIANTS))
def test_status_survives_a_json_round_trip(name: str) -> None:
    status = VARIANTS[name]
    assert AllocationStatus.model_validate_json(status.model_dump_json()) == status
    assert AllocationStatus.model_validate_json(status.model_dump_json(by_alias=True)) == status


@pytest.mark.parametrize(
    "changes",
    [
        {"next_attempt_at": None},  # Retrying without a retry time
        {"state": S.ALLOCATED},  # Allocated without resources
        {"state": S.PENDING, "attempts": 0, "next_attempt_at": None, "resources": RESOURCES},
        {"state": S.FAILED},  # Failed still holding a retry time
    ],
)
def test_inconsistent_statuses_are_rejected(changes: dict[str, object]) -> None:
    data = VARIANTS["retrying-throttled"].model_dump()
    data.update(changes)
    with pytest.raises(ValidationError):
        AllocationStatus.model_validate(data)


def test_events_parse_from_json_by_kind() -> None:
    event = ALLOCATION_EVENT_ADAPTER.validate_json(
        '{"kind": "AttemptFailed", "error": {"code": "RequestLimitExceeded", "errorClass": "Throttling"}}'
    )
    assert event == AttemptFailed(
        error=ErrorInfo(code="RequestLimitExceeded", error_class=ErrorClass.THROTTLING)
    )
    assert ALLOCATION_EVENT_ADAPTER.validate_python({"kind": "SpecChanged", "generation": 3}) == SpecChanged(
        generation=3
    )
    with pytest.raises(ValidationError):
        ALLOCATION_EVENT_ADAPTER.validate_python({"kind": "Explode"})


def test_error_info_from_ec2_error_keeps_the_classification() -> None:
    fragmented = Ec2Error(
        "InvalidParameterValue",
        "There aren't sufficient free Ipv4 addresses or prefixes",
        action="AssignIpv6",
    )
    info = ErrorInfo.from_ec2_error(fragmented)
    assert (info.code, info.error_class) == ("InvalidParameterValue", ErrorClass.CAPACITY)
    assert info.model_dump(by_alias=True)["errorClass"] == "Capacity"
    status = step(drive(Begin()), AttemptFailed(error=info))
    assert status.state is S.WAITING_FOR_CAPACITY


def test_resumed_repeats_an_allocation_as_a_new_attempt() -> None:
    status = drive(Begin(), AttemptFailed(error=THROTTLED), RetryDue())
    resumed = step(status, Resumed())
    assert (resumed.state, resumed.attempts, resumed.last_error) == (S.ALLOCATING, 3, THROTTLED)
    assert resumed.last_transition_time == status.last_transition_time  # the state did not change


def test_throttling_never_gives_up_and_the_wait_is_capped() -> None:
    status = drive(Begin())
    for _ in range(60):
        status = step(status, AttemptFailed(error=THROTTLED))
        assert status.state is S.RETRYING
        assert status.next_attempt_at is not None
        assert status.next_attempt_at - status.last_transition_time <= POLICY.throttling.cap_s
        status = step(status, RetryDue())
    assert status.attempts == 61


def test_a_wait_at_its_backoff_cap_stops_counting_in_its_message() -> None:
    """Below the cap each retry says its attempt and delay; at the cap every retry says the same, so the
    controller has nothing new to write (pna_mapping.steady_wait) while the attempts still count."""
    status = drive(Begin())
    messages: list[str] = []
    for _ in range(10):
        status = step(status, AttemptFailed(error=NO_CIDR))
        assert status.state is S.WAITING_FOR_CAPACITY and status.next_attempt_at is not None
        messages.append(status.message)
        status = step(status, RetryDue())
    # Capacity backoff 5 s doubling to 120 s: the ceilings of attempts 1..5 are 5, 10, 20, 40, 80.
    assert all("(attempt " in m and "next attempt in" in m for m in messages[:5])
    steady = f"{NO_CIDR.message} (retried at most 120s apart, and at once when capacity returns)"
    assert messages[5:] == [steady] * 5
    assert status.attempts == 11
    throttled = drive(Begin())
    for _ in range(8):
        throttled = step(throttled, AttemptFailed(error=THROTTLED))
        throttled = step(throttled, RetryDue())
    throttled = step(throttled, AttemptFailed(error=THROTTLED))
    assert throttled.message == f"{THROTTLED.message} (retried at most 30s apart)"


# --- conditions ------------------------------------------------------------------------------------------


def cond(status: AllocationStatus, condition_type: ConditionType) -> Condition:
    found = [c for c in status.conditions if c.type == condition_type.value]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_ready_is_true_only_when_allocated(name: str) -> None:
    status = VARIANTS[name]
    ready = cond(status, ConditionType.READY)
    assert (ready.status == "True") is (status.state is S.ALLOCATED)
    assert status.is_ready is (status.state is S.ALLOCATED)
    if ready.status == "False":  # Ready repeats the blocking condition, which is False
        blocking = [c for c in status.conditions if c.type != "Ready" and c.status == "False"]
        assert (ready.reason, ready.message) in {(c.reason, c.message) for c in blocking}


def test_waiting_for_capacity_shows_the_ec2_reason() -> None:
    status = VARIANTS["waiting-for-capacity"]
    capacity = cond(status, ConditionType.CAPACITY_AVAILABLE)
    assert (capacity.status, capacity.reason) == ("False", "InsufficientCidrBlocks")
    assert NO_CIDR.message in capacity.message
    assert cond(status, ConditionType.READY).reason == "InsufficientCidrBlocks"
    assert cond(status, ConditionType.CLOUD_API_AVAILABLE).status == "True"  # EC2 did answer


def test_retrying_marks_the_cloud_api_unavailable() -> None:
    status = VARIANTS["retrying-throttled"]
    api = cond(status, ConditionType.CLOUD_API_AVAILABLE)
    assert (api.status, api.reason) == ("False", "RequestLimitExceeded")
    assert cond(status, ConditionType.READY).reason == "RequestLimitExceeded"


def test_failed_marks_the_configuration_invalid_with_a_valid_reason() -> None:
    status = VARIANTS["failed"]
    config = cond(status, ConditionType.CONFIGURATION_VALID)
    assert (config.status, config.reason) == ("False", "InvalidSubnetIDNotFound")
    assert status.last_error == NO_SUBNET  # the raw EC2 code is kept in last_error
    assert cond(status, ConditionType.READY).reason == "InvalidSubnetIDNotFound"


def test_all_conditions_true_when_allocated() -> None:
    status = VARIANTS["allocated"]
    assert {c.type: c.status for c in status.conditions} == {t.value: "True" for t in ConditionType}


def test_spec_change_resets_learnt_conditions_to_unknown() -> None:
    before = VARIANTS["waiting-for-capacity"]
    after = step(before, SpecChanged(generation=2))
    assert cond(after, ConditionType.CAPACITY_AVAILABLE).status == "Unknown"
    assert {c.observed_generation for c in after.conditions} == {2}


def test_last_transition_time_moves_only_when_the_status_changes() -> None:
    t_wait, t_retry, t_wait_again, t_freed, t_done = T0 + 10, T0 + 400, T0 + 401, T0 + 900, T0 + 901
    status = step(drive(Begin()), AttemptFailed(error=NO_CIDR), now=t_wait)
    assert status.next_attempt_at is not None and status.next_attempt_at < t_retry
    status = step(status, RetryDue(), now=t_retry)
    status = step(status, AttemptFailed(error=NO_CIDR), now=t_wait_again)
    capacity = cond(status, ConditionType.CAPACITY_AVAILABLE)
    assert capacity.status == "False"
    assert capacity.last_transition_time == rfc3339(t_wait)  # still False since the first exhaustion
    assert cond(status, ConditionType.READY).last_transition_time == rfc3339(T0)  # False since creation
    assert (
        cond(status, ConditionType.RESOURCES_ASSIGNED).reason == "InsufficientCidrBlocks"
    )  # reason did move

    status = step(step(status, CapacityFreed(), now=t_freed), Succeeded(resources=RESOURCES), now=t_done)
    assert cond(status, ConditionType.CAPACITY_AVAILABLE).last_transition_time == rfc3339(t_done)
    assert cond(status, ConditionType.READY).last_transition_time == rfc3339(t_done)


def test_conditions_for_keeps_the_time_when_only_the_reason_changes() -> None:
    first = conditions_for((), S.RETRYING, reason="RequestLimitExceeded", message="a", generation=1, now=T0)
    second = conditions_for(first, S.RETRYING, reason="InternalError", message="b", generation=1, now=T0 + 60)
    for old, new in zip(first, second, strict=True):
        assert (new.type, new.status, new.last_transition_time) == (
            old.type,
            old.status,
            old.last_transition_time,
        )
    assert cond_of(second, ConditionType.CLOUD_API_AVAILABLE).reason == "InternalError"
    assert [c.type for c in second].count("Ready") == 1


def cond_of(conditions: tuple[Condition, ...], condition_type: ConditionType) -> Condition:
    return next(c for c in conditions if c.type == condition_type.value)


def test_conditions_dump_with_kubernetes_keys() -> None:
    ready = cond(VARIANTS["allocated"], ConditionType.READY)
    dumped = ready.model_dump(by_alias=True)
    assert set(dumped) == {"type", "status", "observedGeneration", "lastTransitionTime", "reason", "message"}
    assert dumped["lastTransitionTime"] == "2023-11-14T22:13:22Z"  # T0 + 2 s, whole seconds, UTC
    assert Condition.model_validate(dumped) == ready


def test_condition_reasons_are_validated() -> None:
    with pytest.raises(ValidationError):
        Condition(
            type="Ready",
            status="False",
            observed_generation=1,
            last_transition_time=rfc3339(T0),
            reason="Bad.Reason",
            message="",
        )
