"""RC's EC2 client stack, as its code builds it (field notes §2, `pkg/aws/ec2/api/wrapper.go`, `helper.go`).

- TWO clients, each with its own 12 QPS / burst 18 token bucket: the *instance* client serves
  `AssociateTrunkInterface`, `DisassociateTrunkInterface` and `DescribeTrunkInterfaceAssociations`;
  the *user* client serves every other action (field notes §2 "EC2 clients"). RC puts the bucket in
  the HTTP client (`utils.NewRateLimitedClient`), so every attempt, retries included, takes a token.
- Each client retries with the aws-sdk-go-v2 standard retryer (field notes §2 "SDK"): 3 attempts,
  backoff uniform in [0, 1) × 2^attempt s capped at 20 s, retrying throttle codes, HTTP 500/502/503/504
  and RequestTimeout (aws-sdk-go-v2 `aws/retry/standard.go`). Its retry token bucket IS modelled:
  500 tokens per client, a retry costs 5, a success on the first attempt gives 1 back and a success
  on a retry refunds its 5; with too few tokens the error is returned without retry.
- `DeleteNetworkInterface` runs inside `retry.OnError(defaultBackOff, always)`: apimachinery
  `wait.Backoff{100 ms, ×3, jitter 0.1, 7 steps, cap 10 s}` (field notes §2 "its own retry on error
  (100 ms base)"; the factor, steps and cap are `helper.go`'s `defaultBackOff`).
- A trunk attachment is polled with `DescribeNetworkInterfaces` under
  `wait.Backoff{1 s, ×2, jitter 0.1, 7 steps, cap 5 min}` (field notes §2 "poll ... from 1 s";
  the rest is `helper.go`'s `waitForENIAttachment`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from controller.adapters.rate_limiter import RateLimiter
from controller.clock import Clock
from controller.core.errors import Ec2Error
from controller.ports.ec2 import (
    Ec2Port,
    InstanceInfo,
    InterfaceType,
    NetworkInterface,
    SubnetInfo,
    TrunkAssociation,
)

T = TypeVar("T")

# field notes §2: the actions RC sends through the instance client; everything else uses the user client.
INSTANCE_CLIENT_ACTIONS = frozenset(
    {"AssociateTrunkInterface", "DisassociateTrunkInterface", "DescribeTrunkInterfaceAssociations"}
)

# aws-sdk-go-v2 aws/retry/standard.go: DefaultThrottleErrorCodes, DefaultRetryableErrorCodes and
# DefaultRetryableHTTPStatusCodes (field notes §2: the standard retryer retries throttles and 5xx).
SDK_THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
SDK_RETRYABLE_CODES = frozenset({"RequestTimeout", "RequestTimeoutException"})
SDK_RETRYABLE_HTTP_STATUS = frozenset({500, 502, 503, 504})


def sdk_retryable(error: Ec2Error) -> bool:
    """The standard retryer's verdict: throttle codes, RequestTimeout, or HTTP 500/502/503/504."""
    return (
        error.code in SDK_THROTTLE_CODES
        or error.code in SDK_RETRYABLE_CODES
        or (error.http_status is not None and error.http_status in SDK_RETRYABLE_HTTP_STATUS)
    )


class StandardRetryerParams(BaseModel):
    """aws-sdk-go-v2 `retry.NewStandard()` defaults (field notes §2; token values from standard.go)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_attempts: int = Field(default=3, ge=1)
    max_backoff_s: float = Field(default=20.0, gt=0)
    model_retry_quota: bool = True
    retry_tokens: int = Field(default=500, ge=0)
    retry_cost: int = Field(default=5, ge=0)
    no_retry_increment: int = Field(default=1, ge=0)


class ClientStats(BaseModel):
    """What one SDK client did: attempts sent, logical calls, retries, retry-quota refusals."""

    model_config = ConfigDict(extra="forbid")

    calls: int = 0
    attempts: int = 0
    retries: int = 0
    retry_quota_exhausted: int = 0


class StandardRetryer:
    """One aws-sdk-go-v2 client: a client-side bucket in front of every attempt, the standard retryer."""

    def __init__(
        self,
        *,
        name: str,
        clock: Clock,
        limiter: RateLimiter,
        rng: random.Random,
        params: StandardRetryerParams,
    ) -> None:
        self.name = name
        self._clock = clock
        self.limiter = limiter
        self._rng = rng
        self.params = params
        self.quota = float(params.retry_tokens)
        self.stats = ClientStats()
        # ExponentialJitterBackoff: attempts above log2(max backoff) wait the max backoff.
        self._max_backoff_attempts = int(math.log2(params.max_backoff_s))

    def backoff_s(self, attempt: int) -> float:
        """Delay after attempt `attempt` (1-based) failed: U[0, 1) × 2^attempt s, capped."""
        if attempt > self._max_backoff_attempts:
            return self.params.max_backoff_s
        return min(self.params.max_backoff_s, self._rng.random() * (1 << attempt))

    async def call(self, request: Callable[[], Awaitable[T]]) -> T:
        params = self.params
        self.stats.calls += 1
        attempt = 0
        refund = params.no_retry_increment  # what a success gives back (the retry cost after a retry)
        while True:
            attempt += 1
            await self.limiter.acquire()
            self.stats.attempts += 1
            try:
                result = await request()
            except Ec2Error as error:
                if not sdk_retryable(error) or attempt >= params.max_attempts:
                    raise
                if params.model_retry_quota:
                    if self.quota < params.retry_cost:
                        self.stats.retry_quota_exhausted += 1
                        raise
                    self.quota -= params.retry_cost
                    refund = params.retry_cost
                self.stats.retries += 1
                await self._clock.sleep(self.backoff_s(attempt))
                continue
            if params.model_retry_quota:
                self.quota = min(float(params.retry_tokens), self.quota + refund)
            return result


class WaitBackoff(BaseModel):
    """apimachinery `wait.Backoff` as `wait.ExponentialBackoff` and `retry.OnError` use it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    duration_s: float = Field(gt=0)
    factor: float = Field(ge=0)
    jitter: float = Field(ge=0)
    steps: int = Field(ge=1)
    cap_s: float = Field(gt=0)

    def step(self, state: list[float], rng: random.Random) -> float:
        """`Backoff.Step()`: the next sleep; `state` is [steps left, next duration], updated in place."""
        steps, duration = state
        state[0] = steps - 1
        sleep = duration
        if self.factor != 0:
            duration *= self.factor
            if duration > self.cap_s:
                duration = self.cap_s
                state[0] = 0
        state[1] = duration
        if self.jitter > 0:
            sleep += rng.random() * self.jitter * sleep
        return sleep


# helper.go defaultBackOff (DeleteNetworkInterface) and waitForENIAttachment (attachment poll).
DELETE_BACKOFF = WaitBackoff(duration_s=0.1, factor=3.0, jitter=0.1, steps=7, cap_s=10.0)
ATTACH_WAIT_BACKOFF = WaitBackoff(duration_s=1.0, factor=2.0, jitter=0.1, steps=7, cap_s=300.0)


class AttachmentNotReady(Exception):
    """helper.go's ErrRetryAttachmentStatusCheck: the interface is not `attached` yet."""


class AttachmentView(Protocol):
    """What the simulated VPC tells about an attachment's progress (EC2 shows it as Attachment.Status)."""

    def attachment_status(self, eni_id: str) -> str: ...

    def instance_network_interfaces(self, instance_id: str) -> list[NetworkInterface]: ...

    async def set_delete_on_termination(self, eni_id: str, attachment_id: str) -> None: ...


class RcEc2Port(Ec2Port, AttachmentView, Protocol):
    """The EC2 surface RC needs: the port plus ModifyNetworkInterfaceAttribute(DeleteOnTermination)."""


async def exponential_backoff(
    backoff: WaitBackoff, rng: random.Random, clock: Clock, condition: Callable[[], Awaitable[bool]]
) -> bool:
    """apimachinery `wait.ExponentialBackoff`: run `condition` until it holds; between runs sleep
    `Step()`; stop after Steps runs, or after the sleep of a step that hit the cap (it zeroes Steps).
    False is `ErrWaitTimeout`."""
    state = [float(backoff.steps), backoff.duration_s]
    while state[0] > 0:
        if await condition():
            return True
        if state[0] == 1:
            break
        await clock.sleep(backoff.step(state, rng))
    return False


async def retry_on_error(
    backoff: WaitBackoff,
    rng: random.Random,
    clock: Clock,
    retriable: Callable[[Exception], bool],
    fn: Callable[[], Awaitable[T]],
) -> T:
    """client-go `retry.OnError`: run `fn` under `backoff` while it fails with a retriable error;
    when the backoff is spent, raise the last error."""
    result: list[T] = []
    last: list[Exception] = []

    async def condition() -> bool:
        try:
            result.append(await fn())
        except Exception as error:
            if not retriable(error):
                raise
            last[:] = [error]
            return False
        return True

    if await exponential_backoff(backoff, rng, clock, condition):
        return result[-1]
    raise last[-1]


class RcEc2:
    """RC's `ec2Wrapper` + `ec2APIHelper` over a port: routing, retries and RC's helper loops."""

    def __init__(
        self,
        port: RcEc2Port,
        *,
        clock: Clock,
        seed: int,
        qps: float,
        burst: int,
        retryer: StandardRetryerParams,
        account_id: str,
    ) -> None:
        self.port = port
        self.clock = clock
        self.account_id = account_id
        self.instance = StandardRetryer(
            name="instance",
            clock=clock,
            limiter=RateLimiter.per_second(qps, burst, clock),
            rng=random.Random(seed * 31 + 1),
            params=retryer,
        )
        self.user = StandardRetryer(
            name="user",
            clock=clock,
            limiter=RateLimiter.per_second(qps, burst, clock),
            rng=random.Random(seed * 31 + 2),
            params=retryer,
        )
        self._rng = random.Random(seed * 31 + 3)
        self.delete_retry_runs = 0

    def client_for(self, action: str) -> StandardRetryer:
        return self.instance if action in INSTANCE_CLIENT_ACTIONS else self.user

    async def _call(self, action: str, request: Callable[[], Awaitable[T]]) -> T:
        return await self.client_for(action).call(request)

    async def describe_instance(self, instance_id: str) -> InstanceInfo:
        return await self._call("DescribeInstances", lambda: self.port.describe_instance(instance_id))

    async def instance_interfaces(self, instance_id: str) -> list[NetworkInterface]:
        """GetInstanceNetworkInterface: a DescribeInstances, read for the instance's interfaces."""
        await self.describe_instance(instance_id)
        return self.port.instance_network_interfaces(instance_id)

    async def detach(self, attachment_id: str) -> None:
        await self._call(
            "DetachNetworkInterface", lambda: self.port.detach_network_interface(attachment_id, force=False)
        )

    async def describe_subnet(self, subnet_id: str) -> SubnetInfo:
        return await self._call("DescribeSubnets", lambda: self.port.describe_subnet(subnet_id))

    async def describe_network_interfaces(
        self, *, tags: dict[str, str] | None = None, eni_ids: list[str] | None = None
    ) -> list[NetworkInterface]:
        return await self._call(
            "DescribeNetworkInterfaces",
            lambda: self.port.describe_network_interfaces(tags=tags, eni_ids=eni_ids),
        )

    async def create_network_interface(
        self,
        *,
        subnet_id: str,
        security_group_ids: list[str],
        interface_type: InterfaceType,
        tags: dict[str, str],
    ) -> NetworkInterface:
        return await self._call(
            "CreateNetworkInterface",
            lambda: self.port.create_network_interface(
                subnet_id=subnet_id,
                security_group_ids=security_group_ids,
                interface_type=interface_type,
                tags=tags,
                client_token="",
            ),
        )

    async def create_permission(self, eni_id: str) -> None:
        await self._call(
            "CreateNetworkInterfacePermission",
            lambda: self.port.create_network_interface_permission(eni_id, aws_account_id=self.account_id),
        )

    async def attach(self, eni_id: str, *, instance_id: str, device_index: int) -> str:
        return await self._call(
            "AttachNetworkInterface",
            lambda: self.port.attach_network_interface(
                eni_id, instance_id=instance_id, device_index=device_index
            ),
        )

    async def set_delete_on_termination(self, eni_id: str, attachment_id: str) -> None:
        await self._call(
            "ModifyNetworkInterfaceAttribute",
            lambda: self.port.set_delete_on_termination(eni_id, attachment_id),
        )

    async def wait_until_attached(self, eni_id: str) -> None:
        """WaitForNetworkInterfaceStatusChange(attached): describe now, then after 1, 2, 4 … s."""

        async def check() -> None:
            await self.describe_network_interfaces(eni_ids=[eni_id])
            if self.port.attachment_status(eni_id) != "attached":
                raise AttachmentNotReady(eni_id)

        await retry_on_error(
            ATTACH_WAIT_BACKOFF, self._rng, self.clock, lambda e: isinstance(e, AttachmentNotReady), check
        )

    async def associate(self, *, branch_eni_id: str, trunk_eni_id: str, vlan_id: int) -> TrunkAssociation:
        return await self._call(
            "AssociateTrunkInterface",
            lambda: self.port.associate_trunk_interface(
                branch_eni_id=branch_eni_id, trunk_eni_id=trunk_eni_id, vlan_id=vlan_id, client_token=""
            ),
        )

    async def disassociate(self, association_id: str) -> None:
        await self._call(
            "DisassociateTrunkInterface", lambda: self.port.disassociate_trunk_interface(association_id)
        )

    async def describe_trunk_associations(self, trunk_eni_id: str) -> list[TrunkAssociation]:
        return await self._call(
            "DescribeTrunkInterfaceAssociations", lambda: self.port.describe_trunk_associations(trunk_eni_id)
        )

    async def delete_network_interface(self, eni_id: str) -> None:
        """helper.go DeleteNetworkInterface: retry.OnError(defaultBackOff, any error) around the SDK call."""

        async def once() -> None:
            self.delete_retry_runs += 1
            await self._call("DeleteNetworkInterface", lambda: self.port.delete_network_interface(eni_id))

        await retry_on_error(DELETE_BACKOFF, self._rng, self.clock, lambda e: isinstance(e, Ec2Error), once)

    def stats(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for client in (self.instance, self.user):
            for key, value in client.stats.model_dump().items():
                out[f"sdk_{client.name}_{key}"] = int(value)
        return out
