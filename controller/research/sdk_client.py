"""A generic simulated SDK client: a client-side token bucket in front of every attempt, and retries
in the aws-sdk-go (v1) DefaultRetryer shape for throttling and transient errors.

Only the crd side's simulation uses it now (`client_limited_ec2.py`); RC's own client stack, with the
aws-sdk-go-v2 standard retryer RC uses, is `rc_ec2.py`."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from controller.adapters.rate_limiter import RateLimiter
from controller.clock import Clock
from controller.core.errors import Ec2Error, ErrorClass

T = TypeVar("T")


class SdkRetryingClient:
    """Wraps single EC2 requests: each attempt waits for the client bucket; throttled and transient
    failures are retried up to `max_attempts` in all, waiting 2^n × U[min, 2·min) before retry n."""

    def __init__(
        self,
        *,
        clock: Clock,
        limiter: RateLimiter,
        rng: random.Random,
        max_attempts: int,
        min_retry_delay_s: float,
        min_throttle_delay_s: float,
    ) -> None:
        self._clock = clock
        self._limiter = limiter
        self._rng = rng
        self._max_attempts = max_attempts
        self._min_retry = min_retry_delay_s
        self._min_throttle = min_throttle_delay_s
        self.sdk_retries = 0

    async def call(self, request: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            await self._limiter.acquire()
            try:
                return await request()
            except Ec2Error as error:
                attempt += 1
                if error.error_class not in (ErrorClass.THROTTLING, ErrorClass.TRANSIENT):
                    raise
                if attempt >= self._max_attempts:
                    raise
                minimum = (
                    self._min_throttle if error.error_class is ErrorClass.THROTTLING else self._min_retry
                )
                retry_count = attempt - 1
                self.sdk_retries += 1
                await self._clock.sleep((2**retry_count) * self._rng.uniform(minimum, 2 * minimum))
