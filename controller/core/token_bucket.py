"""A token bucket as pure arithmetic over a caller-supplied time: EC2's server-side buckets and
netalloc's client-side rate limit are the same model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BucketSpec(BaseModel):
    """Capacity (burst) and refill rate (tokens per second)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capacity: float = Field(gt=0)
    refill_per_s: float = Field(gt=0)


class TokenBucket:
    """Starts full. `take` spends a token if one is there; `wait_for` says how long until one is."""

    def __init__(self, spec: BucketSpec, now: float) -> None:
        self.spec = spec
        self._tokens = spec.capacity
        self._updated = now

    def _refill(self, now: float) -> None:
        if now > self._updated:
            self._tokens = min(
                self.spec.capacity, self._tokens + (now - self._updated) * self.spec.refill_per_s
            )
            self._updated = now

    def tokens(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def take(self, now: float, amount: float = 1.0) -> bool:
        self._refill(now)
        if self._tokens + 1e-9 >= amount:
            self._tokens -= amount
            return True
        return False

    def wait_for(self, now: float, amount: float = 1.0) -> float:
        """Seconds until `amount` tokens are available (0 when they already are)."""
        self._refill(now)
        missing = amount - self._tokens
        return 0.0 if missing <= 1e-9 else missing / self.spec.refill_per_s

    def reserve(self, now: float, amount: float = 1.0) -> float:
        """Spend `amount` now, going into debt if needed; returns the delay the caller must wait.

        This is how a client-side limiter queues callers fairly: each reservation pushes the next
        caller's delay further out.
        """
        self._refill(now)
        self._tokens -= amount
        return 0.0 if self._tokens >= -1e-9 else -self._tokens / self.spec.refill_per_s
