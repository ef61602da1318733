"""Drives one allocation through the state machine: one step per call, no sleeping.

The caller persists the returned status (in the PNA) and calls again after `retry_in` seconds,
or when the spec changes or the pod goes away. The kopf handlers and the research simulation both
use these functions, so the controller and the comparison run the same code.
"""

from __future__ import annotations

import random
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from controller.clock import Clock
from controller.core.allocation_model import AllocationMode, AllocationRequest, AssignedResources
from controller.core.allocation_state import (
    AllocationState,
    AllocationStatus,
    AttemptFailed,
    Begin,
    CapacityFreed,
    ErrorInfo,
    ReleaseAttemptFailed,
    ReleaseRequested,
    ReleaseSucceeded,
    Resumed,
    RetryDue,
    Succeeded,
    transition,
)
from controller.core.errors import Ec2Error
from controller.core.retry_policy import RetryPolicy
from controller.engine.node_network import NodeNetwork


class AllocatingPool(Protocol):
    """What an allocation step needs of a node's pool: a clock and an idempotent `allocate`."""

    @property
    def clock(self) -> Clock: ...

    async def allocate(self, request: AllocationRequest) -> AssignedResources: ...


class UnavailablePool:
    """A node whose pool cannot serve yet (no pool, unknown type, EC2 errors): every attempt fails
    with why, as a capacity wait, so the pod's PNA shows the reason and is retried with backoff."""

    def __init__(self, clock: Clock, error: Ec2Error) -> None:
        self.clock = clock
        self.error = error

    async def allocate(self, request: AllocationRequest) -> AssignedResources:
        raise self.error


class StepResult(BaseModel):
    """The status after a step, and when the next step is due (None: nothing to do until an event)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    status: AllocationStatus
    retry_in: float | None
    attempted: bool


def _due_in(status: AllocationStatus, now: float) -> float | None:
    if status.next_attempt_at is None:
        return None
    return max(0.0, status.next_attempt_at - now)


async def allocation_step(
    status: AllocationStatus,
    request: AllocationRequest,
    network: AllocatingPool,
    *,
    policy: RetryPolicy,
    rng: random.Random,
    capacity_freed: bool = False,
) -> StepResult:
    """Make at most one allocation attempt, if one is due (or capacity came back while waiting for it)."""
    now = network.clock.now()
    state = status.state
    if state is AllocationState.PENDING:
        status = transition(status, Begin(), now=now, policy=policy, rng=rng)
    elif state is AllocationState.WAITING_FOR_CAPACITY and capacity_freed:
        status = transition(status, CapacityFreed(), now=now, policy=policy, rng=rng)
    elif state in (AllocationState.RETRYING, AllocationState.WAITING_FOR_CAPACITY):
        wait = _due_in(status, now)
        if wait:
            return StepResult(status=status, retry_in=wait, attempted=False)
        status = transition(status, RetryDue(), now=now, policy=policy, rng=rng)
    elif state is AllocationState.ALLOCATING:
        # A step was in flight when the controller stopped: repeat it (allocate is idempotent per key).
        status = transition(status, Resumed(), now=now, policy=policy, rng=rng)
    else:
        return StepResult(status=status, retry_in=None, attempted=False)
    try:
        resources = await network.allocate(request)
    except Ec2Error as error:
        now = network.clock.now()
        failed = transition(
            status, AttemptFailed(error=ErrorInfo.from_ec2_error(error)), now=now, policy=policy, rng=rng
        )
        return StepResult(status=failed, retry_in=_due_in(failed, now), attempted=True)
    succeeded = Succeeded(resources=resources)
    if request.mode is AllocationMode.PREFIX_IP and resources.mode is AllocationMode.SECONDARY_IP:
        succeeded = Succeeded(
            resources=resources,
            reason="PrefixFallback",
            note="no free aligned /28 in the subnet: a secondary IP, until prefix blocks are free again",
        )
    if request.mode is AllocationMode.SHARED_ENI and resources.mode is AllocationMode.BRANCH_ENI:
        succeeded = Succeeded(
            resources=resources,
            reason="SharedEniFallback",
            note="no shared ENI address for this group set on the node (no ENI attachment left, or a "
            "warm branch was ready first): a branch ENI of its own",
        )
    done = transition(status, succeeded, now=network.clock.now(), policy=policy, rng=rng)
    return StepResult(status=done, retry_in=None, attempted=True)


async def release_step(
    status: AllocationStatus,
    key: str,
    network: NodeNetwork | None,
    *,
    policy: RetryPolicy,
    rng: random.Random,
    now: float,
) -> StepResult:
    """Give back what the allocation holds. `network` None means the node's pool is gone (drained):
    there is nothing left to return. The caller must not pass None for a pool that is merely not loaded."""
    if status.state is AllocationState.RELEASED:
        return StepResult(status=status, retry_in=None, attempted=False)
    if status.state is not AllocationState.RELEASING:
        status = transition(status, ReleaseRequested(), now=now, policy=policy, rng=rng)
    elif status.next_attempt_at is not None:
        wait = _due_in(status, now)
        if wait:
            return StepResult(status=status, retry_in=wait, attempted=False)
        status = transition(status, RetryDue(), now=now, policy=policy, rng=rng)
    else:
        status = transition(status, Resumed(), now=now, policy=policy, rng=rng)
    try:
        if network is not None:
            await network.release(key)
    except Ec2Error as error:
        failed = transition(
            status,
            ReleaseAttemptFailed(error=ErrorInfo.from_ec2_error(error)),
            now=now,
            policy=policy,
            rng=rng,
        )
        return StepResult(status=failed, retry_in=_due_in(failed, now), attempted=True)
    done = transition(status, ReleaseSucceeded(), now=now, policy=policy, rng=rng)
    return StepResult(status=done, retry_in=None, attempted=True)
