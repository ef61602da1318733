"""Scripted and random fault injection for the simulated VPC.

`inject` scripts the next failures of one action (FIFO per action); a random fault rate with its own
seeded RNG adds background noise. A fault normally fails the call before it has any effect; with
`after_effect=True` the call takes effect and the answer is lost on the way back (the case client
tokens exist for).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from controller.core.errors import Ec2Error

REQUEST_LIMIT_EXCEEDED = ("RequestLimitExceeded", "Request limit exceeded.", 503)
INTERNAL_ERROR = ("InternalError", "An internal error has occurred.", 500)


class ScriptedFault(BaseModel):
    """One fault: the EC2 error it answers and whether the call took effect first."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(min_length=1)
    message: str
    http_status: int | None = None
    after_effect: bool = False

    def error(self, action: str) -> Ec2Error:
        return Ec2Error(self.code, self.message, action=action, http_status=self.http_status)


class _RandomFaults(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rate: float = Field(ge=0.0, le=1.0)
    fault: ScriptedFault
    actions: frozenset[str] | None = None  # None: every action


class FaultPlan:
    """The faults still to come, per action."""

    def __init__(self) -> None:
        self._scripted: dict[str, deque[ScriptedFault]] = {}
        self._random: _RandomFaults | None = None
        self._rng = random.Random(0)

    def inject(
        self,
        action: str,
        code: str,
        message: str,
        *,
        times: int = 1,
        http_status: int | None = None,
        after_effect: bool = False,
    ) -> None:
        """The next `times` calls of `action` fail with this error (after any already scripted)."""
        if times < 1:
            raise ValueError("times must be >= 1")
        fault = ScriptedFault(code=code, message=message, http_status=http_status, after_effect=after_effect)
        self._scripted.setdefault(action, deque()).extend([fault] * times)

    def inject_throttling(self, action: str, *, times: int = 1) -> None:
        code, message, status = REQUEST_LIMIT_EXCEEDED
        self.inject(action, code, message, times=times, http_status=status)

    def set_random_faults(
        self,
        rate: float,
        *,
        seed: int | str = 0,
        code: str = INTERNAL_ERROR[0],
        message: str = INTERNAL_ERROR[1],
        http_status: int | None = INTERNAL_ERROR[2],
        actions: Iterable[str] | None = None,
        after_effect: bool = False,
    ) -> None:
        """Fail each call (of `actions`, default all) with probability `rate`; rate 0 turns it off.
        With `after_effect` the call takes effect first and only its answer is lost."""
        fault = ScriptedFault(code=code, message=message, http_status=http_status, after_effect=after_effect)
        chosen = frozenset(actions) if actions is not None else None
        self._random = _RandomFaults(rate=rate, fault=fault, actions=chosen) if rate > 0 else None
        self._rng = random.Random(f"faults:{seed}")

    def pending(self, action: str) -> int:
        queue = self._scripted.get(action)
        return len(queue) if queue else 0

    def clear(self) -> None:
        self._scripted.clear()
        self._random = None

    def take(self, action: str) -> ScriptedFault | None:
        """The fault for this call of `action`, if any (a scripted one first)."""
        if self._scripted:
            queue = self._scripted.get(action)
            if queue:
                fault = queue.popleft()
                if not queue:
                    del self._scripted[action]
                return fault
        random_faults = self._random
        if random_faults is None:
            return None
        if random_faults.actions is not None and action not in random_faults.actions:
            return None
        return random_faults.fault if self._rng.random() < random_faults.rate else None
