"""A virtual-time asyncio event loop: the engine of the discrete-event simulation.

`loop.time()` is a virtual clock that starts at 0. When no callback is ready the loop does not
sleep: its selector jumps the clock straight to the next timer. Everything that uses
`asyncio.sleep`, `loop.call_later` or `controller.clock.LoopClock` therefore runs in virtual time,
as fast as the CPU allows, and deterministically: timers fire in (time, insertion) order and there
is no I/O, no thread and no wall-clock read inside the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
GC_THRESHOLDS = (200_000, 50, 1000)


class SimulationError(RuntimeError):
    """A task of the simulation died of an unexpected exception: the results would be wrong."""


class SimulationDeadlock(RuntimeError):
    """Nothing is ready and no timer is pending, yet the awaited coroutine has not finished."""


class _VirtualSelector:
    """Stands in for a selector: 'waiting' for `timeout` seconds moves the virtual clock instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:
            raise SimulationDeadlock(
                f"simulation deadlock at t={self._loop.time():.3f}s: no ready callback and no timer"
            )
        if timeout > 0:
            self._loop.advance(timeout)
        return []

    def close(self) -> None:
        return None


class VirtualTimeLoop(asyncio.BaseEventLoop):
    """An event loop whose clock is virtual; it has no I/O (no sockets, no subprocesses, no threads)."""

    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self._virtual_now = start
        self._selector = _VirtualSelector(self)
        self.set_debug(False)
        self.errors: list[BaseException] = []

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the virtual clock forward (only the selector and tests call this)."""
        if seconds < 0:
            raise ValueError("virtual time cannot go backwards")
        self._virtual_now += seconds

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            self.errors.append(exc)
        super().call_exception_handler(context)

    # BaseEventLoop hooks for I/O: there is none.
    def _process_events(self, event_list: list[Any]) -> None:
        return None

    def _write_to_self(self) -> None:
        return None

    def close(self) -> None:
        super().close()
        self._selector.close()


def run_virtual(coro: Coroutine[Any, Any, T], *, start: float = 0.0) -> T:
    """Run `coro` to completion on a fresh virtual-time loop and close the loop.

    Tasks still pending when `coro` returns are cancelled (and given a chance to unwind), like
    `asyncio.run` does.
    """
    loop = VirtualTimeLoop(start=start)
    # A simulation keeps hundreds of thousands of long-lived objects; the default collector
    # thresholds would spend about half the run re-scanning them. Collect far less often meanwhile.
    thresholds = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        ctx = contextvars.copy_context()
        task = loop.create_task(coro, context=ctx)
        result = loop.run_until_complete(task)
        if loop.errors:
            raise SimulationError(f"a simulation task failed: {loop.errors[0]!r}") from loop.errors[0]
        return result
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            gc.set_threshold(*thresholds)


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    if not pending:
        return
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    for task in pending:
        if task.cancelled():
            continue
        exc = task.exception()
        if exc is not None:
            loop.call_exception_handler(
                {"message": "unhandled exception during simulation shutdown", "exception": exc, "task": task}
            )


def report_failure(task: asyncio.Task[Any]) -> None:
    """A done-callback: an unexpected exception in a background task fails the whole run at once
    (instead of a silently dead worker and wrong numbers)."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        task.get_loop().call_exception_handler(
            {"message": f"simulation task {task.get_name()} failed", "exception": exc, "task": task}
        )


def spawn(
    coro: Coroutine[Any, Any, None], *, name: str, registry: set[asyncio.Task[Any]]
) -> asyncio.Task[None]:
    """Start a background task, keep a reference in `registry` until it ends, report its failure."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    registry.add(task)
    task.add_done_callback(registry.discard)
    task.add_done_callback(report_failure)
    return task
