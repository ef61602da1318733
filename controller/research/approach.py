"""What the harness needs from an allocator under test (the annotation baseline, ipamd, netalloc)."""

from __future__ import annotations

from typing import Protocol

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
