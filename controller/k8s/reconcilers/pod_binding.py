"""Pods -> PodNetworkAllocations: the PNAs that should exist against those that do.

One PNA per pod that needs an address: scheduled, not on the host network, not finished, in a
managed namespace. The PNA's mode and groups are derived here from the pod and its policies, never
read from a PNA spec someone wrote by hand; once a PNA holds resources its spec follows what it holds,
so a policy or namespace change applies to new pods and never pulls a running pod's address.

A PNA whose pod is gone (or is another pod of the same name, a different UID) is deleted: without a
controller-manager nothing else would remove it. Before that, the pod's absence is confirmed with a
GET, so a stale cache can never release a live pod's address; only a pod whose DELETED event the watch
delivered (its UID is gone for good) is not asked about again: in a rollout, that GET was one request
in five per replaced pod under the client's rate limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controller.core.allocation_model import AllocationMode
from controller.core.pod_selection import LabelSelector, allocation_mode, security_groups_for, shares_eni
from controller.k8s.kube_api import AlreadyExists
from controller.k8s.objects import JsonObject, PnaSpec, PnaView, PodView, PolicyView
from controller.k8s.pna_mapping import new_pna, read_status
from controller.k8s.reconcilers.context import Context, logger
from controller.k8s.resources import POD_NETWORK_ALLOCATION, PODS


def desired_spec(
    pod: PodView | None,
    existing: PnaView | None,
    *,
    namespace_labels: Mapping[str, str] | None,
    policies: Iterable[PolicyView],
    service_account_labels: Mapping[str, str],
    selector: LabelSelector,
    prefix_delegation: bool,
    shared_eni: bool = False,
) -> PnaSpec | None:
    """The spec the pod's PNA should have, or None when the pod should have no PNA. Pure."""
    if pod is None or pod.terminal or not pod.node_name or pod.host_network:
        return None
    same_pod = existing is not None and existing.spec.pod_uid == pod.uid
    held = read_status(existing).resources if existing is not None and same_pod else None
    if held is not None:
        grouped = (AllocationMode.BRANCH_ENI, AllocationMode.SHARED_ENI)
        groups = tuple(sorted(held.security_group_ids)) if held.mode in grouped else ()
        return PnaSpec(
            pod_name=pod.name,
            pod_uid=pod.uid,
            node_name=pod.node_name,
            mode=held.mode,
            security_group_ids=groups,
        )
    if pod.deleting:
        return existing.spec if existing is not None and same_pod else None  # no new PNA for a leaving pod
    if namespace_labels is None or not selector.matches(namespace_labels):
        return None
    body = {"metadata": {"namespace": pod.namespace, "labels": pod.labels}}
    matched = [p.policy for p in policies]
    groups = security_groups_for(body, matched, service_account_labels)
    shared = bool(groups) and shares_eni(body, matched, service_account_labels, everywhere=shared_eni)
    return PnaSpec(
        pod_name=pod.name,
        pod_uid=pod.uid,
        node_name=pod.node_name,
        mode=allocation_mode(groups, prefix_delegation, shared=shared),
        security_group_ids=groups,
    )


def involved(pna: PnaView) -> JsonObject:
    """The object reference an Event about this PNA names."""
    return {
        "apiVersion": POD_NETWORK_ALLOCATION.api_version,
        "kind": POD_NETWORK_ALLOCATION.kind,
        "metadata": {"name": pna.name, "namespace": pna.namespace, "uid": pna.uid},
    }


class PodBinding:
    """Creates, corrects and deletes PNAs so that exactly the pods that need one have one."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def desired(self, pod: PodView | None, existing: PnaView | None) -> PnaSpec | None:
        ctx = self.ctx
        namespace = pod.namespace if pod is not None else ""
        ns = ctx.state.namespaces.get(namespace)
        return desired_spec(
            pod,
            existing,
            namespace_labels=ns.labels if ns is not None else None,
            policies=ctx.state.policies_in(namespace),
            service_account_labels=(
                ctx.state.service_account_labels(namespace, pod.service_account) if pod is not None else {}
            ),
            selector=ctx.selector,
            prefix_delegation=ctx.config.pool.enable_prefix_delegation,
            shared_eni=ctx.config.pool.shared_eni_for_pod_sg,
        )

    async def reconcile(self, key: tuple[str, str]) -> PnaView | None:
        """Bring the PNA of `key` in line with its pod; returns the PNA as it now stands (None: none)."""
        ctx = self.ctx
        pod = ctx.state.pods.get(key)
        existing = ctx.state.pnas.get(key)
        if (
            existing is not None
            and not existing.deleting
            and (pod is None or pod.uid != existing.spec.pod_uid)
            and not ctx.state.pods.saw_deleted(existing.spec.pod_uid)
        ):
            # The cache says the PNA's pod is gone, but not from its DELETED event: ask the server.
            pod = await self.confirm_pod(key, pod)
        desired = self.desired(pod, existing)
        if existing is None:
            return await self._create(pod, desired) if pod is not None and desired is not None else None
        if existing.deleting:
            return existing
        if desired is None or existing.spec.pod_uid != desired.pod_uid:
            why = (
                "its pod is gone" if pod is None or pod.uid != existing.spec.pod_uid else "its pod needs none"
            )
            return await self._delete(existing, why)
        if existing.spec != desired:
            return await self._correct(existing, desired)
        return existing

    async def confirm_pod(self, key: tuple[str, str], cached: PodView | None) -> PodView | None:
        """Ask the API server, not the cache, before deciding a pod is gone."""
        body = await self.ctx.kube.get(PODS, key[1], key[0])
        if body is None:
            if cached is not None:
                self.ctx.state.pods.remove(key)
            return None
        pod = self.ctx.state.pods.parse(body)
        self.ctx.state.pods.upsert(pod)
        return self.ctx.state.pods.get(key) or pod

    async def _create(self, pod: PodView, spec: PnaSpec) -> PnaView | None:
        ctx = self.ctx
        try:
            created = await ctx.kube.create(POD_NETWORK_ALLOCATION, new_pna(pod=pod, spec=spec))
        except AlreadyExists:
            found = await ctx.kube.get(POD_NETWORK_ALLOCATION, pod.name, pod.namespace)
            if found is None:
                return None
            created = found
        view = ctx.state.pnas.parse(created)
        ctx.state.pnas.upsert(view)
        ctx.first_seen.setdefault(view.allocation_key, ctx.clock.now())
        return ctx.state.pnas.get((view.namespace, view.name))

    async def _delete(self, pna: PnaView, why: str) -> PnaView | None:
        ctx = self.ctx
        logger.info("deleting PodNetworkAllocation %s/%s: %s", pna.namespace, pna.name, why)
        body = await ctx.kube.delete(POD_NETWORK_ALLOCATION, pna.name, pna.namespace, uid=pna.uid)
        if body is None:
            ctx.state.pnas.remove((pna.namespace, pna.name))
            return None
        view = ctx.state.pnas.parse(body)
        ctx.state.pnas.upsert(view)
        return ctx.state.pnas.get((view.namespace, view.name))

    async def _correct(self, pna: PnaView, spec: PnaSpec) -> PnaView | None:
        """Put back the spec derived from the pod (a hand edit, or a policy change before allocation)."""
        ctx = self.ctx
        updated = await ctx.kube.merge_patch(
            POD_NETWORK_ALLOCATION,
            pna.name,
            {"metadata": {"resourceVersion": pna.resource_version}, "spec": spec.to_k8s()},
            pna.namespace,
        )
        view = ctx.state.pnas.parse(updated)
        ctx.state.pnas.upsert(view)
        return ctx.state.pnas.get((view.namespace, view.name))
