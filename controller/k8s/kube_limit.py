"""An opt-in client-side limit on the controller's Kubernetes requests (`KUBE_CLIENT_QPS`).

netalloc ships with none, as controller-runtime does since kubernetes-sigs/controller-runtime#3119: SIG
API Machinery advises relying on the API server's Priority and Fairness (APF, on by default since 1.20)
rather than an open-loop token bucket in each client. A client bucket only makes pods wait when the
server has room: 1,000 pods need 2,000 writes, 100 s at RC's 20 QPS. A cluster without APF, or an
operator who wants a hard ceiling, sets one; it then works as client-go's does: every request (each page
of a list too) takes a token, and callers queue in arrival order. Events, best effort and posted in the
background, take tokens from a bucket of their own with the same limit (as RC's event recorder has its
own clientset), so a burst of them never delays an allocation's writes.

Leases are not limited: leader election renews through `KubeApi` directly, so a burst of writes never
delays a renewal into a lost lease.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from controller.adapters.rate_limiter import RateLimiter
from controller.clock import Clock
from controller.k8s.kube_api import JsonObject, JsonPage, KubePort
from controller.k8s.resources import ResourceRef


class RateLimitedKube:
    """`KubePort` with a token bucket in front of every request: QPS is the refill, burst the capacity."""

    def __init__(self, inner: KubePort, *, qps: float, burst: int, clock: Clock) -> None:
        self.inner = inner
        self.limiter = RateLimiter.per_second(qps, burst, clock)
        self.event_limiter = RateLimiter.per_second(qps, burst, clock)

    async def list(self, ref: ResourceRef, namespace: str | None = None) -> tuple[list[JsonObject], str]:
        await self.limiter.acquire()
        return await self.inner.list(ref, namespace)

    async def pages(
        self, ref: ResourceRef, namespace: str | None = None
    ) -> AsyncIterator[tuple[JsonPage, str]]:
        pages = aiter(self.inner.pages(ref, namespace))
        while True:
            await self.limiter.acquire()  # one request per page
            try:
                page = await anext(pages)
            except StopAsyncIteration:
                return
            yield page

    async def get(self, ref: ResourceRef, name: str, namespace: str | None = None) -> JsonObject | None:
        await self.limiter.acquire()
        return await self.inner.get(ref, name, namespace)

    async def create(self, ref: ResourceRef, body: JsonObject) -> JsonObject:
        await self.limiter.acquire()
        return await self.inner.create(ref, body)

    async def merge_patch(
        self,
        ref: ResourceRef,
        name: str,
        patch: JsonObject,
        namespace: str | None = None,
        *,
        subresource: str = "",
    ) -> JsonObject:
        await self.limiter.acquire()
        return await self.inner.merge_patch(ref, name, patch, namespace, subresource=subresource)

    async def delete(
        self, ref: ResourceRef, name: str, namespace: str | None = None, *, uid: str | None = None
    ) -> JsonObject | None:
        await self.limiter.acquire()
        return await self.inner.delete(ref, name, namespace, uid=uid)

    async def post_event(
        self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str
    ) -> None:
        await self.event_limiter.acquire()
        await self.inner.post_event(involved, event_type=event_type, reason=reason, message=message)


def limited(inner: KubePort, *, qps: float | None, burst: int, clock: Clock) -> KubePort:
    """`inner` behind a client-side limit, or `inner` itself when `qps` is None (the default: APF's job)."""
    return inner if qps is None else RateLimitedKube(inner, qps=qps, burst=burst, clock=clock)
