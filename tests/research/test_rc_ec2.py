"""RC's EC2 client stack (field notes §2 "EC2 clients", "SDK", the delete retry loop, the attach poll)."""

from __future__ import annotations

import itertools
import random

import pytest

from controller.adapters.rate_limiter import RateLimiter
from controller.clock import LoopClock
from controller.core.errors import Ec2Error
from controller.research.rc_ec2 import (
    ATTACH_WAIT_BACKOFF,
    DELETE_BACKOFF,
    INSTANCE_CLIENT_ACTIONS,
    RcEc2,
    StandardRetryer,
    StandardRetryerParams,
    exponential_backoff,
    sdk_retryable,
)
from controller.research.virtual_time import run_virtual


def _throttle() -> Ec2Error:
    return Ec2Error("RequestLimitExceeded", "Request limit exceeded.", http_status=503)


class CountingLimiter(RateLimiter):
    """A client bucket that counts the tokens taken."""

    taken = 0

    async def acquire(self) -> None:
        self.taken += 1
        await super().acquire()


def _retryer(params: StandardRetryerParams | None = None, *, qps: float = 1000.0) -> StandardRetryer:
    clock = LoopClock()
    return StandardRetryer(
        name="user",
        clock=clock,
        limiter=CountingLimiter.per_second(qps, 1000, clock),
        rng=random.Random(1),
        params=params or StandardRetryerParams(),
    )


class Flaky:
    """Fails `failures` times with `error`, then answers; records when each attempt came."""

    def __init__(self, failures: int, error: Ec2Error) -> None:
        self.failures = failures
        self.error = error
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.times.append(LoopClock().now())
        if len(self.times) <= self.failures:
            raise self.error
        return "ok"


def test_field_notes_instance_client_serves_exactly_the_three_trunk_association_actions() -> None:
    # field notes §2: instance client for Associate/Disassociate/DescribeTrunkInterfaceAssociations.
    assert {
        "AssociateTrunkInterface",
        "DisassociateTrunkInterface",
        "DescribeTrunkInterfaceAssociations",
    } == INSTANCE_CLIENT_ACTIONS

    async def main() -> tuple[str, str, str]:
        rc = RcEc2(
            None,  # type: ignore[arg-type]  # routing only, no call is made
            clock=LoopClock(),
            seed=1,
            qps=12,
            burst=18,
            retryer=StandardRetryerParams(),
            account_id="1",
        )
        assert rc.instance.limiter is not rc.user.limiter  # two buckets, not one shared
        return (
            rc.client_for("AssociateTrunkInterface").name,
            rc.client_for("CreateNetworkInterface").name,
            rc.client_for("DeleteNetworkInterface").name,
        )

    assert run_virtual(main()) == ("instance", "user", "user")


def test_field_notes_sdk_makes_three_attempts_and_each_takes_a_client_token() -> None:
    async def main() -> tuple[int, int, int]:
        retryer = _retryer()
        flaky = Flaky(5, _throttle())
        with pytest.raises(Ec2Error):
            await retryer.call(flaky)
        assert isinstance(retryer.limiter, CountingLimiter)
        return len(flaky.times), retryer.limiter.taken, retryer.stats.retries

    assert run_virtual(main()) == (3, 3, 2)  # 3 attempts, a token for each (the bucket is per attempt)


def test_field_notes_sdk_backoff_is_uniform_below_two_to_the_attempt_and_capped_at_20_s() -> None:
    retryer = _retryer()
    first = [retryer.backoff_s(1) for _ in range(2000)]
    second = [retryer.backoff_s(2) for _ in range(2000)]
    assert min(first) >= 0 and max(first) < 2 and 0.9 < sum(first) / len(first) < 1.1
    assert max(second) < 4 and 1.8 < sum(second) / len(second) < 2.2
    assert retryer.backoff_s(5) == 20.0  # attempt > log2(20): the cap


def test_field_notes_sdk_retries_throttles_and_5xx_but_not_client_errors() -> None:
    assert sdk_retryable(_throttle())
    assert sdk_retryable(Ec2Error("InternalError", "boom", http_status=500))
    assert not sdk_retryable(Ec2Error("InvalidParameterValue", "bad", http_status=400))

    async def main() -> int:
        flaky = Flaky(1, Ec2Error("InvalidParameterValue", "bad", http_status=400))
        with pytest.raises(Ec2Error):
            await _retryer().call(flaky)
        return len(flaky.times)

    assert run_virtual(main()) == 1


def test_retry_token_bucket_refuses_retries_when_spent_and_refunds_on_success() -> None:
    async def spend() -> tuple[int, float, int]:
        retryer = _retryer(StandardRetryerParams(retry_tokens=12))
        with pytest.raises(Ec2Error):
            await retryer.call(Flaky(9, _throttle()))  # 2 retries: 12 − 10 = 2 tokens left
        left = retryer.quota
        flaky = Flaky(9, _throttle())
        with pytest.raises(Ec2Error):
            await retryer.call(flaky)  # 2 < 5: no retry at all
        return len(flaky.times), left, retryer.stats.retry_quota_exhausted

    attempts, left, refused = run_virtual(spend())
    assert (attempts, left, refused) == (1, 2.0, 1)

    async def refund() -> float:
        retryer = _retryer(StandardRetryerParams(retry_tokens=500))
        retryer.quota = 100.0
        assert await retryer.call(Flaky(1, _throttle())) == "ok"  # −5 for the retry, +5 on its success
        assert await retryer.call(Flaky(0, _throttle())) == "ok"  # +1 for a first-attempt success
        return retryer.quota

    assert run_virtual(refund()) == 101.0


def test_without_the_retry_quota_model_retries_are_never_refused() -> None:
    async def main() -> int:
        retryer = _retryer(StandardRetryerParams(retry_tokens=0, model_retry_quota=False))
        flaky = Flaky(9, _throttle())
        with pytest.raises(Ec2Error):
            await retryer.call(flaky)
        return len(flaky.times)

    assert run_virtual(main()) == 3


def test_field_notes_delete_retry_loop_starts_at_100_ms_and_gives_up_after_five_runs() -> None:
    # helper.go defaultBackOff {100 ms, ×3, jitter 0.1, 7 steps, cap 10 s}: runs at 0, ~0.1, ~0.4,
    # ~1.3, ~4.0 s; the step that would exceed the cap zeroes the steps, so no sixth run.
    async def main() -> list[float]:
        times: list[float] = []

        async def condition() -> bool:
            times.append(LoopClock().now())
            return False

        assert not await exponential_backoff(DELETE_BACKOFF, random.Random(2), LoopClock(), condition)
        return times

    times = run_virtual(main())
    assert len(times) == 5
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, base in zip(gaps, (0.1, 0.3, 0.9, 2.7), strict=True):
        assert base <= gap <= base * 1.1 + 1e-9


def test_field_notes_attach_poll_checks_at_once_then_from_1_s_doubling() -> None:
    async def main() -> list[float]:
        times: list[float] = []

        async def condition() -> bool:
            times.append(LoopClock().now())
            return len(times) == 4

        assert await exponential_backoff(ATTACH_WAIT_BACKOFF, random.Random(3), LoopClock(), condition)
        return times

    times = run_virtual(main())
    assert times[0] == 0.0
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, base in zip(gaps, (1.0, 2.0, 4.0), strict=True):
        assert base <= gap <= base * 1.1 + 1e-9
