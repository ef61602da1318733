"""client-go's rate-limiting work queue, in asyncio: the queue RC's pod workers pull from.

Semantics kept: an item queued twice is processed once (dirty set); an item re-added while being
processed runs again after `done`; `add_rate_limited` waits max(per-item exponential backoff,
overall token bucket), as `workqueue.DefaultControllerRateLimiter()` does; `forget` resets the
item's requeue count.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from controller.clock import Clock
from controller.core.token_bucket import BucketSpec, TokenBucket

K = TypeVar("K", bound=Hashable)


class RateLimitingQueue(Generic[K]):
    def __init__(
        self,
        clock: Clock,
        *,
        base_delay_s: float,
        max_delay_s: float,
        overall_qps: float,
        overall_burst: int,
    ) -> None:
        self._clock = clock
        self._base = base_delay_s
        self._max = max_delay_s
        self._overall = TokenBucket(BucketSpec(capacity=overall_burst, refill_per_s=overall_qps), clock.now())
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._failures: dict[K, int] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timers: set[asyncio.TimerHandle] = set()
        # The one pending wait of each item: without it every pass that requeues after N seconds while
        # another wait is pending starts a chain of its own, and the periodic passes multiply.
        self._pending: dict[K, asyncio.TimerHandle] = {}
        self.shut_down = False

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Items taken by a worker and not yet done."""
        return len(self._processing)

    def add(self, item: K) -> None:
        if self.shut_down or item in self._dirty:
            return
        self._dirty.add(item)
        if item in self._processing:
            return
        self._queue.append(item)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def add_after(self, item: K, delay_s: float) -> None:
        if self.shut_down:
            return
        if delay_s <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay_s
        pending = self._pending.get(item)
        if pending is not None:
            if pending.when() <= ready_at:
                return  # one wait per item, the earliest (client-go's delaying queue does the same)
            pending.cancel()
            self._timers.discard(pending)

        def fire() -> None:
            self._timers.discard(handle)
            if self._pending.get(item) is handle:
                del self._pending[item]
            self.add(item)

        handle = loop.call_at(ready_at, fire)
        self._timers.add(handle)
        self._pending[item] = handle

    def when(self, item: K) -> float:
        """The rate limiter's delay for the item's next requeue (counts the requeue)."""
        failures = self._failures.get(item, 0)
        self._failures[item] = failures + 1
        per_item = min(self._max, self._base * (2.0**failures)) if failures < 64 else self._max
        overall = self._overall.reserve(self._clock.now())
        return max(per_item, overall)

    def add_rate_limited(self, item: K) -> None:
        self.add_after(item, self.when(item))

    def num_requeues(self, item: K) -> int:
        return self._failures.get(item, 0)

    def forget(self, item: K) -> None:
        self._failures.pop(item, None)

    async def get(self) -> K:
        while not self._queue:
            if self.shut_down:
                raise asyncio.CancelledError()
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        return item

    def done(self, item: K) -> None:
        self._processing.discard(item)
        if item in self._dirty:
            self._queue.append(item)
            self._wake_one()

    def shutdown(self) -> None:
        self.shut_down = True
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self._pending.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.cancel()
        self._waiters.clear()
