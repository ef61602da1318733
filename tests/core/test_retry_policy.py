"""The retry policy: capped exponential backoff with full jitter, seeded, shared with tenacity."""

from __future__ import annotations

import random

import pytest
import tenacity
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from controller.core.errors import Ec2Error, ErrorClass
from controller.core.retry_policy import Backoff, FullJitterWait, NoRetryForPermanentError, RetryPolicy

POLICY = RetryPolicy()
RETRIED_CLASSES = (ErrorClass.THROTTLING, ErrorClass.TRANSIENT, ErrorClass.CAPACITY)
# (base, cap) per class as the design asks for, written out independently of the defaults in the module.
EXPECTED_SETTINGS = {
    ErrorClass.THROTTLING: (0.5, 30.0),
    ErrorClass.TRANSIENT: (0.5, 30.0),
    ErrorClass.CAPACITY: (5.0, 120.0),
}


def upper_bound(base: float, cap: float, attempt: int) -> float:
    return min(cap, base * 2.0 ** (attempt - 1))


def test_default_settings_per_class() -> None:
    for error_class, (base, cap) in EXPECTED_SETTINGS.items():
        backoff = POLICY.backoff_for(error_class)
        assert (backoff.base_s, backoff.cap_s) == (base, cap)
    assert (POLICY.release.base_s, POLICY.release.cap_s) == (1.0, 60.0)


@settings(max_examples=300, deadline=None)
@given(
    error_class=st.sampled_from(RETRIED_CLASSES),
    attempt=st.integers(min_value=1, max_value=80),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_delay_lies_within_the_capped_exponential_window(
    error_class: ErrorClass, attempt: int, seed: int
) -> None:
    base, cap = EXPECTED_SETTINGS[error_class]
    delay = POLICY.delay(error_class, attempt, random.Random(seed))
    assert 0.0 <= delay <= upper_bound(base, cap, attempt)


@settings(max_examples=100, deadline=None)
@given(attempt=st.integers(min_value=1, max_value=80), seed=st.integers(min_value=0, max_value=2**32))
def test_release_delay_uses_the_release_window(attempt: int, seed: int) -> None:
    assert 0.0 <= POLICY.release_delay(attempt, random.Random(seed)) <= upper_bound(1.0, 60.0, attempt)


def test_ceiling_doubles_then_stays_at_the_cap() -> None:
    backoff = POLICY.capacity
    assert [backoff.ceiling(n) for n in range(1, 8)] == [5.0, 10.0, 20.0, 40.0, 80.0, 120.0, 120.0]
    assert backoff.ceiling(100_000) == 120.0  # no overflow for absurd attempt counts


@pytest.mark.parametrize("error_class", RETRIED_CLASSES)
def test_delays_reach_the_cap_and_use_the_whole_window(error_class: ErrorClass) -> None:
    base, cap = EXPECTED_SETTINGS[error_class]
    rng = random.Random(42)
    late = [POLICY.delay(error_class, 30, rng) for _ in range(400)]
    assert max(late) <= cap
    assert max(late) > 0.95 * cap  # the cap is reached, not just approached by the exponential
    assert min(late) < 0.05 * cap  # full jitter: the draw starts at zero, not at half the window
    early = [POLICY.delay(error_class, 1, rng) for _ in range(400)]
    assert max(early) <= base < max(late)


def test_same_seed_same_sequence_and_other_seed_another() -> None:
    def sequence(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [POLICY.delay(error_class, n, rng) for n in range(1, 15) for error_class in RETRIED_CLASSES]

    assert sequence(7) == sequence(7)
    assert sequence(7) != sequence(8)


def test_the_jitter_comes_from_the_injected_rng_only() -> None:
    random.seed(1)
    first = POLICY.delay(ErrorClass.THROTTLING, 5, random.Random(3))
    random.seed(2)  # the global random module must not matter
    assert POLICY.delay(ErrorClass.THROTTLING, 5, random.Random(3)) == first


def test_permanent_errors_have_no_retry() -> None:
    with pytest.raises(NoRetryForPermanentError):
        POLICY.delay(ErrorClass.PERMANENT, 1, random.Random(0))
    with pytest.raises(NoRetryForPermanentError):
        POLICY.tenacity_wait(ErrorClass.PERMANENT, random.Random(0))


def test_invalid_settings_and_attempts_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Backoff(base_s=10.0, cap_s=1.0)
    with pytest.raises(ValidationError):
        Backoff(base_s=0.0, cap_s=1.0)
    with pytest.raises(ValueError, match="start at 1"):
        POLICY.delay(ErrorClass.THROTTLING, 0, random.Random(0))


def test_custom_policy_is_honoured() -> None:
    policy = RetryPolicy(throttling=Backoff(base_s=2.0, cap_s=4.0))
    rng = random.Random(5)
    assert all(
        0.0 <= policy.delay(ErrorClass.THROTTLING, n, rng) <= min(4.0, 2.0 * 2 ** (n - 1)) for n in (1, 9)
    )
    assert policy.transient == POLICY.transient


@pytest.mark.parametrize("error_class", RETRIED_CLASSES)
async def test_async_retrying_waits_exactly_as_the_policy_says(error_class: ErrorClass) -> None:
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 8:
            raise RuntimeError("RequestLimitExceeded")
        return "done"

    wait = POLICY.tenacity_wait(error_class, random.Random(11))
    assert isinstance(wait, FullJitterWait)
    retrying = tenacity.AsyncRetrying(
        wait=wait,
        sleep=record_sleep,
        stop=tenacity.stop_after_attempt(20),
        retry=tenacity.retry_if_exception_type(RuntimeError),
        reraise=True,
    )
    assert await retrying(flaky) == "done"

    rng = random.Random(11)
    expected = [POLICY.delay(error_class, n, rng) for n in range(1, 8)]
    assert slept == expected
    base, cap = EXPECTED_SETTINGS[error_class]
    assert all(0.0 <= s <= upper_bound(base, cap, n) for n, s in enumerate(slept, start=1))


async def test_step_retrying_retries_only_the_given_classes_with_their_backoff() -> None:
    policy = RetryPolicy(throttling=Backoff(base_s=1.0, cap_s=1.0), step_attempts=4)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    answers = [
        Ec2Error("RequestLimitExceeded", "slow down", action="CreateNetworkInterface"),
        Ec2Error("RequestLimitExceeded", "slow down", action="CreateNetworkInterface"),
    ]

    async def call() -> str:
        if answers:
            raise answers.pop(0)
        return "done"

    retrying = policy.step_retrying((ErrorClass.THROTTLING,), random.Random(3), sleep)
    assert await retrying(call) == "done"
    assert len(slept) == 2 and all(0 <= s <= 1.0 for s in slept)

    async def refused() -> str:
        raise Ec2Error("InvalidParameterValue", "bad group", action="CreateNetworkInterface")

    slept.clear()
    with pytest.raises(Ec2Error, match="bad group"):
        await policy.step_retrying((ErrorClass.THROTTLING,), random.Random(3), sleep)(refused)
    assert slept == []  # a permanent answer is raised at once
