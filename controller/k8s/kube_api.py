"""The Kubernetes calls the controller makes, through the official client, off the event loop.

Raw JSON in and out (no model round trip), every request with a timeout, and every failure turned into
one of a few typed errors the reconcilers act on: `NotFound`, `Conflict` (a stale resourceVersion or a
failed precondition), `AlreadyExists`, `Invalid` (422), `Forbidden`, and `Unavailable` (5xx, 429,
timeouts, connection errors: worth retrying). Writes go to netalloc's own objects, Events and Leases;
there is deliberately no method that names a Pod or a Node as a write target.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from controller.k8s.resources import EVENTS, LEASES, ResourceRef

T = TypeVar("T")
JsonObject = dict[str, Any]
FORBIDDEN_WRITE_PLURALS = frozenset({"pods", "nodes"})


class KubeError(Exception):
    """An API request failed; `code` is the HTTP status (0 when no answer came back)."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    """409 Conflict: the resourceVersion or UID precondition did not hold. Re-read and try again."""


class AlreadyExists(KubeError):
    pass


class Invalid(KubeError):
    """422: the server refused the object; `message` names the fields."""


class Forbidden(KubeError):
    pass


class Unavailable(KubeError):
    """No usable answer (5xx, 429, timeout, connection error): nothing is known; retry with backoff."""


def error_from(exc: BaseException) -> KubeError:
    if isinstance(exc, ApiException):
        reason, message = exc.reason or "", str(exc.body or exc.reason or "")
        try:
            status = json.loads(exc.body) if exc.body else {}
            reason = status.get("reason") or reason
            message = status.get("message") or message
        except (ValueError, TypeError, AttributeError):
            pass
        code = int(exc.status or 0)
        if code == 404:
            return NotFound(code, reason, message)
        if code == 409:
            return (AlreadyExists if reason == "AlreadyExists" else Conflict)(code, reason, message)
        if code == 422:
            return Invalid(code, reason, message)
        if code in (401, 403):
            return Forbidden(code, reason, message)
        return Unavailable(code, reason or "ServerError", message)
    return Unavailable(0, type(exc).__name__, str(exc))


class KubePort(Protocol):
    """What the reconcilers ask of the API server. `KubeApi` is the real one."""

    async def list(self, ref: ResourceRef, namespace: str | None = None) -> tuple[list[JsonObject], str]: ...

    async def get(self, ref: ResourceRef, name: str, namespace: str | None = None) -> JsonObject | None: ...

    async def create(self, ref: ResourceRef, body: JsonObject) -> JsonObject: ...

    async def merge_patch(
        self,
        ref: ResourceRef,
        name: str,
        patch: JsonObject,
        namespace: str | None = None,
        *,
        subresource: str = "",
    ) -> JsonObject: ...

    async def delete(
        self, ref: ResourceRef, name: str, namespace: str | None = None, *, uid: str | None = None
    ) -> JsonObject | None: ...

    async def post_event(
        self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str
    ) -> None: ...


class KubeApi:
    """`KubePort` over `kubernetes.client`, with a count of every write by (verb, resource)."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        threads: int = 8,
        component: str = "netalloc",
        on_write: Callable[[str, str], None] | None = None,
        request_timeout_s: float = 10.0,
        page_size: int = 500,
    ) -> None:
        self.api_client = api_client
        self.coordination = k8s.CoordinationV1Api(api_client)
        self.component = component
        self.writes: Counter[tuple[str, str]] = Counter()
        self.on_write = on_write  # e.g. the Prometheus counter of Kubernetes writes
        self.request_timeout_s = request_timeout_s
        self.page_size = page_size
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube-api")

    @classmethod
    def for_configuration(cls, configuration: k8s.Configuration, **kwargs: Any) -> KubeApi:
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, 16)
        return cls(k8s.ApiClient(configuration), **kwargs)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api_client.close()

    def _count(self, verb: str, resource: str) -> None:
        self.writes[(verb, resource)] += 1
        if self.on_write is not None:
            self.on_write(verb, resource)

    async def _run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn)
        except (ApiException, urllib3.exceptions.HTTPError, OSError, TimeoutError) as exc:
            raise error_from(exc) from exc

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        def call() -> JsonObject:
            response = self.api_client.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": "application/json", "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=self.request_timeout_s,
            )
            data = response[0].data if isinstance(response, tuple) else response.data
            decoded: JsonObject = json.loads(data) if data else {}
            return decoded

        return await self._run(call)

    # ----- the generic verbs ----------------------------------------------------------------------
    async def list(self, ref: ResourceRef, namespace: str | None = None) -> tuple[list[JsonObject], str]:
        """Every object (paged), and the list's resourceVersion (the point in time it shows)."""
        items: list[JsonObject] = []
        token = ""
        version = ""
        while True:
            query = [("limit", str(self.page_size))] + ([("continue", token)] if token else [])
            page = await self._request("GET", ref.collection_path(namespace), query=query)
            for item in page.get("items") or []:
                item.setdefault("apiVersion", ref.api_version)
                item.setdefault("kind", ref.kind)
                items.append(item)
            meta = page.get("metadata") or {}
            version = version or str(meta.get("resourceVersion") or "")
            token = str(meta.get("continue") or "")
            if not token:
                return items, version

    async def get(self, ref: ResourceRef, name: str, namespace: str | None = None) -> JsonObject | None:
        try:
            return await self._request("GET", ref.object_path(name, namespace))
        except NotFound:
            return None

    async def create(self, ref: ResourceRef, body: JsonObject) -> JsonObject:
        self._guard(ref)
        self._count("create", ref.plural)
        namespace = (body.get("metadata") or {}).get("namespace") if ref.namespaced else None
        return await self._request("POST", ref.collection_path(namespace), body=body)

    async def merge_patch(
        self,
        ref: ResourceRef,
        name: str,
        patch: JsonObject,
        namespace: str | None = None,
        *,
        subresource: str = "",
    ) -> JsonObject:
        """A JSON merge patch; put `metadata.resourceVersion` in it to make it conditional (409 if stale)."""
        self._guard(ref)
        self._count("patch", f"{ref.plural}/{subresource}" if subresource else ref.plural)
        return await self._request(
            "PATCH",
            ref.object_path(name, namespace, subresource),
            body=patch,
            content_type="application/merge-patch+json",
        )

    async def delete(
        self, ref: ResourceRef, name: str, namespace: str | None = None, *, uid: str | None = None
    ) -> JsonObject | None:
        """Delete (only the object with `uid`, if given). Returns the object if finalizers keep it for
        now (it carries `deletionTimestamp`), None if it is gone; gone already counts as done."""
        self._guard(ref)
        self._count("delete", ref.plural)
        body: JsonObject = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            answer = await self._request("DELETE", ref.object_path(name, namespace), body=body)
        except NotFound:
            return None
        meta = answer.get("metadata") or {}
        if answer.get("kind") == ref.kind and meta.get("deletionTimestamp") and meta.get("finalizers"):
            return answer
        return None

    @staticmethod
    def _guard(ref: ResourceRef) -> None:
        if ref.group == "" and ref.plural in FORBIDDEN_WRITE_PLURALS:
            raise PermissionError(f"netalloc never writes {ref.plural}")

    # ----- Events ---------------------------------------------------------------------------------
    async def post_event(
        self, involved: Mapping[str, Any], *, event_type: str, reason: str, message: str
    ) -> None:
        """Best effort: a refused Event never fails the work it reports."""
        meta = involved.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name', 'object')}.{uuid.uuid4().hex[:12]}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": self.component},
            "reportingComponent": self.component,
        }
        self._count("create", EVENTS.plural)
        try:
            await self._request("POST", EVENTS.collection_path(namespace), body=event)
        except KubeError:
            return

    # ----- Leases (leader election) ---------------------------------------------------------------
    async def get_lease(
        self, namespace: str, name: str, *, timeout_s: float | None = None
    ) -> JsonObject | None:
        """The Lease as JSON (camelCase keys, times as ISO strings); None when there is none."""
        try:
            lease = await self._run(
                lambda: self.coordination.read_namespaced_lease(name, namespace, _request_timeout=timeout_s)
            )
        except NotFound:
            return None
        found: JsonObject = self.api_client.sanitize_for_serialization(lease)
        return found

    async def create_lease(
        self, namespace: str, body: JsonObject, *, timeout_s: float | None = None
    ) -> JsonObject | None:
        """Create; None if a Lease of that name already exists (another candidate got there first)."""
        self._count("create", LEASES.plural)
        try:
            lease = await self._run(
                lambda: self.coordination.create_namespaced_lease(namespace, body, _request_timeout=timeout_s)
            )
        except (AlreadyExists, Conflict):
            return None
        created: JsonObject = self.api_client.sanitize_for_serialization(lease)
        return created

    async def replace_lease(
        self, namespace: str, name: str, body: JsonObject, *, timeout_s: float | None = None
    ) -> JsonObject | None:
        """PUT; None on 409 (the body's ``metadata.resourceVersion`` is stale: someone else wrote first).

        A missing Lease raises `NotFound`.
        """
        self._count("update", LEASES.plural)
        try:
            lease = await self._run(
                lambda: self.coordination.replace_namespaced_lease(
                    name, namespace, body, _request_timeout=timeout_s
                )
            )
        except (Conflict, AlreadyExists):
            return None
        replaced: JsonObject = self.api_client.sanitize_for_serialization(lease)
        return replaced
