"""The Kubernetes calls the controller makes: asynchronous HTTP on the controller's own event loop.

Raw JSON in and out (no model round trip), every request with a timeout, and every failure turned into
one of a few typed errors the reconcilers act on: `NotFound`, `Conflict` (a stale resourceVersion or a
failed precondition), `AlreadyExists`, `Invalid` (422), `Forbidden`, and `Unavailable` (5xx, 429,
timeouts, connection errors: worth retrying). Writes go to netalloc's own objects, Events and Leases;
there is deliberately no method that names a Pod or a Node as a write target.

The official client loads the credentials (kubeconfig, in-cluster token with its refresh hook, client
certificates); the requests go through aiohttp, as kopf's watches do. The official client is
synchronous: run in a thread pool, every request crossed threads and waited for the GIL behind the
event loop, which made each write several milliseconds slower than the API server's answer.
"""

from __future__ import annotations

import datetime
import json
import ssl
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import aiohttp
from kubernetes import client as k8s

from controller.k8s.resources import EVENTS, LEASES, ResourceRef

JsonObject = dict[str, Any]
FORBIDDEN_WRITE_PLURALS = frozenset({"pods", "nodes"})
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


JsonPage = list[JsonObject]  # named here: inside KubeApi, `list` is a method


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


def error_for(code: int, body: bytes, http_reason: str = "") -> KubeError:
    """The typed error of an HTTP error answer; `body` is the API server's Status, when it sent one."""
    reason, message = http_reason, body.decode("utf-8", "replace")[:2000] or http_reason
    try:
        status = json.loads(body) if body else {}
        if isinstance(status, dict):
            reason = str(status.get("reason") or reason)
            message = str(status.get("message") or message)
    except ValueError:
        pass
    if code == 404:
        return NotFound(code, reason, message)
    if code == 409:
        return (AlreadyExists if reason == "AlreadyExists" else Conflict)(code, reason, message)
    if code == 422:
        return Invalid(code, reason, message)
    if code in (401, 403):
        return Forbidden(code, reason, message)
    return Unavailable(code, reason or "ServerError", message)


def ssl_context(configuration: k8s.Configuration) -> ssl.SSLContext | None:
    """TLS as the kubeconfig or the in-cluster config says: CA, client certificate, verification."""
    if not str(configuration.host or "").startswith("https"):
        return None
    if configuration.verify_ssl:
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
        if configuration.assert_hostname is False:
            context.check_hostname = False
    else:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    return context


class KubePort(Protocol):
    """What the reconcilers ask of the API server. `KubeApi` is the real one."""

    async def list(self, ref: ResourceRef, namespace: str | None = None) -> tuple[list[JsonObject], str]: ...

    def pages(
        self, ref: ResourceRef, namespace: str | None = None
    ) -> AsyncIterator[tuple[JsonPage, str]]: ...

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
    """`KubePort` over aiohttp with the official client's credentials; counts every write by (verb, resource).

    The HTTP session is made on first use, on the loop that uses it; `close()` ends it.
    """

    def __init__(
        self,
        configuration: k8s.Configuration,
        *,
        component: str = "netalloc",
        on_write: Callable[[str, str], None] | None = None,
        request_timeout_s: float = 10.0,
        page_size: int = 100,
        connections: int = 32,
    ) -> None:
        self.configuration = configuration  # read on every request: a refreshed token is used at once
        self.component = component
        self.writes: Counter[tuple[str, str]] = Counter()
        self.on_write = on_write  # e.g. the Prometheus counter of Kubernetes writes
        self.request_timeout_s = request_timeout_s
        # 100, not 500: a page of 500 PNAs decodes to about 9 MiB of small objects, and the heap keeps the
        # arenas a resync's page grew into (the PNA memory figure fell from 35-38 to 29-36 MiB).
        self.page_size = page_size
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def for_configuration(cls, configuration: k8s.Configuration, **kwargs: Any) -> KubeApi:
        return cls(configuration, **kwargs)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None

    def _count(self, verb: str, resource: str) -> None:
        self.writes[(verb, resource)] += 1
        if self.on_write is not None:
            self.on_write(verb, resource)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.connections, ssl=ssl_context(self.configuration) or False
            )
            self._session = aiohttp.ClientSession(connector=connector, json_serialize=json.dumps)
        return self._session

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.component}
        bearer = self.configuration.auth_settings().get("BearerToken")  # runs the token refresh hook
        if bearer and bearer.get("value"):
            headers["Authorization"] = str(bearer["value"])
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        timeout_s: float | None = None,
    ) -> JsonObject:
        data = None if body is None else json.dumps(body).encode()
        url = str(self.configuration.host).rstrip("/") + path
        timeout = aiohttp.ClientTimeout(total=timeout_s if timeout_s is not None else self.request_timeout_s)
        try:
            async with self._http().request(
                method,
                url,
                params=query or None,
                data=data,
                headers=self._headers(content_type if data is not None else None),
                timeout=timeout,
                proxy=self.configuration.proxy or None,
                server_hostname=self.configuration.tls_server_name or None,
            ) as response:
                raw = await response.read()
                status, reason = response.status, response.reason or ""
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Unavailable(0, type(exc).__name__, str(exc) or "no answer in time") from exc
        if status >= 400:
            raise error_for(status, raw, reason)
        try:
            decoded = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise Unavailable(status, "BadResponse", f"not JSON: {raw[:200]!r}") from exc
        return decoded if isinstance(decoded, dict) else {"value": decoded}

    # ----- the generic verbs ----------------------------------------------------------------------
    async def list(self, ref: ResourceRef, namespace: str | None = None) -> tuple[list[JsonObject], str]:
        """Every object (paged), and the list's resourceVersion (the point in time it shows)."""
        items: JsonPage = []
        version = ""
        async for page, page_version in self.pages(ref, namespace):
            items.extend(page)
            version = page_version
        return items, version

    async def pages(
        self, ref: ResourceRef, namespace: str | None = None
    ) -> AsyncIterator[tuple[JsonPage, str]]:
        """The list a page at a time, each with the list's resourceVersion (every page shows that
        point in time): a relist of 10,000 objects never holds more than a page of bodies."""
        token = ""
        version = ""
        while True:
            query = [("limit", str(self.page_size))] + ([("continue", token)] if token else [])
            page = await self._request("GET", ref.collection_path(namespace), query=query)
            items: JsonPage = []
            for item in page.get("items") or []:
                item.setdefault("apiVersion", ref.api_version)
                item.setdefault("kind", ref.kind)
                items.append(item)
            meta = page.get("metadata") or {}
            version = version or str(meta.get("resourceVersion") or "")
            token = str(meta.get("continue") or "")
            yield items, version
            if not token:
                return

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
        """The Lease as JSON (camelCase keys, times as RFC 3339 strings); None when there is none."""
        try:
            return await self._request(
                "GET", f"{LEASE_PATH.format(namespace=namespace)}/{name}", timeout_s=timeout_s
            )
        except NotFound:
            return None

    async def create_lease(
        self, namespace: str, body: JsonObject, *, timeout_s: float | None = None
    ) -> JsonObject | None:
        """Create; None if a Lease of that name already exists (another candidate got there first)."""
        self._count("create", LEASES.plural)
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **body}
        try:
            return await self._request(
                "POST", LEASE_PATH.format(namespace=namespace), body=lease, timeout_s=timeout_s
            )
        except (AlreadyExists, Conflict):
            return None

    async def replace_lease(
        self, namespace: str, name: str, body: JsonObject, *, timeout_s: float | None = None
    ) -> JsonObject | None:
        """PUT; None on 409 (the body's ``metadata.resourceVersion`` is stale: someone else wrote first).

        A missing Lease raises `NotFound`.
        """
        self._count("update", LEASES.plural)
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", **body}
        try:
            return await self._request(
                "PUT", f"{LEASE_PATH.format(namespace=namespace)}/{name}", body=lease, timeout_s=timeout_s
            )
        except (Conflict, AlreadyExists):
            return None
