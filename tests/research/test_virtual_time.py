"""The virtual-time loop: time jumps instead of sleeping, timers keep their order, failures surface."""

from __future__ import annotations

import asyncio
import time

import pytest

from controller.clock import LoopClock
from controller.research.virtual_time import SimulationDeadlock, SimulationError, run_virtual, spawn


def test_a_day_of_virtual_sleep_takes_no_wall_time_and_ends_at_the_right_time() -> None:
    async def main() -> float:
        await asyncio.sleep(86_400)
        return asyncio.get_running_loop().time()

    started = time.perf_counter()
    assert run_virtual(main()) == 86_400
    assert time.perf_counter() - started < 5  # a real sleep would take a day


def test_timers_fire_in_time_order_and_loop_clock_reads_virtual_time() -> None:
    async def main() -> list[tuple[str, float]]:
        clock = LoopClock()
        fired: list[tuple[str, float]] = []

        async def at(name: str, delay: float) -> None:
            await clock.sleep(delay)
            fired.append((name, clock.now()))

        await asyncio.gather(at("late", 30.0), at("early", 0.5), at("middle", 7.25))
        return fired

    assert run_virtual(main()) == [("early", 0.5), ("middle", 7.25), ("late", 30.0)]


def test_waiting_for_something_that_never_comes_is_a_deadlock_not_a_hang() -> None:
    async def main() -> None:
        await asyncio.get_running_loop().create_future()

    with pytest.raises(SimulationDeadlock):
        run_virtual(main())


def test_a_background_task_that_dies_fails_the_run() -> None:
    async def broken() -> None:
        await asyncio.sleep(1)
        raise ValueError("bug in a worker")

    async def main() -> None:
        tasks: set[asyncio.Task[object]] = set()
        spawn(broken(), name="worker", registry=tasks)
        await asyncio.sleep(5)

    with pytest.raises(SimulationError, match="bug in a worker"):
        run_virtual(main())
