"""The one writer of PodNetworkAllocation status and finalizers: conditional writes, cache after success.

Every write carries the resourceVersion the decision was made on, so a write based on a stale view is
refused (409) instead of overwriting what someone else wrote; the writer then re-reads the object
into the cache and the pass is repeated on the fresh view. The cache changes only after the server
accepted a write, and takes the server's answer, never what we meant to write.
"""

from __future__ import annotations

from controller.k8s.kube_api import Conflict, NotFound
from controller.k8s.objects import JsonObject, NnpView, PnaView
from controller.k8s.reconcilers.context import Context
from controller.k8s.resources import NODE_NETWORK_POOL, POD_NETWORK_ALLOCATION


async def refresh_pna(ctx: Context, pna: PnaView) -> PnaView | None:
    body = await ctx.kube.get(POD_NETWORK_ALLOCATION, pna.name, pna.namespace)
    key = (pna.namespace, pna.name)
    if body is None:
        ctx.state.pnas.remove(key)
        return None
    ctx.state.pnas.upsert(ctx.state.pnas.parse(body))
    return ctx.state.pnas.get(key)


async def patch_pna(
    ctx: Context, pna: PnaView, patch: JsonObject, *, subresource: str = ""
) -> PnaView | None:
    """A merge patch conditional on `pna`'s resourceVersion. None: the PNA is gone. Raises `Conflict`
    (after re-reading the PNA into the cache) when it changed since `pna` was read."""
    conditional = {
        **patch,
        "metadata": {**patch.get("metadata", {}), "resourceVersion": pna.resource_version},
    }
    key = (pna.namespace, pna.name)
    try:
        updated = await ctx.kube.merge_patch(
            POD_NETWORK_ALLOCATION, pna.name, conditional, pna.namespace, subresource=subresource
        )
    except NotFound:
        ctx.state.pnas.remove(key)
        return None
    except Conflict:
        await refresh_pna(ctx, pna)
        raise
    meta = updated.get("metadata") or {}
    if meta.get("deletionTimestamp") and not meta.get("finalizers"):
        ctx.state.pnas.remove(key, str(meta.get("resourceVersion") or ""))  # the last finalizer went
        return None
    ctx.state.pnas.upsert(ctx.state.pnas.parse(updated))
    return ctx.state.pnas.get(key)


async def write_pna_status(ctx: Context, pna: PnaView, status: JsonObject) -> PnaView | None:
    return await patch_pna(ctx, pna, {"status": status}, subresource="status")


async def set_pna_finalizers(ctx: Context, pna: PnaView, finalizers: list[str]) -> PnaView | None:
    return await patch_pna(ctx, pna, {"metadata": {"finalizers": finalizers}})


async def patch_nnp(
    ctx: Context, nnp: NnpView, patch: JsonObject, *, subresource: str = ""
) -> NnpView | None:
    conditional = {
        **patch,
        "metadata": {**patch.get("metadata", {}), "resourceVersion": nnp.resource_version},
    }
    try:
        updated = await ctx.kube.merge_patch(
            NODE_NETWORK_POOL, nnp.name, conditional, subresource=subresource
        )
    except NotFound:
        ctx.state.nnps.remove(nnp.name)
        return None
    except Conflict:
        body = await ctx.kube.get(NODE_NETWORK_POOL, nnp.name)
        if body is None:
            ctx.state.nnps.remove(nnp.name)
        else:
            ctx.state.nnps.upsert(NnpView.from_k8s(body))
        raise
    meta = updated.get("metadata") or {}
    if meta.get("deletionTimestamp") and not meta.get("finalizers"):
        ctx.state.nnps.remove(nnp.name, str(meta.get("resourceVersion") or ""))
        return None
    ctx.state.nnps.upsert(NnpView.from_k8s(updated))
    return ctx.state.nnps.get(nnp.name)
