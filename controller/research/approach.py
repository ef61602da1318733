"""What the harness needs from an allocator under test (the annotation baseline, ipamd, netalloc)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from controller.research.api_server import KubeObject


class Approach(Protocol):
    name: str
    implementation: str

    def start(self) -> None:
        """Start informers, workers and loops on the running (virtual-time) loop."""
        ...

    async def crash(self) -> None:
        """The controller process dies: in-flight work stops, in-memory state is lost."""
        ...

    def restart(self) -> None:
        """Start again after `crash` (state is rebuilt from the API server and EC2)."""
        ...

    def gave_up_on(self, key: str) -> bool:
        """True when the allocator has stopped trying for this pod (it will stay stuck)."""
        ...

    def busy(self) -> bool:
        """Work is in flight (ENIs may exist that the allocator has not recorded yet)."""
        ...

    def stuck_reason(self, pod: KubeObject | None, key: str) -> str:
        """What a user sees for a pod that is not network-ready."""
        ...

    def shows_capacity_reason(self, pod: KubeObject) -> bool:
        """True when what the pod's user can see names a capacity cause (prefix-exhaustion)."""
        ...

    def owned_eni_ids(self) -> tuple[set[str], set[str]]:
        """(ENIs in use, ENIs pooled/queued) according to the allocator's own state."""
        ...

    def extra_metrics(self) -> dict[str, float | int | str]: ...


@runtime_checkable
class ReportsNextAction(Protocol):
    """Optional hook: an approach that can say when it next acts on its own.

    `next_action_due()` answers the virtual time at which the approach will next change EC2 state
    without being asked (a delete queue tick, a cool-down or excess timer expiring, a requeued job,
    work in flight: `now`), or None when it is quiet: nothing queued, nothing cooling, no timer that
    would call EC2. Periodic housekeeping that finds nothing to do (a leak sweep) does not count.
    The harness starts `rollout-churn` only once this is None, and keeps counting until it is None
    again. The annotation baseline implements it; the crd side must (TODO integrator): without it
    the harness waits a fixed time and marks the run's quietness as unverified.
    """

    def next_action_due(self) -> float | None: ...


@runtime_checkable
class ReportsCooldown(Protocol):
    """Optional hook: the branch-ENI cool-down the approach runs with (printed side by side)."""

    def cooldown_s(self) -> float: ...


class Ec2ClientFacts(BaseModel):
    """How an approach's simulated EC2 client limits and retries, as the approach itself reports it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str
    same_as_boto3_adapter: bool = Field(
        description="True only when the approach checked its simulated client against Boto3Ec2's config"
    )


@runtime_checkable
class ReportsEc2Client(Protocol):
    """Optional hook: the approach describes its EC2 client. The report makes no claim without it."""

    def ec2_client_facts(self) -> Ec2ClientFacts: ...
