"""netalloc's own runtime in the simulation: its `KubePort` and its watches over the simulated API server.

The crd side of `netalloc compare` runs `controller.k8s.runtime.ControllerRuntime` itself: its caches,
its one work queue with per-item backoff, its workers and reconcilers. This module is the only glue: it
turns the simulated server's objects into the JSON bodies a kube-apiserver would send, and its errors
into the runtime's typed ones. Every request goes through one `ApiClient`, so it pays the same client
rate limit and latency as the baseline's requests; the watches stand for kopf's.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from controller.k8s.kube_api import (
    AlreadyExists,
    Conflict,
    Invalid,
    JsonObject,
    JsonPage,
    KubeError,
    NotFound,
)
from controller.k8s.resources import ResourceRef
from controller.ports.ec2 import InstanceInfo
from controller.research.api_server import (
    AlreadyExistsError,
    ApiClient,
    ApiError,
    ApiServer,
    ConflictError,
    InvalidError,
    KubeObject,
    NotFoundApiError,
    Watch,
)

PAGE_SIZE = 500  # KubeApi's page size
EventSink = Callable[[str, str | None, Mapping[str, Any]], None]  # ControllerRuntime.on_event


def _timestamp(seconds: float) -> str:
    """Virtual seconds as an RFC 3339 time (the epoch is the simulation's start)."""
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def zone_lookup(instances: Callable[[], Iterable[InstanceInfo]]) -> Callable[[str], str]:
    """instance id -> its availability zone, read from the VPC once per instance."""
    zones: dict[str, str] = {}

    def zone_of(instance_id: str) -> str:
        if instance_id not in zones:
            zones.update((i.instance_id, i.availability_zone) for i in instances())
        return zones.get(instance_id, "unknown")

    return zone_of


def _typed(error: ApiError) -> KubeError:
    kind: type[KubeError] = KubeError
    if isinstance(error, NotFoundApiError):
        kind = NotFound
    elif isinstance(error, AlreadyExistsError):
        kind = AlreadyExists
    elif isinstance(error, ConflictError):
        kind = Conflict
    elif isinstance(error, InvalidError):
        kind = Invalid
    return kind(error.code, error.reason, error.message)


class SimKube:
    """`KubePort` over the simulated API server, for one client (one rate limit, its requests counted)."""

    def __init__(self, api: ApiServer, client: ApiClient, *, zone_of: Callable[[str], str]) -> None:
        self.api = api
        self.client = client
        self._zone_of = zone_of  # instance id -> availability zone, for the Node's providerID
        self._watches: list[Watch] = []

    # ----- bodies --------------------------------------------------------------------------------------
    def body(self, ref: ResourceRef, obj: KubeObject) -> JsonObject:
        """The object as a kube-apiserver sends it."""
        meta: dict[str, Any] = {
            "name": obj.name,
            "uid": obj.uid,
            "resourceVersion": str(obj.resource_version),
            "creationTimestamp": _timestamp(obj.created_at),
        }
        if ref.namespaced:
            meta["namespace"] = obj.namespace
        if obj.labels:
            meta["labels"] = dict(obj.labels)
        if obj.annotations:
            meta["annotations"] = dict(obj.annotations)
        for name, value in obj.meta.items():
            meta[name] = _timestamp(value) if name == "deletionTimestamp" else value
        spec = dict(obj.spec)
        provider = spec.get("providerID")
        if ref.kind == "Node" and isinstance(provider, str) and provider.startswith("i-"):
            # The simulated Node carries the bare instance id; a kubelet on EC2 writes aws:///zone/id.
            spec["providerID"] = f"aws:///{self._zone_of(provider)}/{provider}"
        body: JsonObject = {"apiVersion": ref.api_version, "kind": ref.kind, "metadata": meta, "spec": spec}
        if obj.status:
            body["status"] = dict(obj.status)
        return body

    @staticmethod
    def _object(ref: ResourceRef, body: Mapping[str, Any]) -> KubeObject:
        meta = dict(body.get("metadata") or {})
        extra = {
            k: v
            for k, v in meta.items()
            if k in ("finalizers", "ownerReferences") and v is not None  # what the server keeps as given
        }
        return KubeObject(
            kind=ref.kind,
            namespace=str(meta.get("namespace") or "") if ref.namespaced else "",
            name=str(meta["name"]),
            labels=dict(meta.get("labels") or {}),
            annotations=dict(meta.get("annotations") or {}),
            spec=dict(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
            meta=extra,
        )

    # ----- KubePort ------------------------------------------------------------------------------------
    async def list(self, ref: ResourceRef, namespace: str | None = None) -> tuple[list[JsonObject], str]:
        items: list[JsonObject] = []
        version = ""
        async for page, page_version in self.pages(ref, namespace):
            items.extend(page)
            version = page_version
        return items, version

    async def pages(
        self, ref: ResourceRef, namespace: str | None = None
    ) -> AsyncIterator[tuple[JsonPage, str]]:
        objects = sorted(
            (
                o
                for o in await self.client.list_objects(ref.kind)
                if namespace is None or o.namespace == namespace
            ),
            key=lambda o: (o.namespace, o.name),
        )
        version = str(self.api.resource_version)
        for start in range(0, max(len(objects), 1), PAGE_SIZE):
            if start:
                await self.client.list_objects(ref.kind)  # the next page is another request
            yield [self.body(ref, o) for o in objects[start : start + PAGE_SIZE]], version

    async def get(self, ref: ResourceRef, name: str, namespace: str | None = None) -> JsonObject | None:
        try:
            return self.body(ref, await self.client.get(ref.kind, namespace or "", name))
        except NotFoundApiError:
            return None

    async def create(self, ref: ResourceRef, body: JsonObject) -> JsonObject:
        try:
            return self.body(ref, await self.client.create(self._object(ref, body)))
        except ApiError as error:
            raise _typed(error) from error

    async def merge_patch(
        self,
        ref: ResourceRef,
        name: str,
        patch: JsonObject,
        namespace: str | None = None,
        *,
        subresource: str = "",
    ) -> JsonObject:
        metadata = dict(patch.get("metadata") or {})
        version = metadata.pop("resourceVersion", None)
        if subresource == "status":
            server_patch: dict[str, Any] = {"status": patch.get("status") or {}}
        else:
            server_patch = {k: v for k, v in patch.items() if k in ("spec",)}
            if metadata:
                server_patch["metadata"] = metadata
        try:
            stored = await self.client.merge_patch(
                (ref.kind, namespace or "", name),
                server_patch,
                resource_version=int(version) if version else None,
            )
        except ApiError as error:
            raise _typed(error) from error
        return self.body(ref, stored)

    async def delete(
        self, ref: ResourceRef, name: str, namespace: str | None = None, *, uid: str | None = None
    ) -> JsonObject | None:
        try:
            gone = await self.client.delete((ref.kind, namespace or "", name), uid=uid)
        except NotFoundApiError:
            return None
        except ApiError as error:
            raise _typed(error) from error
        if self.api.peek(ref.kind, namespace or "", name) is gone:  # finalizers keep it for now
            return self.body(ref, gone)
        return None

    async def post_event(
        self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str
    ) -> None:
        meta = involved.get("metadata") or {}
        key = (str(involved.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", "")))
        self.client.event(key, reason, message)

    # ----- watches (kopf's part) -------------------------------------------------------------------------
    def watch(self, refs: Mapping[str, ResourceRef], sink: EventSink) -> None:
        """Deliver every change of these kinds to `sink` as kopf does: (plural, event type, body)."""
        for plural, ref in refs.items():

            def deliver(
                event_type: str, obj: KubeObject, plural: str = plural, ref: ResourceRef = ref
            ) -> None:
                sink(plural, event_type, self.body(ref, obj))

            self._watches.append(self.api.watch(ref.kind, deliver))

    def stop_watches(self) -> None:
        for watch in self._watches:
            watch.stop()
        self._watches.clear()
