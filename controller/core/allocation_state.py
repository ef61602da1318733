"""The allocation state machine of one PodNetworkAllocation: states, events, ONE transition table.

`transition(status, event, now=..., policy=..., rng=...)` looks the (state, event kind) pair up in
`TRANSITIONS`, picks the row whose guard holds, and returns a NEW `AllocationStatus`; the input is never
changed (it is frozen). No row, or no guard holding, raises `IllegalTransition` naming the state and event.

    Pending --Begin--> Allocating --Succeeded--> Allocated
    Allocating --AttemptFailed[throttling|transient]--> Retrying --RetryDue[due]--> Allocating
    Allocating --AttemptFailed[capacity]--> WaitingForCapacity --RetryDue[due] | CapacityFreed--> Allocating
    Allocating --AttemptFailed[permanent]--> Failed
    Pending | Retrying | WaitingForCapacity | Failed --SpecChanged[newer generation]--> Pending
    Allocated --ResourcesLost--> Pending          (the pool no longer has them: node drained, ENI gone)
    Allocating --Resumed--> Allocating            (after a restart: the step is repeated, idempotently)
    any state but Releasing/Released --ReleaseRequested--> Releasing   (resources kept until released)
    Releasing --ReleaseSucceeded[in flight]--> Released (terminal)
    Releasing --ReleaseAttemptFailed[in flight]--> Releasing (waiting) --RetryDue[due]--> Releasing
    Releasing --Resumed[in flight]--> Releasing

Counting: `attempts` counts allocation attempts started for the observed generation (Begin, RetryDue,
CapacityFreed and Resumed each start one; only SpecChanged resets it); `release_attempts` counts release
attempts (ReleaseRequested, RetryDue and Resumed in Releasing). The backoff after failure number n is
`policy.delay(error_class, n, rng)`; there is no give-up for capacity or throttling (see retry_policy).

`next_attempt_at` is set exactly in Retrying, WaitingForCapacity and Releasing after a failed release
("waiting"); in Releasing with no `next_attempt_at` a release step is in flight. Releases, like
allocations, only report a result while in flight. `last_transition_time` moves only when `state` changes.

Times are floats in seconds supplied by the caller. They are persisted in the PNA status and compared
after a restart, so they should be wall-clock (epoch) seconds, or the simulation's virtual clock.
`transition` is deterministic given its inputs: the only randomness is the jitter drawn from `rng`, and only
transitions that schedule a wait draw from it (exactly one draw each).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Final, Literal, Required, TypeAlias, TypedDict, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.alias_generators import to_camel

from controller.core.allocation_model import AssignedResources
from controller.core.conditions import Condition, ConditionType, condition_reason, conditions_for
from controller.core.errors import Ec2Error, ErrorClass
from controller.core.retry_policy import RetryPolicy


class AllocationState(StrEnum):
    PENDING = "Pending"  # nothing tried yet for the observed generation
    ALLOCATING = "Allocating"  # an allocation step is in flight
    ALLOCATED = "Allocated"  # the pod has its resources
    RETRYING = "Retrying"  # throttled or transient fault: retry soon, with backoff
    WAITING_FOR_CAPACITY = "WaitingForCapacity"  # subnet or node exhausted: retry after a cool-down, forever
    FAILED = "Failed"  # permanent error: re-driven only by a spec change
    RELEASING = "Releasing"  # giving the resources back (in flight, or waiting after a failed release)
    RELEASED = "Released"  # terminal


# States in which `next_attempt_at` is always set. Releasing has it only after a failed release.
WAITING_STATES: Final = frozenset({AllocationState.RETRYING, AllocationState.WAITING_FOR_CAPACITY})
# States that may hold `next_attempt_at`.
SCHEDULABLE_STATES: Final = WAITING_STATES | {AllocationState.RELEASING}
# States that may hold resources (Releasing only when release was requested while Allocated).
RESOURCE_HOLDING_STATES: Final = frozenset({AllocationState.ALLOCATED, AllocationState.RELEASING})
TERMINAL_STATES: Final = frozenset({AllocationState.RELEASED})


class EventKind(StrEnum):
    BEGIN = "Begin"
    SUCCEEDED = "Succeeded"
    ATTEMPT_FAILED = "AttemptFailed"
    RETRY_DUE = "RetryDue"
    CAPACITY_FREED = "CapacityFreed"
    SPEC_CHANGED = "SpecChanged"
    RESUMED = "Resumed"
    RELEASE_REQUESTED = "ReleaseRequested"
    RELEASE_SUCCEEDED = "ReleaseSucceeded"
    RELEASE_ATTEMPT_FAILED = "ReleaseAttemptFailed"
    RESOURCES_LOST = "ResourcesLost"


class ErrorInfo(BaseModel):
    """The error an attempt failed with, as recorded in the PNA status (`lastError`, camelCase aliases)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, validate_by_name=True, validate_by_alias=True
    )

    code: str = Field(min_length=1, max_length=256)
    message: str = Field(default="", max_length=32768)
    error_class: ErrorClass

    @classmethod
    def from_ec2_error(cls, error: Ec2Error) -> ErrorInfo:
        return cls(code=error.code, message=error.message, error_class=error.error_class)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Begin(_Event):
    """Start the first allocation attempt."""

    kind: Literal[EventKind.BEGIN] = EventKind.BEGIN


class Succeeded(_Event):
    """The allocation attempt in flight succeeded."""

    kind: Literal[EventKind.SUCCEEDED] = EventKind.SUCCEEDED
    resources: AssignedResources
    reason: str = Field(default="Allocated", min_length=1)  # "PrefixFallback": a secondary IP, no /28 left
    note: str = ""


class AttemptFailed(_Event):
    """The allocation attempt in flight failed; its error class picks the next state."""

    kind: Literal[EventKind.ATTEMPT_FAILED] = EventKind.ATTEMPT_FAILED
    error: ErrorInfo


class RetryDue(_Event):
    """The wait is over (only accepted once `now >= next_attempt_at`)."""

    kind: Literal[EventKind.RETRY_DUE] = EventKind.RETRY_DUE


class CapacityFreed(_Event):
    """The pool grew (addresses freed, subnet added): stop waiting for capacity and try at once."""

    kind: Literal[EventKind.CAPACITY_FREED] = EventKind.CAPACITY_FREED


class SpecChanged(_Event):
    """The PNA spec changed (metadata.generation moved): start over, attempts reset."""

    kind: Literal[EventKind.SPEC_CHANGED] = EventKind.SPEC_CHANGED
    generation: int = Field(ge=0)


class Resumed(_Event):
    """The controller restarted while a step was in flight: repeat it (steps are idempotent)."""

    kind: Literal[EventKind.RESUMED] = EventKind.RESUMED


class ReleaseRequested(_Event):
    """The pod is gone (or the PNA is being deleted): give everything back."""

    kind: Literal[EventKind.RELEASE_REQUESTED] = EventKind.RELEASE_REQUESTED


class ReleaseSucceeded(_Event):
    kind: Literal[EventKind.RELEASE_SUCCEEDED] = EventKind.RELEASE_SUCCEEDED


class ReleaseAttemptFailed(_Event):
    """The release step in flight failed; it is retried with the release backoff whatever the error."""

    kind: Literal[EventKind.RELEASE_ATTEMPT_FAILED] = EventKind.RELEASE_ATTEMPT_FAILED
    error: ErrorInfo


class ResourcesLost(_Event):
    """What the status records is no longer the pod's (its node was drained, EC2 no longer has the ENI
    or address): say so and start over, so the status never claims an address the pool does not hold."""

    kind: Literal[EventKind.RESOURCES_LOST] = EventKind.RESOURCES_LOST
    reason: str = Field(default="ResourcesLost", min_length=1)
    message: str = ""


AllocationEvent: TypeAlias = Annotated[
    Begin
    | Succeeded
    | AttemptFailed
    | RetryDue
    | CapacityFreed
    | SpecChanged
    | Resumed
    | ReleaseRequested
    | ReleaseSucceeded
    | ReleaseAttemptFailed
    | ResourcesLost,
    Field(discriminator="kind"),
]
ALLOCATION_EVENT_ADAPTER: Final[TypeAdapter[AllocationEvent]] = TypeAdapter(AllocationEvent)


class AllocationStatus(BaseModel):
    """The persisted state of one allocation. Immutable: transitions return new statuses.

    The validator rejects statuses no transition can produce (e.g. a corrupted status read back).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: AllocationState
    reason: str = Field(min_length=1)
    message: str = ""
    attempts: int = Field(default=0, ge=0)
    release_attempts: int = Field(default=0, ge=0)
    last_transition_time: float = Field(allow_inf_nan=False)
    next_attempt_at: float | None = Field(default=None, allow_inf_nan=False)
    resources: AssignedResources | None = None
    last_error: ErrorInfo | None = None
    observed_generation: int = Field(default=1, ge=0)
    conditions: tuple[Condition, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> AllocationStatus:
        state = self.state
        if (state in WAITING_STATES and self.next_attempt_at is None) or (
            state not in SCHEDULABLE_STATES and self.next_attempt_at is not None
        ):
            raise ValueError(f"next_attempt_at must be set exactly when waiting to retry (state {state})")
        if (state is AllocationState.ALLOCATED and self.resources is None) or (
            state not in RESOURCE_HOLDING_STATES and self.resources is not None
        ):
            raise ValueError(f"resources must be present in Allocated, and absent but in Releasing ({state})")
        if state is AllocationState.PENDING and self.attempts != 0:
            raise ValueError("a Pending allocation has made no attempts")
        if state in _ATTEMPTED_STATES and self.attempts < 1:
            raise ValueError(f"state {state} needs at least one allocation attempt")
        if state in _RELEASE_STATES and self.release_attempts < 1:
            raise ValueError(f"state {state} needs at least one release attempt")
        return self

    @classmethod
    def new(cls, now: float, generation: int = 1) -> AllocationStatus:
        """The status of a freshly created allocation: Pending, nothing tried."""
        reason, message = "Created", "waiting for the first allocation attempt"
        return cls(
            state=AllocationState.PENDING,
            reason=reason,
            message=message,
            last_transition_time=now,
            observed_generation=generation,
            conditions=conditions_for(
                (), AllocationState.PENDING, reason=reason, message=message, generation=generation, now=now
            ),
        )

    def condition(self, condition_type: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == condition_type.value), None)

    @property
    def is_ready(self) -> bool:
        ready = self.condition(ConditionType.READY)
        return ready is not None and ready.status == "True"


_ATTEMPTED_STATES: Final = frozenset(
    {
        AllocationState.ALLOCATING,
        AllocationState.ALLOCATED,
        AllocationState.RETRYING,
        AllocationState.WAITING_FOR_CAPACITY,
        AllocationState.FAILED,
    }
)
_RELEASE_STATES: Final = frozenset({AllocationState.RELEASING, AllocationState.RELEASED})


class IllegalTransition(Exception):
    """No transition accepts this event in this state (or its guard does not hold)."""

    def __init__(self, state: AllocationState, event_kind: EventKind, reason: str) -> None:
        super().__init__(f"illegal transition: event {event_kind} in state {state}: {reason}")
        self.state = state
        self.event_kind = event_kind
        self.reason = reason


# --- the pieces of a row -----------------------------------------------------------------------------

Guard: TypeAlias = Callable[[AllocationStatus, AllocationEvent, float], bool]


@dataclass(frozen=True)
class TransitionContext:
    now: float
    policy: RetryPolicy
    rng: random.Random


class StatusUpdate(TypedDict, total=False):
    """What an effect changes. Fields not named keep their value, except `next_attempt_at`, which is
    cleared unless the effect schedules a new wait (every transition out of a wait ends it)."""

    reason: Required[str]
    message: Required[str]
    attempts: int
    release_attempts: int
    next_attempt_at: float | None
    resources: AssignedResources | None
    last_error: ErrorInfo | None
    observed_generation: int


Effect: TypeAlias = Callable[[AllocationStatus, AllocationEvent, TransitionContext], StatusUpdate]


@dataclass(frozen=True)
class Transition:
    source: AllocationState
    event_kind: EventKind
    guard: Guard
    target: AllocationState
    effect: Effect


_EventT = TypeVar("_EventT", bound=_Event)


def _event_as(event: AllocationEvent, event_type: type[_EventT]) -> _EventT:
    if not isinstance(event, event_type):  # the table is keyed by kind, so this cannot happen
        raise TypeError(f"expected {event_type.__name__}, got {type(event).__name__}")
    return event


# --- guards --------------------------------------------------------------------------------------------


def unconditional(status: AllocationStatus, event: AllocationEvent, now: float) -> bool:
    return True


def _error_class_of(event: AllocationEvent) -> ErrorClass | None:
    return event.error.error_class if isinstance(event, AttemptFailed | ReleaseAttemptFailed) else None


def is_throttling_or_transient(status: AllocationStatus, event: AllocationEvent, now: float) -> bool:
    return _error_class_of(event) in (ErrorClass.THROTTLING, ErrorClass.TRANSIENT)


def is_capacity(status: AllocationStatus, event: AllocationEvent, now: float) -> bool:
    return _error_class_of(event) is ErrorClass.CAPACITY


def is_permanent(status: AllocationStatus, event: AllocationEvent, now: float) -> bool:
    return _error_class_of(event) is ErrorClass.PERMANENT


def retry_is_due(status: AllocationStatus, event: AllocationEvent, now: float) -> bool:
    return status.next_attempt_at is not None and now >= status.next_attempt_at


def is_newer_generation(status: AllocationStatus, event: AllocationEvent, now: float) -> bool:
    return isinstance(event, SpecChanged) and event.generation > status.observed_generation


def release_in_flight(status: AllocationStatus, event: AllocationEvent, now: float) -> bool:
    return status.next_attempt_at is None


# --- effects -------------------------------------------------------------------------------------------


def _start_allocation(
    status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext
) -> StatusUpdate:
    attempt = status.attempts + 1
    return {"reason": "AllocationStarted", "message": f"allocation attempt {attempt}", "attempts": attempt}


def _retry_allocation(
    status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext
) -> StatusUpdate:
    attempt = status.attempts + 1
    after = f" after {status.last_error.code}" if status.last_error else ""
    return {
        "reason": "AllocationRetried",
        "message": f"allocation attempt {attempt}{after}",
        "attempts": attempt,
    }


def _capacity_freed(status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext) -> StatusUpdate:
    attempt = status.attempts + 1
    return {
        "reason": "CapacityFreed",
        "message": f"capacity was freed: allocation attempt {attempt}",
        "attempts": attempt,
    }


def _resume_allocation(
    status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext
) -> StatusUpdate:
    attempt = status.attempts + 1
    return {
        "reason": "AllocationResumed",
        "message": f"controller restarted during an allocation: attempt {attempt} repeats it",
        "attempts": attempt,
    }


def _record_allocation(
    status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext
) -> StatusUpdate:
    succeeded = _event_as(event, Succeeded)
    resources = succeeded.resources
    return {
        "reason": succeeded.reason,
        "message": f"{resources.mode} {resources.ip} on {resources.eni_id}"
        + (f" ({succeeded.note})" if succeeded.note else ""),
        "resources": resources,
        "last_error": None,
    }


def _schedule_allocation_retry(
    status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext
) -> StatusUpdate:
    error = _event_as(event, AttemptFailed).error
    backoff = ctx.policy.backoff_for(error.error_class)
    attempt = max(1, status.attempts)
    delay = backoff.delay(attempt, ctx.rng)
    if backoff.ceiling(attempt) >= backoff.cap_s:
        # A steady wait: from here on every retry would say the same, so the message stops counting and
        # the status stops changing (the controller writes it no more, see `steady_wait`).
        woken = ", and at once when capacity returns" if error.error_class is ErrorClass.CAPACITY else ""
        message = f"{error.message} (retried at most {backoff.cap_s:g}s apart{woken})"
    else:
        message = f"{error.message} (attempt {status.attempts}; next attempt in {delay:.1f}s)"
    return {
        "reason": condition_reason(error.code),
        "message": message,
        "next_attempt_at": ctx.now + delay,
        "last_error": error,
    }


def _record_permanent_failure(
    status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext
) -> StatusUpdate:
    error = _event_as(event, AttemptFailed).error
    return {
        "reason": condition_reason(error.code),
        "message": f"{error.message} (not retried until the spec changes)",
        "last_error": error,
    }


def _reset_for_new_spec(
    status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext
) -> StatusUpdate:
    generation = _event_as(event, SpecChanged).generation
    return {
        "reason": "SpecChanged",
        "message": f"spec generation {generation} replaces {status.observed_generation}: starting over",
        "attempts": 0,
        "last_error": None,
        "observed_generation": generation,
    }


def _record_loss(status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext) -> StatusUpdate:
    lost = _event_as(event, ResourcesLost)
    held = status.resources
    what = f"{held.mode} {held.ip} on {held.eni_id}" if held else "the recorded resources"
    return {
        "reason": lost.reason,
        "message": f"{what} no longer held: {lost.message or 'the pool does not have them'}; starting over",
        "attempts": 0,
        "resources": None,
        "last_error": None,
    }


def _request_release(
    status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext
) -> StatusUpdate:
    attempt = status.release_attempts + 1
    return {
        "reason": "ReleaseRequested",
        "message": f"releasing (from {status.state}), release attempt {attempt}",
        "release_attempts": attempt,
    }


def _retry_release(status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext) -> StatusUpdate:
    attempt = status.release_attempts + 1
    return {"reason": "ReleaseRetried", "message": f"release attempt {attempt}", "release_attempts": attempt}


def _resume_release(status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext) -> StatusUpdate:
    attempt = status.release_attempts + 1
    return {
        "reason": "ReleaseResumed",
        "message": f"controller restarted during a release: release attempt {attempt} repeats it",
        "release_attempts": attempt,
    }


def _record_release(status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext) -> StatusUpdate:
    return {"reason": "Released", "message": "all resources released", "resources": None, "last_error": None}


def _schedule_release_retry(
    status: AllocationStatus, event: AllocationEvent, ctx: TransitionContext
) -> StatusUpdate:
    error = _event_as(event, ReleaseAttemptFailed).error
    delay = ctx.policy.release_delay(max(1, status.release_attempts), ctx.rng)
    return {
        "reason": condition_reason(error.code),
        "message": f"{error.message} (release attempt {status.release_attempts}; next in {delay:.1f}s)",
        "next_attempt_at": ctx.now + delay,
        "last_error": error,
    }


# --- the table -----------------------------------------------------------------------------------------

_S, _E = AllocationState, EventKind

TRANSITIONS: Final[tuple[Transition, ...]] = (
    Transition(_S.PENDING, _E.BEGIN, unconditional, _S.ALLOCATING, _start_allocation),
    Transition(_S.ALLOCATING, _E.SUCCEEDED, unconditional, _S.ALLOCATED, _record_allocation),
    Transition(
        _S.ALLOCATING, _E.ATTEMPT_FAILED, is_throttling_or_transient, _S.RETRYING, _schedule_allocation_retry
    ),
    Transition(
        _S.ALLOCATING, _E.ATTEMPT_FAILED, is_capacity, _S.WAITING_FOR_CAPACITY, _schedule_allocation_retry
    ),
    Transition(_S.ALLOCATING, _E.ATTEMPT_FAILED, is_permanent, _S.FAILED, _record_permanent_failure),
    Transition(_S.ALLOCATING, _E.RESUMED, unconditional, _S.ALLOCATING, _resume_allocation),
    Transition(_S.RETRYING, _E.RETRY_DUE, retry_is_due, _S.ALLOCATING, _retry_allocation),
    Transition(_S.WAITING_FOR_CAPACITY, _E.RETRY_DUE, retry_is_due, _S.ALLOCATING, _retry_allocation),
    Transition(_S.WAITING_FOR_CAPACITY, _E.CAPACITY_FREED, unconditional, _S.ALLOCATING, _capacity_freed),
    Transition(_S.PENDING, _E.SPEC_CHANGED, is_newer_generation, _S.PENDING, _reset_for_new_spec),
    Transition(_S.RETRYING, _E.SPEC_CHANGED, is_newer_generation, _S.PENDING, _reset_for_new_spec),
    Transition(
        _S.WAITING_FOR_CAPACITY, _E.SPEC_CHANGED, is_newer_generation, _S.PENDING, _reset_for_new_spec
    ),
    Transition(_S.FAILED, _E.SPEC_CHANGED, is_newer_generation, _S.PENDING, _reset_for_new_spec),
    Transition(_S.ALLOCATED, _E.RESOURCES_LOST, unconditional, _S.PENDING, _record_loss),
    Transition(_S.PENDING, _E.RELEASE_REQUESTED, unconditional, _S.RELEASING, _request_release),
    Transition(_S.ALLOCATING, _E.RELEASE_REQUESTED, unconditional, _S.RELEASING, _request_release),
    Transition(_S.ALLOCATED, _E.RELEASE_REQUESTED, unconditional, _S.RELEASING, _request_release),
    Transition(_S.RETRYING, _E.RELEASE_REQUESTED, unconditional, _S.RELEASING, _request_release),
    Transition(_S.WAITING_FOR_CAPACITY, _E.RELEASE_REQUESTED, unconditional, _S.RELEASING, _request_release),
    Transition(_S.FAILED, _E.RELEASE_REQUESTED, unconditional, _S.RELEASING, _request_release),
    Transition(_S.RELEASING, _E.RELEASE_SUCCEEDED, release_in_flight, _S.RELEASED, _record_release),
    Transition(
        _S.RELEASING, _E.RELEASE_ATTEMPT_FAILED, release_in_flight, _S.RELEASING, _schedule_release_retry
    ),
    Transition(_S.RELEASING, _E.RETRY_DUE, retry_is_due, _S.RELEASING, _retry_release),
    Transition(_S.RELEASING, _E.RESUMED, release_in_flight, _S.RELEASING, _resume_release),
)

_ROWS_BY_KEY: Final[dict[tuple[AllocationState, EventKind], tuple[Transition, ...]]] = {}
for _row in TRANSITIONS:
    _ROWS_BY_KEY[(_row.source, _row.event_kind)] = (
        *_ROWS_BY_KEY.get((_row.source, _row.event_kind), ()),
        _row,
    )
del _row


def accepted_event_kinds(state: AllocationState) -> frozenset[EventKind]:
    """The event kinds some row accepts in `state` (its guard may still refuse a given event)."""
    return frozenset(kind for (source, kind) in _ROWS_BY_KEY if source is state)


def transition(
    status: AllocationStatus,
    event: AllocationEvent,
    *,
    now: float,
    policy: RetryPolicy,
    rng: random.Random,
) -> AllocationStatus:
    """Apply `event` at `now`; returns the new status or raises `IllegalTransition`. Pure but for `rng`."""
    rows = _ROWS_BY_KEY.get((status.state, event.kind), ())
    if not rows:
        raise IllegalTransition(status.state, event.kind, f"{event.kind} is not accepted in {status.state}")
    row = next((candidate for candidate in rows if candidate.guard(status, event, now)), None)
    if row is None:
        guards = ", ".join(candidate.guard.__name__ for candidate in rows)
        raise IllegalTransition(
            status.state,
            event.kind,
            f"guard not satisfied ({guards}) at now={now}, next_attempt_at={status.next_attempt_at}, "
            f"observed_generation={status.observed_generation}",
        )
    update = row.effect(status, event, TransitionContext(now=now, policy=policy, rng=rng))
    fields: dict[str, object] = {name: getattr(status, name) for name in AllocationStatus.model_fields}
    fields["next_attempt_at"] = None
    fields.update(update)
    generation = update.get("observed_generation", status.observed_generation)
    fields["state"] = row.target
    fields["last_transition_time"] = now if row.target is not status.state else status.last_transition_time
    fields["conditions"] = conditions_for(
        status.conditions,
        row.target,
        reason=update["reason"],
        message=update["message"],
        generation=generation,
        now=now,
    )
    return AllocationStatus.model_validate(fields)
