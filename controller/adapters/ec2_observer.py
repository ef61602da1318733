"""What every EC2 adapter reports after each call: the action and how it ended.

Both the boto3 adapter and the simulated VPC accept an `Ec2CallObserver`; the Prometheus metrics
hook in here later. `CallCounter` is the in-memory implementation used by tests and reports.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, get_args

CallOutcome = Literal["ok", "throttled", "error"]
CALL_OUTCOMES: Final[tuple[CallOutcome, ...]] = get_args(CallOutcome)


class Ec2CallObserver(Protocol):
    def __call__(self, action: str, outcome: CallOutcome) -> None:
        """Called once per port call (after the SDK's own retries), e.g. ("CreateNetworkInterface", "ok")."""
        ...


@dataclass
class CallCounter:
    """Counts calls by (action, outcome)."""

    counts: Counter[tuple[str, CallOutcome]] = field(default_factory=Counter)

    def __call__(self, action: str, outcome: CallOutcome) -> None:
        if outcome not in CALL_OUTCOMES:
            raise ValueError(f"unknown call outcome {outcome!r}")
        self.counts[(action, outcome)] += 1

    def calls(self, action: str) -> int:
        """All calls of `action`, whatever their outcome."""
        return sum(self.counts[(action, outcome)] for outcome in CALL_OUTCOMES)

    def outcome(self, action: str, outcome: CallOutcome) -> int:
        return self.counts[(action, outcome)]

    def throttled(self, action: str) -> int:
        return self.counts[(action, "throttled")]

    def errors(self, action: str) -> int:
        return self.counts[(action, "error")]

    def total(self) -> int:
        return sum(self.counts.values())
