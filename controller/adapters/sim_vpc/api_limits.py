"""EC2's server-side API limits and per-call latency, for the simulated VPC.

EC2 evaluates each API action against its own token bucket, per account and region (field notes,
section 4; the table is `controller.core.ec2_limits`). An action not in the table gets the default
bucket of its category: mutating 50/5, non-mutating 100/20. DescribeNetworkInterfaces called with
neither filters nor ids counts against a separate, smaller "unfiltered" bucket. Over the bucket the
call fails with RequestLimitExceeded (HTTP 503) and takes no token.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.core.ec2_limits import (
    DEFAULT_ACTION_BUCKETS,
    NON_MUTATING_PREFIXES,
    UNFILTERED_SUFFIX,
    is_mutating,
)
from controller.core.token_bucket import BucketSpec, TokenBucket

__all__ = ["DEFAULT_ACTION_BUCKETS", "NON_MUTATING_PREFIXES", "UNFILTERED_SUFFIX", "is_mutating"]


def _spec(capacity: float, refill_per_s: float) -> BucketSpec:
    return BucketSpec(capacity=capacity, refill_per_s=refill_per_s)


class ApiLimitsConfig(BaseModel):
    """Which bucket each action spends from. `enabled=False` turns throttling off entirely."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    action_buckets: Mapping[str, BucketSpec] = Field(default_factory=lambda: dict(DEFAULT_ACTION_BUCKETS))
    default_mutating: BucketSpec = Field(default_factory=lambda: _spec(50, 5))
    default_non_mutating: BucketSpec = Field(default_factory=lambda: _spec(100, 20))
    default_unfiltered: BucketSpec = Field(default_factory=lambda: _spec(50, 10))

    def spec_for(self, bucket_key: str) -> BucketSpec:
        spec = self.action_buckets.get(bucket_key)
        if spec is not None:
            return spec
        if bucket_key.endswith(UNFILTERED_SUFFIX):
            return self.default_unfiltered
        return self.default_mutating if is_mutating(bucket_key) else self.default_non_mutating


class LatencyRange(BaseModel):
    """A call takes a uniformly drawn time in [low_s, high_s] (both may be 0)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low_s: float = Field(ge=0)
    high_s: float = Field(ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> LatencyRange:
        if self.high_s < self.low_s:
            raise ValueError("high_s must be >= low_s")
        return self


NO_LATENCY: Final = LatencyRange(low_s=0.0, high_s=0.0)


class LatencyConfig(BaseModel):
    """Per-call latency: per-action overrides, else by category."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mutating: LatencyRange = LatencyRange(low_s=0.05, high_s=0.15)
    non_mutating: LatencyRange = LatencyRange(low_s=0.02, high_s=0.06)
    per_action: Mapping[str, LatencyRange] = Field(default_factory=dict)

    @classmethod
    def none(cls) -> LatencyConfig:
        return cls(mutating=NO_LATENCY, non_mutating=NO_LATENCY)

    def range_for(self, action: str) -> LatencyRange:
        override = self.per_action.get(action)
        if override is not None:
            return override
        return self.mutating if is_mutating(action) else self.non_mutating


class ApiGate:
    """The runtime side: buckets created on first use, call and throttle counts, latency draws."""

    def __init__(self, limits: ApiLimitsConfig, latency: LatencyConfig, *, seed: int | str = 0) -> None:
        self.limits = limits
        self.latency = latency
        self._buckets: dict[str, TokenBucket] = {}
        self._latency_ranges: dict[str, LatencyRange] = {}
        self._rng = random.Random(f"latency:{seed}")
        self.calls: Counter[str] = Counter()
        self.throttled: Counter[str] = Counter()

    def admit(self, action: str, now: float, *, unfiltered: bool = False) -> bool:
        """Count the call and spend a token; False when the action's bucket is empty (throttled)."""
        self.calls[action] += 1
        if not self.limits.enabled:
            return True
        key = action + UNFILTERED_SUFFIX if unfiltered else action
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.limits.spec_for(key), now)
        if bucket.take(now):
            return True
        self.throttled[action] += 1
        return False

    def tokens(self, action: str, now: float, *, unfiltered: bool = False) -> float:
        """Tokens left in the action's bucket (a full bucket if it was never used)."""
        key = action + UNFILTERED_SUFFIX if unfiltered else action
        bucket = self._buckets.get(key)
        return bucket.tokens(now) if bucket is not None else self.limits.spec_for(key).capacity

    def draw_latency(self, action: str) -> float:
        latency = self._latency_ranges.get(action)
        if latency is None:
            latency = self._latency_ranges[action] = self.latency.range_for(action)
        if latency.high_s <= 0.0:
            return 0.0
        return self._rng.uniform(latency.low_s, latency.high_s)
