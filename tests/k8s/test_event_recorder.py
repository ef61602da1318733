"""Events are deduplicated on the controller's clock, so the simulation's virtual hours count as hours."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from controller.clock import ManualClock
from controller.k8s.reconcilers.context import EventRecorder


class Posted:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    async def post_event(
        self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str
    ) -> None:
        self.events.append((reason, message))


def test_the_same_event_is_told_once_per_window_of_the_controller_s_clock() -> None:
    clock = ManualClock(1000.0)
    kube = Posted()
    pna = {"metadata": {"uid": "u1", "name": "web-1", "namespace": "shop"}}

    async def main() -> None:
        recorder = EventRecorder(kube, clock=clock)  # type: ignore[arg-type]
        recorder.post(pna, warning=True, reason="NoCapacity", message="full")
        clock.advance(599.0)
        recorder.post(pna, warning=True, reason="NoCapacity", message="full")  # within 10 min: dropped
        recorder.post(pna, warning=True, reason="NoCapacity", message="still full")  # new message: told
        clock.advance(2.0)
        recorder.post(pna, warning=True, reason="NoCapacity", message="full")  # the window passed
        await recorder.flush()

    asyncio.run(main())
    assert kube.events == [("NoCapacity", "full"), ("NoCapacity", "still full"), ("NoCapacity", "full")]
