"""The Kubernetes calls the controller makes, through the official client, run off the event loop.

Reads and writes go to netalloc's own objects, Events, and Leases only. There is deliberately no
method here that writes a Pod or a Node.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from controller.k8s.resources import NODE_NETWORK_POOL, POD_NETWORK_ALLOCATION

T = TypeVar("T")
JsonObject = dict[str, Any]


class KubeApi:
    """Async facade over `kubernetes.client`, with a count of every write by (verb, resource)."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        threads: int = 8,
        component: str = "netalloc",
        on_write: Callable[[str, str], None] | None = None,
    ) -> None:
        self.api_client = api_client
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.coordination = k8s.CoordinationV1Api(api_client)
        self.component = component
        self.writes: Counter[tuple[str, str]] = Counter()
        self.on_write = on_write  # e.g. the Prometheus counter of Kubernetes writes
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube-api")

    @classmethod
    def for_configuration(cls, configuration: k8s.Configuration, **kwargs: Any) -> KubeApi:
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, 16)
        return cls(k8s.ApiClient(configuration), **kwargs)

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    def _count(self, verb: str, resource: str) -> None:
        self.writes[(verb, resource)] += 1
        if self.on_write is not None:
            self.on_write(verb, resource)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api_client.close()

    # ----- PodNetworkAllocations ----------------------------------------------------------------
    async def list_pnas(self) -> list[JsonObject]:
        r = POD_NETWORK_ALLOCATION
        found = await self._call(self.custom.list_cluster_custom_object, r.group, r.version, r.plural)
        return list(found.get("items") or [])

    async def create_pna(self, body: JsonObject) -> JsonObject | None:
        """Create; None if it already exists (another event got there first)."""
        r = POD_NETWORK_ALLOCATION
        self._count("create", r.plural)
        try:
            created: JsonObject = await self._call(
                self.custom.create_namespaced_custom_object,
                r.group,
                r.version,
                body["metadata"]["namespace"],
                r.plural,
                body,
            )
            return created
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise

    async def patch_pna_status(self, namespace: str, name: str, status: JsonObject) -> bool:
        """Merge-patch the status subresource; False when the PNA is gone."""
        r = POD_NETWORK_ALLOCATION
        self._count("patch", r.plural + "/status")
        try:
            await self._call(
                self.custom.patch_namespaced_custom_object_status,
                r.group,
                r.version,
                namespace,
                r.plural,
                name,
                {"status": status},
            )
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    async def set_pna_finalizers(self, namespace: str, name: str, finalizers: list[str]) -> None:
        r = POD_NETWORK_ALLOCATION
        self._count("patch", r.plural)
        try:
            await self._call(
                self.custom.patch_namespaced_custom_object,
                r.group,
                r.version,
                namespace,
                r.plural,
                name,
                {"metadata": {"finalizers": finalizers}},
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def delete_pna(self, namespace: str, name: str, *, uid: str | None = None) -> None:
        r = POD_NETWORK_ALLOCATION
        self._count("delete", r.plural)
        body = k8s.V1DeleteOptions(preconditions=k8s.V1Preconditions(uid=uid) if uid else None)
        try:
            await self._call(
                self.custom.delete_namespaced_custom_object,
                r.group,
                r.version,
                namespace,
                r.plural,
                name,
                body=body,
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    # ----- NodeNetworkPools -----------------------------------------------------------------------
    async def create_nnp(self, body: JsonObject) -> JsonObject | None:
        r = NODE_NETWORK_POOL
        self._count("create", r.plural)
        try:
            created: JsonObject = await self._call(
                self.custom.create_cluster_custom_object, r.group, r.version, r.plural, body
            )
            return created
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise

    async def patch_nnp_status(self, name: str, status: JsonObject) -> bool:
        r = NODE_NETWORK_POOL
        self._count("patch", r.plural + "/status")
        try:
            await self._call(
                self.custom.patch_cluster_custom_object_status,
                r.group,
                r.version,
                r.plural,
                name,
                {"status": status},
            )
            return True
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    async def delete_nnp(self, name: str) -> None:
        r = NODE_NETWORK_POOL
        self._count("delete", r.plural)
        try:
            await self._call(self.custom.delete_cluster_custom_object, r.group, r.version, r.plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    # ----- reads for priming caches ---------------------------------------------------------------
    async def list_namespaces(self) -> list[JsonObject]:
        found = await self._call(self.core.list_namespace)
        return [self.api_client.sanitize_for_serialization(ns) for ns in found.items]

    async def list_security_group_policies(self) -> list[JsonObject]:
        try:
            found = await self._call(
                self.custom.list_cluster_custom_object,
                "vpcresources.k8s.aws",
                "v1beta1",
                "securitygrouppolicies",
            )
        except ApiException as exc:
            if exc.status == 404:
                return []  # the SecurityGroupPolicy CRD is not installed: no pod gets a branch ENI
            raise
        return list(found.get("items") or [])

    # ----- Leases (leader election) ---------------------------------------------------------------
    async def get_lease(
        self, namespace: str, name: str, *, timeout_s: float | None = None
    ) -> JsonObject | None:
        """The Lease as JSON (camelCase keys, times as ISO strings); None when there is none."""
        try:
            lease = await self._call(
                self.coordination.read_namespaced_lease, name, namespace, _request_timeout=timeout_s
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        found: JsonObject = self.api_client.sanitize_for_serialization(lease)
        return found

    async def create_lease(
        self, namespace: str, body: JsonObject, *, timeout_s: float | None = None
    ) -> JsonObject | None:
        """Create; None if a Lease of that name already exists (another candidate got there first)."""
        self._count("create", "leases")
        try:
            lease = await self._call(
                self.coordination.create_namespaced_lease, namespace, body, _request_timeout=timeout_s
            )
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise
        created: JsonObject = self.api_client.sanitize_for_serialization(lease)
        return created

    async def replace_lease(
        self, namespace: str, name: str, body: JsonObject, *, timeout_s: float | None = None
    ) -> JsonObject | None:
        """PUT; None on 409 (the body's ``metadata.resourceVersion`` is stale: someone else wrote first).

        A missing Lease raises ``ApiException`` (404).
        """
        self._count("update", "leases")
        try:
            lease = await self._call(
                self.coordination.replace_namespaced_lease, name, namespace, body, _request_timeout=timeout_s
            )
        except ApiException as exc:
            if exc.status == 409:
                return None
            raise
        replaced: JsonObject = self.api_client.sanitize_for_serialization(lease)
        return replaced

    # ----- Events ---------------------------------------------------------------------------------
    async def post_event(
        self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str
    ) -> None:
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = datetime.datetime.now(datetime.UTC)
        event = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(
                name=f"{meta.get('name', 'object')}.{uuid.uuid4().hex[:12]}", namespace=namespace
            ),
            involved_object=k8s.V1ObjectReference(
                api_version=involved.get("apiVersion"),
                kind=involved.get("kind"),
                name=meta.get("name"),
                namespace=meta.get("namespace"),
                uid=meta.get("uid"),
            ),
            type=event_type,
            reason=reason,
            message=message[:1024],
            first_timestamp=now,
            last_timestamp=now,
            count=1,
            source=k8s.V1EventSource(component=self.component),
            reporting_component=self.component,
        )
        self._count("create", "events")
        with contextlib.suppress(ApiException):  # best effort: a refused event never fails an allocation
            await self._call(self.core.create_namespaced_event, namespace, event)
