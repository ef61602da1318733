"""The client-side EC2 rate limiter, on a manual clock."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.adapters.ec2_observer import CallCounter
from controller.adapters.rate_limiter import RateLimiter
from controller.clock import ManualClock
from controller.core.token_bucket import BucketSpec


class RecordingClock(ManualClock):
    """A manual clock whose sleeps are recorded and yield to the loop, without moving time."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


async def test_burst_passes_at_once_then_calls_are_spaced_by_one_over_qps() -> None:
    clock = ManualClock()
    limiter = RateLimiter(BucketSpec(capacity=18, refill_per_s=12.0), clock)

    passed_at = []
    for _ in range(18 + 5):
        await limiter.acquire()
        passed_at.append(clock.now())

    assert passed_at[:18] == [0.0] * 18
    gaps = [later - earlier for earlier, later in itertools.pairwise(passed_at[17:])]
    assert gaps == pytest.approx([1 / 12] * 5)


async def test_idle_time_refills_the_bucket_up_to_the_burst_only() -> None:
    clock = ManualClock()
    limiter = RateLimiter.per_second(qps=2.0, burst=3, clock=clock)
    for _ in range(3):
        await limiter.acquire()
    assert limiter.available() == pytest.approx(0.0)

    clock.advance(60.0)  # long idle: the bucket is full again, not 120 tokens deep
    assert limiter.available() == pytest.approx(3.0)
    for _ in range(3):
        await limiter.acquire()
    assert clock.now() == pytest.approx(60.0)
    await limiter.acquire()
    assert clock.now() == pytest.approx(60.5)


async def test_concurrent_callers_queue_in_arrival_order() -> None:
    clock = RecordingClock()
    limiter = RateLimiter(BucketSpec(capacity=2, refill_per_s=4.0), clock)
    order: list[int] = []

    async def caller(n: int) -> None:
        await limiter.acquire()
        order.append(n)

    await asyncio.gather(*(caller(n) for n in range(6)))

    # Two pass from the burst; each later caller waits one 1/QPS step longer than the one before.
    assert clock.sleeps == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert order == list(range(6))
    assert limiter.available() == pytest.approx(-4.0)  # four tokens owed to queued callers


@given(
    burst=st.integers(min_value=1, max_value=30),
    qps=st.floats(min_value=0.5, max_value=50.0),
    calls=st.integers(min_value=1, max_value=80),
)
def test_never_more_than_burst_plus_qps_times_elapsed(burst: int, qps: float, calls: int) -> None:
    clock = ManualClock()
    limiter = RateLimiter.per_second(qps=qps, burst=burst, clock=clock)

    async def run() -> None:
        for _ in range(calls):
            await limiter.acquire()

    asyncio.run(run())

    assert calls <= burst + qps * clock.now() + 1e-6
    expected_elapsed = max(0, calls - burst) / qps
    assert clock.now() == pytest.approx(expected_elapsed)


def test_call_counter_counts_by_action_and_outcome() -> None:
    counter = CallCounter()
    counter("CreateNetworkInterface", "ok")
    counter("CreateNetworkInterface", "throttled")
    counter("CreateNetworkInterface", "throttled")
    counter("AttachNetworkInterface", "error")

    assert counter.calls("CreateNetworkInterface") == 3
    assert counter.throttled("CreateNetworkInterface") == 2
    assert counter.outcome("CreateNetworkInterface", "ok") == 1
    assert counter.errors("AttachNetworkInterface") == 1
    assert counter.calls("DeleteNetworkInterface") == 0
    assert counter.total() == 4
    with pytest.raises(ValueError, match="unknown call outcome"):
        counter("CreateTags", "maybe")  # type: ignore[arg-type]
