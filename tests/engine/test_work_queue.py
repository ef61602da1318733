"""client-go work queue semantics the RC model relies on."""

from __future__ import annotations

import asyncio

from controller.clock import LoopClock
from controller.engine.work_queue import RateLimitingQueue
from controller.research.virtual_time import run_virtual


def _queue() -> RateLimitingQueue[str]:
    return RateLimitingQueue(
        LoopClock(), base_delay_s=0.005, max_delay_s=1000.0, overall_qps=10.0, overall_burst=100
    )


def test_an_item_queued_twice_is_processed_once_and_requeues_back_off_exponentially() -> None:
    async def main() -> tuple[int, list[float]]:
        queue = _queue()
        queue.add("pod-a")
        queue.add("pod-a")
        assert len(queue) == 1
        delays = [queue.when("pod-a") for _ in range(4)]
        assert queue.num_requeues("pod-a") == 4
        queue.forget("pod-a")
        return queue.num_requeues("pod-a"), delays

    requeues, delays = run_virtual(main())
    assert requeues == 0
    assert delays == [0.005, 0.01, 0.02, 0.04]


def test_an_item_added_while_processing_runs_again_after_done() -> None:
    async def main() -> list[str]:
        queue = _queue()
        queue.add("x")
        got = [await queue.get()]
        queue.add("x")  # while processing: held back
        assert len(queue) == 0
        queue.done("x")
        got.append(await asyncio.wait_for(queue.get(), timeout=1))
        return got

    assert run_virtual(main()) == ["x", "x"]


def test_an_item_waits_once_at_the_earliest_time_asked_so_periodic_requeues_never_multiply() -> None:
    """A pass that requeues itself every 10 s, plus one extra pass from an event: still one chain.
    Each add_after used to arm a timer of its own, so every extra pass started another periodic chain
    (a prefix-exhaustion run made 5,697 node passes in 300 s for 10 nodes instead of about 300)."""

    async def main() -> list[float]:
        queue = _queue()
        passes: list[float] = []
        loop = asyncio.get_running_loop()

        async def worker() -> None:
            while True:
                item = await queue.get()
                passes.append(loop.time())
                queue.add_after(item, 10.0)  # the periodic pass
                queue.done(item)

        task = asyncio.ensure_future(worker())
        queue.add("node-a")
        await asyncio.sleep(3)
        queue.add("node-a")  # an event: one extra pass now
        await asyncio.sleep(0)
        queue.add_after("node-a", 20.0)  # a later wait changes nothing: the earliest one stands
        await asyncio.sleep(55)
        task.cancel()
        return passes

    passes = run_virtual(main())
    assert passes[:2] == [0.0, 3.0]
    assert passes[2:] == [10.0, 20.0, 30.0, 40.0, 50.0]
