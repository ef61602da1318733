"""Status conditions of a PodNetworkAllocation, in the Kubernetes metav1.Condition shape.

Four conditions carry what the allocation has learnt, and `Ready` sums them up (Karpenter style):

- `ResourcesAssigned`: True only while Allocated.
- `CapacityAvailable`: False while WaitingForCapacity, with the EC2 reason (e.g. InsufficientCidrBlocks).
- `CloudAPIAvailable`: False while Retrying (throttling or a transient fault), True once EC2 answered.
- `ConfigurationValid`: False when Failed (a permanent error), True once an allocation succeeded.
- `Ready`: True only while Allocated; otherwise False with the reason and message of the condition that
  blocks it (the one the current state is about).

States that learn nothing about a condition (e.g. Allocating after a capacity wait) keep it as it was, so a
False condition's lastTransitionTime is the moment the problem started, and timeouts can be measured from
it. Pending (a new spec generation) resets what was learnt to Unknown. As in Kubernetes, a condition's
lastTransitionTime changes only when its status changes.

`now` is seconds since the Unix epoch (a simulation may start its virtual clock at 0: the timestamps are
then in 1970 but stay consistent). lastTransitionTime is written with whole seconds, as metav1.Time is.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Final, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

if TYPE_CHECKING:
    from controller.core.allocation_state import AllocationState

ConditionStatus = Literal["True", "False", "Unknown"]

# The Kubernetes validation pattern for metav1.Condition.reason (also in our CRD schema).
REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
MAX_REASON_LENGTH: Final = 1024
MAX_MESSAGE_LENGTH: Final = 32768
FALLBACK_REASON: Final = "Unknown"


class ConditionType(StrEnum):
    RESOURCES_ASSIGNED = "ResourcesAssigned"
    CAPACITY_AVAILABLE = "CapacityAvailable"
    CLOUD_API_AVAILABLE = "CloudAPIAvailable"
    CONFIGURATION_VALID = "ConfigurationValid"
    READY = "Ready"


class Condition(BaseModel):
    """One metav1.Condition. `model_dump(by_alias=True)` gives the Kubernetes camelCase keys."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, validate_by_name=True, validate_by_alias=True
    )

    type: str = Field(min_length=1, max_length=316)
    status: ConditionStatus
    observed_generation: int = Field(ge=0)
    last_transition_time: str = Field(description="RFC 3339, UTC, whole seconds")
    reason: str = Field(pattern=REASON_PATTERN, max_length=MAX_REASON_LENGTH)
    message: str = Field(max_length=MAX_MESSAGE_LENGTH)


def rfc3339(seconds_since_epoch: float) -> str:
    """The metav1.Time rendering of a time: UTC, whole seconds, trailing Z."""
    return datetime.fromtimestamp(seconds_since_epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition_reason(text: str) -> str:
    """Turn a reason or an EC2 error code into a valid condition reason.

    EC2 codes may hold dots ("InvalidSubnetID.NotFound"), which Kubernetes rejects; they are dropped.
    """
    kept = re.sub(r"[^A-Za-z0-9_,:]", "", text)
    kept = re.sub(r"^[^A-Za-z]+", "", kept)
    kept = re.sub(r"[,:]+$", "", kept)[:MAX_REASON_LENGTH]
    return kept or FALLBACK_REASON


class _Evidence(Enum):
    """What a state says about one condition."""

    TRUE = "True"  # the condition holds
    FALSE = "False"  # the condition does not hold; the transition's reason says why
    UNKNOWN = "Unknown"  # reset: nothing is known yet for this generation
    KEEP = "Keep"  # this state tells nothing new: keep the previous condition (Unknown if none)


class _StateEvidence(NamedTuple):
    resources_assigned: _Evidence
    capacity_available: _Evidence
    cloud_api_available: _Evidence
    configuration_valid: _Evidence
    blocker: ConditionType | None  # the condition that keeps Ready False; None only when Ready


_T, _F, _U, _K = _Evidence.TRUE, _Evidence.FALSE, _Evidence.UNKNOWN, _Evidence.KEEP
# Keyed by AllocationState value (allocation_state.py imports this module, so the enum is not imported here).
_EVIDENCE_BY_STATE: Final[dict[str, _StateEvidence]] = {
    "Pending": _StateEvidence(_F, _U, _U, _U, ConditionType.RESOURCES_ASSIGNED),
    "Allocating": _StateEvidence(_F, _K, _K, _K, ConditionType.RESOURCES_ASSIGNED),
    "Allocated": _StateEvidence(_T, _T, _T, _T, None),
    "Retrying": _StateEvidence(_F, _K, _F, _K, ConditionType.CLOUD_API_AVAILABLE),
    "WaitingForCapacity": _StateEvidence(_F, _F, _T, _K, ConditionType.CAPACITY_AVAILABLE),
    "Failed": _StateEvidence(_F, _K, _T, _F, ConditionType.CONFIGURATION_VALID),
    "Releasing": _StateEvidence(_F, _K, _K, _K, ConditionType.RESOURCES_ASSIGNED),
    "Released": _StateEvidence(_F, _K, _K, _K, ConditionType.RESOURCES_ASSIGNED),
}

_STATUS_FOR_EVIDENCE: Final[dict[_Evidence, ConditionStatus]] = {
    _Evidence.TRUE: "True",
    _Evidence.FALSE: "False",
    _Evidence.UNKNOWN: "Unknown",
    _Evidence.KEEP: "Unknown",  # only used when there is nothing to keep
}

# Reason of a True CloudAPIAvailable learnt from an EC2 answer that was an error (capacity or permanent).
CLOUD_API_RESPONDED_REASON: Final = "CloudAPIResponded"


def _condition(
    previous: Condition | None,
    condition_type: ConditionType,
    *,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    now: float,
) -> Condition:
    unchanged = previous is not None and previous.status == status
    return Condition(
        type=condition_type.value,
        status=status,
        observed_generation=generation,
        last_transition_time=previous.last_transition_time if previous and unchanged else rfc3339(now),
        reason=condition_reason(reason),
        message=message[:MAX_MESSAGE_LENGTH],
    )


def conditions_for(
    previous_conditions: tuple[Condition, ...],
    state: AllocationState,
    *,
    reason: str,
    message: str,
    generation: int,
    now: float,
) -> tuple[Condition, ...]:
    """The conditions after entering `state` for `reason`/`message` at `now` (seconds since the epoch)."""
    evidence = _EVIDENCE_BY_STATE[state]
    previous = {condition.type: condition for condition in previous_conditions}
    learnt: dict[ConditionType, Condition] = {}
    for condition_type, what in (
        (ConditionType.RESOURCES_ASSIGNED, evidence.resources_assigned),
        (ConditionType.CAPACITY_AVAILABLE, evidence.capacity_available),
        (ConditionType.CLOUD_API_AVAILABLE, evidence.cloud_api_available),
        (ConditionType.CONFIGURATION_VALID, evidence.configuration_valid),
    ):
        before = previous.get(condition_type.value)
        if what is _Evidence.KEEP and before is not None:
            learnt[condition_type] = before
            continue
        status = _STATUS_FOR_EVIDENCE[what]
        own_reason = reason
        if (
            condition_type is ConditionType.CLOUD_API_AVAILABLE
            and what is _Evidence.TRUE
            and evidence.blocker
        ):
            own_reason, message_for = CLOUD_API_RESPONDED_REASON, "EC2 answered the last call"
        else:
            message_for = message
        learnt[condition_type] = _condition(
            before,
            condition_type,
            status=status,
            reason=own_reason,
            message=message_for,
            generation=generation,
            now=now,
        )

    ready_before = previous.get(ConditionType.READY.value)
    if evidence.blocker is None:
        ready = _condition(
            ready_before,
            ConditionType.READY,
            status="True",
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        )
    else:
        blocking = learnt[evidence.blocker]
        ready = _condition(
            ready_before,
            ConditionType.READY,
            status="False",
            reason=blocking.reason,
            message=blocking.message,
            generation=generation,
            now=now,
        )
    return (*learnt.values(), ready)
