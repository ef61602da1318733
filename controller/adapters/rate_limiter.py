"""Client-side EC2 rate limit: a token bucket (QPS = refill, burst = capacity) in front of every call.

Callers reserve a token synchronously and then sleep for the delay that reservation returned, so
concurrent callers queue in arrival order: each reservation pushes the next caller further out.
"""

from __future__ import annotations

from controller.clock import Clock
from controller.core.token_bucket import BucketSpec, TokenBucket


class RateLimiter:
    def __init__(self, spec: BucketSpec, clock: Clock) -> None:
        self.spec = spec
        self._clock = clock
        self._bucket = TokenBucket(spec, clock.now())

    @classmethod
    def per_second(cls, qps: float, burst: int, clock: Clock) -> RateLimiter:
        return cls(BucketSpec(capacity=burst, refill_per_s=qps), clock)

    async def acquire(self) -> None:
        """Wait until this caller may send one request.

        A caller cancelled while waiting keeps its reservation spent: the limit errs on the side of
        sending less, never more.
        """
        delay = self._bucket.reserve(self._clock.now())
        if delay > 0:
            await self._clock.sleep(delay)

    def available(self) -> float:
        """Tokens in the bucket now (negative while callers are queued)."""
        return self._bucket.tokens(self._clock.now())
