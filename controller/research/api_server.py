"""A simulated Kubernetes API server: just the parts that decide how pod networking turns out.

- Objects carry a resourceVersion; an update or a patch with a stale one answers 409 Conflict.
- Pod CREATE and UPDATE (including merge patches of the pod itself) pass through the registered
  mutating admission webhooks, then pod-update validation, which answers 422 Invalid with a real
  kube-apiserver's exact message (field notes §1) when the spec changed in a forbidden field.
  The status subresource and bindings do not pass through pod webhooks, as in a real cluster.
- Watches deliver events after a fixed delay, in order.
- Each client has its own QPS token bucket (client-go's flowcontrol) and every request takes a
  latency drawn from a log-normal fitted to RC's measured annotate latency (field notes §2).

Objects are immutable snapshots (`KubeObject`, a frozen dataclass): a write replaces the stored
snapshot, so a client holding an old one keeps a consistent, stale view like an informer cache does.
This is internal simulation state, kept as dataclasses rather than pydantic models for speed at
30,000 pods; everything that leaves the simulation (results, parameters) is pydantic.
"""

from __future__ import annotations

import math
import random
import zlib
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from controller.clock import Clock
from controller.core.token_bucket import BucketSpec, TokenBucket

POD = "Pod"
NODE = "Node"
EVENT = "Event"

# field notes §1: the exact message of a real kube-apiserver (v1.26) for a forbidden pod spec change.
POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`, "
    "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` "
    "(only additions to existing tolerations) or `spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)


def pod_invalid_first_line(name: str) -> str:
    """The first line of a real kube-apiserver's 422 message (captures/pod-update-422.json). kubectl
    prints it with "The " in front; the Status message itself has no such prefix."""
    return f'Pod "{name}" is invalid: spec: Forbidden: {POD_UPDATE_FORBIDDEN}'


def pod_invalid_message(name: str, diff: str = "") -> str:
    """The whole 422 message for pod `name`: the first line, then (after a newline) the server's diff
    of the rejected `core.PodSpec` change. The diff here is a short rendering, not byte-exact."""
    return pod_invalid_first_line(name) + ("\n" + diff if diff else "")


def _go_name(name: str) -> str:
    return name[:1].upper() + name[1:]


def pod_spec_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """A short rendering of what changed, in the shape of the server's `core.PodSpec{...}` diff."""
    lines = ["  core.PodSpec{"]
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key in ("containers", "initContainers") and isinstance(before, list) and isinstance(after, list):
            for index, (b, a) in enumerate(zip(before, after, strict=False)):
                for field_name in sorted(set(b) | set(a)):
                    if b.get(field_name) != a.get(field_name):
                        label = f"{_go_name(key)}[{index}].{_go_name(field_name)}"
                        lines.append(f"- \t{label}: {b.get(field_name)!r},")
                        lines.append(f"+ \t{label}: {a.get(field_name)!r},")
            continue
        lines.append(f"- \t{_go_name(key)}: {before!r},")
        lines.append(f"+ \t{_go_name(key)}: {after!r},")
    lines.append("  }")
    return "\n".join(lines) + "\n"


ObjectKey = tuple[str, str, str]  # (kind, namespace, name)


@dataclass(frozen=True, slots=True)
class KubeObject:
    """One stored object. Treat the mappings as read-only: writers build new ones."""

    kind: str
    namespace: str
    name: str
    uid: str = ""
    resource_version: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    spec: Mapping[str, Any] = field(default_factory=dict)
    status: Mapping[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    # The rest of the metadata, for the clients that use it (netalloc's runtime): finalizers,
    # ownerReferences, and deletionTimestamp once a delete waits for finalizers.
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.namespace, self.name)


class ApiError(Exception):
    """An error answer: HTTP code, reason and message, like a metav1.Status."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message


class ConflictError(ApiError):
    def __init__(self, obj_key: ObjectKey) -> None:
        kind, _, name = obj_key
        super().__init__(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {kind.lower()}s "{name}": the object has been modified; '
            "please apply your changes to the latest version and try again",
        )


class InvalidError(ApiError):
    """422 Invalid, with the one cause a pod-update validation failure carries."""

    def __init__(
        self,
        message: str,
        *,
        field_path: str,
        cause: str,
        name: str = "",
        kind: str = "",
        cause_message: str = "",
    ) -> None:
        super().__init__(422, "Invalid", message)
        self.field_path = field_path
        self.cause = cause
        self.name = name
        self.kind = kind
        self.cause_message = cause_message

    def status_body(self) -> dict[str, Any]:
        """The metav1.Status a real kube-apiserver sends (same keys as captures/pod-update-422.json)."""
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": {
                "name": self.name,
                "kind": self.kind,
                "causes": [{"reason": self.cause, "message": self.cause_message, "field": self.field_path}],
            },
            "code": self.code,
        }


class NotFoundApiError(ApiError):
    def __init__(self, obj_key: ObjectKey) -> None:
        kind, _, name = obj_key
        super().__init__(404, "NotFound", f'{kind.lower()}s "{name}" not found')


class AlreadyExistsError(ApiError):
    def __init__(self, obj_key: ObjectKey) -> None:
        kind, _, name = obj_key
        super().__init__(409, "AlreadyExists", f'{kind.lower()}s "{name}" already exists')


class Operation(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"


@dataclass(frozen=True, slots=True)
class MutatingWebhook:
    """A mutating admission webhook registered for pods: `mutate` returns the (possibly) changed pod."""

    name: str
    operations: frozenset[Operation]
    mutate: Callable[[KubeObject], KubeObject]


# ---------------------------------------------------------------- JSON merge patch and validation


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    result: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = json_merge_patch(result.get(name), value)
    return result


def _without_mutable_pod_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The pod spec with the fields a pod update may change blanked out (ValidatePodUpdate)."""
    out = dict(spec)
    for list_name in ("containers", "initContainers"):
        if list_name in out:
            out[list_name] = [{**dict(c), "image": ""} for c in out[list_name]]
    out.pop("activeDeadlineSeconds", None)
    out.pop("tolerations", None)
    out.pop("terminationGracePeriodSeconds", None)
    return out


def validate_pod_update(old: KubeObject, new: KubeObject) -> None:
    """Raise the exact 422 of a real kube-apiserver when a pod update changes a forbidden spec field."""
    if old.spec == new.spec:
        return
    old_tolerations = list(old.spec.get("tolerations", []))
    new_tolerations = list(new.spec.get("tolerations", []))
    tolerations_ok = new_tolerations[: len(old_tolerations)] == old_tolerations
    grace_old = old.spec.get("terminationGracePeriodSeconds")
    grace_new = new.spec.get("terminationGracePeriodSeconds")
    grace_ok = grace_old == grace_new or (grace_new == 1 and grace_old is not None and grace_old < 0)
    if (
        tolerations_ok
        and grace_ok
        and _without_mutable_pod_fields(old.spec) == _without_mutable_pod_fields(new.spec)
    ):
        return
    diff = pod_spec_diff(old.spec, new.spec)
    raise InvalidError(
        pod_invalid_message(new.name, diff),
        field_path="spec",
        cause="FieldValueForbidden",
        name=new.name,
        kind=new.kind,
        cause_message=f"Forbidden: {POD_UPDATE_FORBIDDEN}\n{diff}",
    )


# ---------------------------------------------------------------- latency, statistics, watches


class LatencyModel:
    """Log-normal request latency through a median and a 99th percentile."""

    def __init__(self, p50_s: float, p99_s: float) -> None:
        if p50_s <= 0 or p99_s < p50_s:
            raise ValueError("need 0 < p50 <= p99")
        self.mu = math.log(p50_s)
        self.sigma = (math.log(p99_s) - self.mu) / 2.3263478740408408  # z(0.99)

    def sample(self, rng: random.Random) -> float:
        return rng.lognormvariate(self.mu, self.sigma)

    def quantile(self, z: float) -> float:
        return math.exp(self.mu + self.sigma * z)


@dataclass
class ClientStats:
    """What one client did to the API server."""

    requests: int = 0
    reads: int = 0
    writes: int = 0
    pod_writes: int = 0
    objects_created: int = 0
    conflicts_409: int = 0
    invalid_422: int = 0
    not_found_404: int = 0
    writes_by_kind: Counter[str] = field(default_factory=Counter)


WatchHandler = Callable[[str, KubeObject], None]  # (event type ADDED|MODIFIED|DELETED, object)


class Watch:
    """One watch on a kind: events reach `handler` `delay_s` after the write, in order."""

    def __init__(self, server: ApiServer, kind: str, delay_s: float, handler: WatchHandler) -> None:
        self.kind = kind
        self.delay_s = delay_s
        self.handler = handler
        self._server = server
        self._pending: deque[tuple[float, str, KubeObject]] = deque()
        self._timer_armed = False
        self.stopped = False

    def _enqueue(self, event_type: str, obj: KubeObject) -> None:
        if self.stopped:
            return
        due = self._server.clock.now() + self.delay_s
        self._pending.append((due, event_type, obj))
        if not self._timer_armed:
            self._arm(due)

    def _arm(self, due: float) -> None:
        self._timer_armed = True
        self._server.schedule_at(due, self._deliver)

    def _deliver(self) -> None:
        self._timer_armed = False
        now = self._server.clock.now()
        while self._pending and self._pending[0][0] <= now + 1e-9 and not self.stopped:
            _, event_type, obj = self._pending.popleft()
            self.handler(event_type, obj)
        if self._pending and not self.stopped:
            self._arm(self._pending[0][0])

    def stop(self) -> None:
        self.stopped = True
        self._pending.clear()
        self._server.remove_watch(self)


# ---------------------------------------------------------------- the server


Scheduler = Callable[[float, Callable[[], None]], object]  # e.g. loop.call_at


class ApiServer:
    """The store plus admission. Use `client(...)` for rate-limited, latency-bearing requests."""

    def __init__(
        self,
        clock: Clock,
        *,
        schedule_at: Scheduler,
        seed: int,
        latency: LatencyModel,
        watch_delay_s: float = 0.05,
    ) -> None:
        self.clock = clock
        self.schedule_at = schedule_at
        self.latency = latency
        self.watch_delay_s = watch_delay_s
        self.seed = seed
        self.webhooks: list[MutatingWebhook] = []
        self._store: dict[ObjectKey, KubeObject] = {}
        self._by_kind: dict[str, dict[ObjectKey, KubeObject]] = {}
        self._rv = 0
        self._uid = 0
        self._watches: dict[str, list[Watch]] = {}
        self.stats: dict[str, ClientStats] = {}
        # The last Warning/Normal event recorded against each object: (reason, message).
        self.last_event: dict[ObjectKey, tuple[str, str]] = {}

    # -- bookkeeping
    def stats_for(self, client_name: str) -> ClientStats:
        stats = self.stats.get(client_name)
        if stats is None:
            stats = self.stats[client_name] = ClientStats()
        return stats

    def client(self, name: str, *, qps: float | None, burst: int | None) -> ApiClient:
        return ApiClient(self, name, qps=qps, burst=burst)

    def watch(self, kind: str, handler: WatchHandler, *, delay_s: float | None = None) -> Watch:
        """Watch `kind`; existing objects are delivered as ADDED first (a list + watch)."""
        w = Watch(self, kind, self.watch_delay_s if delay_s is None else delay_s, handler)
        self._watches.setdefault(kind, []).append(w)
        for obj in list(self._by_kind.get(kind, {}).values()):
            w._enqueue("ADDED", obj)
        return w

    def remove_watch(self, w: Watch) -> None:
        watches = self._watches.get(w.kind, [])
        if w in watches:
            watches.remove(w)

    def _notify(self, event_type: str, obj: KubeObject) -> None:
        for w in self._watches.get(obj.kind, ()):
            w._enqueue(event_type, obj)

    @property
    def resource_version(self) -> int:
        """The newest resourceVersion given out (a list's version)."""
        return self._rv

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _put(self, obj: KubeObject) -> None:
        self._store[obj.key] = obj
        self._by_kind.setdefault(obj.kind, {})[obj.key] = obj

    # -- reads (no latency: callers that model a read go through ApiClient)
    def peek(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        return self._store.get((kind, namespace, name))

    def list_kind(self, kind: str) -> list[KubeObject]:
        return list(self._by_kind.get(kind, {}).values())

    def count_kind(self, kind: str) -> int:
        return len(self._by_kind.get(kind, {}))

    # -- admission
    def _admit_pod(self, operation: Operation, obj: KubeObject) -> KubeObject:
        for hook in self.webhooks:
            if operation in hook.operations:
                obj = hook.mutate(obj)
        return obj

    # -- writes, applied at the server (ApiClient adds rate limit and latency, and counts)
    def apply_create(self, obj: KubeObject) -> KubeObject:
        if obj.key in self._store:
            raise AlreadyExistsError(obj.key)
        if obj.kind == POD:
            obj = self._admit_pod(Operation.CREATE, obj)
        self._uid += 1
        stored = replace(
            obj,
            uid=f"{obj.kind.lower()}-uid-{self._uid}",
            resource_version=self._next_rv(),
            created_at=self.clock.now(),
        )
        self._put(stored)
        self._notify("ADDED", stored)
        return stored

    def _existing(self, obj_key: ObjectKey) -> KubeObject:
        current = self._store.get(obj_key)
        if current is None:
            raise NotFoundApiError(obj_key)
        return current

    def apply_update(self, obj: KubeObject, *, subresource: str = "") -> KubeObject:
        """PUT: the caller's resourceVersion must be current (409 otherwise)."""
        current = self._existing(obj.key)
        if obj.resource_version != current.resource_version:
            raise ConflictError(obj.key)
        if subresource == "status":
            new = replace(current, status=obj.status)
        else:
            new = replace(obj, uid=current.uid, created_at=current.created_at, status=current.status)
            if obj.kind == POD:
                new = self._admit_pod(Operation.UPDATE, new)
                validate_pod_update(current, new)
        return self._commit(new)

    def apply_merge_patch(
        self, obj_key: ObjectKey, patch: Mapping[str, Any], *, resource_version: int | None = None
    ) -> KubeObject:
        """PATCH with a JSON merge patch on metadata (labels, annotations), spec and status."""
        current = self._existing(obj_key)
        if resource_version is not None and resource_version != current.resource_version:
            raise ConflictError(obj_key)
        metadata = patch.get("metadata", {})
        extra = {k: v for k, v in metadata.items() if k not in ("labels", "annotations", "resourceVersion")}
        new = replace(
            current,
            meta=json_merge_patch(current.meta, extra) if extra else current.meta,
            labels=json_merge_patch(current.labels, metadata["labels"])
            if "labels" in metadata
            else current.labels,
            annotations=(
                json_merge_patch(current.annotations, metadata["annotations"])
                if "annotations" in metadata
                else current.annotations
            ),
            spec=json_merge_patch(current.spec, patch["spec"]) if "spec" in patch else current.spec,
            status=json_merge_patch(current.status, patch["status"]) if "status" in patch else current.status,
        )
        if current.kind == POD:
            new = self._admit_pod(Operation.UPDATE, new)
            validate_pod_update(current, new)
        if new.meta.get("deletionTimestamp") is not None and not new.meta.get("finalizers"):
            self._put(new)
            return self._remove(obj_key)  # the last finalizer went: the delete completes
        return self._commit(new)

    def apply_bind(self, obj_key: ObjectKey, node_name: str) -> KubeObject:
        """pods/binding: sets spec.nodeName; not a pod UPDATE, so no pod webhook sees it."""
        current = self._existing(obj_key)
        return self._commit(replace(current, spec={**current.spec, "nodeName": node_name}))

    def _commit(self, new: KubeObject) -> KubeObject:
        stored = replace(new, resource_version=self._next_rv())
        self._put(stored)
        self._notify("MODIFIED", stored)
        return stored

    def apply_delete(self, obj_key: ObjectKey, *, uid: str | None = None) -> KubeObject:
        """Delete (only the object with `uid`, if given: 409 otherwise). An object with finalizers
        stays, marked with deletionTimestamp, until a patch removes the last of them."""
        current = self._existing(obj_key)
        if uid is not None and current.uid != uid:
            raise ConflictError(obj_key)
        if current.meta.get("finalizers"):
            if current.meta.get("deletionTimestamp") is not None:
                return current
            return self._commit(
                replace(current, meta={**current.meta, "deletionTimestamp": self.clock.now()})
            )
        return self._remove(obj_key)

    def apply_graceful_delete(self, obj_key: ObjectKey) -> KubeObject:
        """A pod's graceful delete as the API server records it: deletionTimestamp at once (watchers
        see the pod terminating); the object goes when the kubelet is done (`apply_delete`)."""
        current = self._existing(obj_key)
        if current.meta.get("deletionTimestamp") is not None:
            return current
        return self._commit(replace(current, meta={**current.meta, "deletionTimestamp": self.clock.now()}))

    def _remove(self, obj_key: ObjectKey) -> KubeObject:
        current = self._existing(obj_key)
        del self._store[obj_key]
        del self._by_kind[obj_key[0]][obj_key]
        gone = replace(current, resource_version=self._next_rv())
        self._notify("DELETED", gone)
        return gone

    def record_event(self, client_name: str, involved: ObjectKey, reason: str, message: str) -> None:
        """An Event object about `involved`: a write and an object created, sent asynchronously
        (client-go's event broadcaster), so it is counted but not rate limited here."""
        stats = self.stats_for(client_name)
        stats.writes += 1
        stats.objects_created += 1
        stats.writes_by_kind[EVENT] += 1
        self.last_event[involved] = (reason, message)


def _stable_seed(seed: int, name: str) -> int:
    return (seed * 1_000_003) ^ zlib.crc32(name.encode())


class ApiClient:
    """A client with its own QPS bucket and latency draw; it counts every request it makes."""

    def __init__(self, server: ApiServer, name: str, *, qps: float | None, burst: int | None) -> None:
        self.server = server
        self.name = name
        self.stats = server.stats_for(name)
        self._rng = random.Random(_stable_seed(server.seed, name))
        self._bucket = (
            TokenBucket(BucketSpec(capacity=float(burst or 1), refill_per_s=qps), server.clock.now())
            if qps is not None
            else None
        )

    async def _request(self) -> None:
        clock = self.server.clock
        delay = self._bucket.reserve(clock.now()) if self._bucket is not None else 0.0
        await clock.sleep(delay + self.server.latency.sample(self._rng))
        self.stats.requests += 1

    def _count_error(self, exc: ApiError) -> None:
        if exc.code == 409 and exc.reason == "Conflict":
            self.stats.conflicts_409 += 1
        elif exc.code == 422:
            self.stats.invalid_422 += 1
        elif exc.code == 404:
            self.stats.not_found_404 += 1

    def _count_write(self, kind: str) -> None:
        self.stats.writes += 1
        self.stats.writes_by_kind[kind] += 1
        if kind == POD:
            self.stats.pod_writes += 1

    async def get(self, kind: str, namespace: str, name: str) -> KubeObject:
        await self._request()
        self.stats.reads += 1
        obj = self.server.peek(kind, namespace, name)
        if obj is None:
            self.stats.not_found_404 += 1
            raise NotFoundApiError((kind, namespace, name))
        return obj

    async def _write(self, kind: str, action: Callable[[], KubeObject]) -> KubeObject:
        await self._request()
        self._count_write(kind)
        try:
            return action()
        except ApiError as exc:
            self._count_error(exc)
            raise

    async def create(self, obj: KubeObject) -> KubeObject:
        stored = await self._write(obj.kind, lambda: self.server.apply_create(obj))
        self.stats.objects_created += 1
        return stored

    async def update(self, obj: KubeObject) -> KubeObject:
        return await self._write(obj.kind, lambda: self.server.apply_update(obj))

    async def update_status(self, obj: KubeObject) -> KubeObject:
        return await self._write(obj.kind, lambda: self.server.apply_update(obj, subresource="status"))

    async def merge_patch(
        self, obj_key: ObjectKey, patch: Mapping[str, Any], *, resource_version: int | None = None
    ) -> KubeObject:
        return await self._write(
            obj_key[0],
            lambda: self.server.apply_merge_patch(obj_key, patch, resource_version=resource_version),
        )

    async def bind(self, obj_key: ObjectKey, node_name: str) -> KubeObject:
        return await self._write(obj_key[0], lambda: self.server.apply_bind(obj_key, node_name))

    async def delete(self, obj_key: ObjectKey, *, uid: str | None = None) -> KubeObject:
        return await self._write(obj_key[0], lambda: self.server.apply_delete(obj_key, uid=uid))

    async def list_objects(self, kind: str) -> list[KubeObject]:
        await self._request()
        self.stats.reads += 1
        return self.server.list_kind(kind)

    def event(self, involved: ObjectKey, reason: str, message: str) -> None:
        self.server.record_event(self.name, involved, reason, message)
