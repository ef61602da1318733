"""How long to wait before trying again: capped exponential backoff with full jitter, per error class.

The delays come from tenacity's own wait machinery (`FullJitterWait` is a `tenacity.wait.wait_exponential`
whose random draw is taken from an injected `random.Random`), so the allocation state machine and any
executor that retries with `tenacity.AsyncRetrying(wait=policy.tenacity_wait(...))` share one policy, and
a seeded run (the research simulation) is reproducible to the byte.

Attempt `n` (1-based: the wait after the n-th failure) draws uniformly from [0, min(cap, base * 2**(n-1))].

Nothing here ever gives up:
- CAPACITY has no maximum number of attempts: a pod waits for addresses (visibly) for as long as it exists.
- THROTTLING and TRANSIENT have no terminal give-up either; the backoff is capped, so a throttled account
  keeps being retried every `cap_s` seconds at most, spread by the jitter.
- PERMANENT is never retried: `delay`/`tenacity_wait` raise `NoRetryForPermanentError` (rather than return
  None) so a caller cannot silently schedule a retry of a configuration error. Such an allocation stays
  Failed until its spec changes.
- Releases are retried for every error class with the `release` backoff: giving up would leak an ENI.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import tenacity
from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.core.errors import ErrorClass


class NoRetryForPermanentError(ValueError):
    """Raised when asked for a retry delay for a PERMANENT error: those are never retried."""

    def __init__(self) -> None:
        super().__init__("permanent errors are not retried; the allocation waits for a spec change")


class FullJitterWait(tenacity.wait.wait_exponential):
    """tenacity's capped exponential wait, with a full-jitter draw from an injected random source.

    Equivalent to `tenacity.wait_random_exponential(multiplier=base_s, max=cap_s)` except that the draw
    comes from `rng` instead of the global `random` module.
    """

    def __init__(self, *, base_s: float, cap_s: float, rng: random.Random) -> None:
        super().__init__(multiplier=base_s, max=cap_s, exp_base=2, min=0)
        self.rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        ceiling: float = super().__call__(retry_state)
        return self.rng.uniform(0.0, ceiling)


# A RetryCallState needs a retry manager to belong to; the wait strategies above never look at it.
_DETACHED_RETRYING = tenacity.Retrying()


def _retry_state_for(attempt: int) -> tenacity.RetryCallState:
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    state = tenacity.RetryCallState(retry_object=_DETACHED_RETRYING, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return state


class Backoff(BaseModel):
    """One capped exponential backoff: the wait after failure n is drawn from [0, min(cap, base*2^(n-1))]."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_s: float = Field(gt=0, allow_inf_nan=False)
    cap_s: float = Field(gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _cap_not_below_base(self) -> Backoff:
        if self.cap_s < self.base_s:
            raise ValueError(f"cap_s ({self.cap_s}) must not be below base_s ({self.base_s})")
        return self

    def ceiling(self, attempt: int) -> float:
        """The largest wait the jitter can draw after failure number `attempt` (1-based)."""
        unjittered = tenacity.wait.wait_exponential(multiplier=self.base_s, max=self.cap_s, exp_base=2)
        ceiling: float = unjittered(_retry_state_for(attempt))
        return ceiling

    def tenacity_wait(self, rng: random.Random) -> FullJitterWait:
        return FullJitterWait(base_s=self.base_s, cap_s=self.cap_s, rng=rng)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The wait after failure number `attempt` (1-based); consumes one draw from `rng`."""
        return self.tenacity_wait(rng)(_retry_state_for(attempt))


class RetryPolicy(BaseModel):
    """Per error class backoff settings. Defaults: throttling/transient 0.5 s..30 s; capacity 5 s..120 s
    (the VPC CNI's cool-down after exhaustion); release 1 s..60 s (Karpenter's range)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    throttling: Backoff = Backoff(base_s=0.5, cap_s=30.0)
    transient: Backoff = Backoff(base_s=0.5, cap_s=30.0)
    capacity: Backoff = Backoff(base_s=5.0, cap_s=120.0)
    release: Backoff = Backoff(base_s=1.0, cap_s=60.0)
    # A pool step (an ENI create, an association, a delete) is tried this many times within one pass,
    # with the throttling/transient backoff above, before the pass reports it failed; the next pass
    # tries again. The EC2 adapters make one attempt per call, so this is the only retry layer.
    step_attempts: int = Field(default=5, ge=1)

    def backoff_for(self, error_class: ErrorClass) -> Backoff:
        """The allocation backoff for an error class; raises `NoRetryForPermanentError` for PERMANENT."""
        if error_class is ErrorClass.THROTTLING:
            return self.throttling
        if error_class is ErrorClass.TRANSIENT:
            return self.transient
        if error_class is ErrorClass.CAPACITY:
            return self.capacity
        raise NoRetryForPermanentError()

    def delay(self, error_class: ErrorClass, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after allocation failure number `attempt` (1-based) of this class."""
        return self.backoff_for(error_class).delay(attempt, rng)

    def tenacity_wait(self, error_class: ErrorClass, rng: random.Random) -> FullJitterWait:
        """A wait strategy for `tenacity.AsyncRetrying(wait=...)` drawing from the same distribution."""
        return self.backoff_for(error_class).tenacity_wait(rng)

    def step_retrying(
        self, retried: tuple[ErrorClass, ...], rng: random.Random, sleep: Callable[[float], Awaitable[None]]
    ) -> tenacity.AsyncRetrying:
        """tenacity's retry loop for one pool step: errors of the `retried` classes are tried again
        after this policy's backoff for their class, up to `step_attempts` attempts; any other error,
        or the last one, is raised as it came."""

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            error_class = getattr(error, "error_class", ErrorClass.TRANSIENT)
            return self.backoff_for(error_class).delay(state.attempt_number, rng)

        return tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(lambda error: getattr(error, "error_class", None) in retried),
            wait=wait,
            stop=tenacity.stop_after_attempt(self.step_attempts),
            sleep=sleep,
            reraise=True,
        )

    def release_delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after release failure number `attempt` (1-based), whatever the error class."""
        return self.release.delay(attempt, rng)

    def release_tenacity_wait(self, rng: random.Random) -> FullJitterWait:
        return self.release.tenacity_wait(rng)
