"""An in-process Kubernetes API server over real HTTP: runs kopf and the kubernetes client without a cluster.

Why not kmock (0.8, by kopf's author): it stamps no ``uid``/``resourceVersion``/``creationTimestamp``,
takes no namespace from the URL, ignores label/field selectors and the watch ``resourceVersion``, has no
PUT, no status subresource, no optimistic concurrency and no garbage collection. Those are exactly the
behaviours a controller's correctness depends on (kopf's own JSON-patches carry a ``resourceVersion``
test), so this is a small aiohttp server with the semantics of a real kube-apiserver instead.

What it does, like kube-apiserver v1.26+:

- discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/{group}[/{version}]``, ``/version``), built-in pods,
  nodes, namespaces, events (core and events.k8s.io), configmaps, secrets, services, serviceaccounts,
  coordination.k8s.io leases, and CRDs: a CRD created through the API serves its resource at once;
- create (uid, resourceVersion, creationTimestamp, generation, namespace from the URL, generateName,
  409 AlreadyExists), get, list (labelSelector, fieldSelector with ``=``/``==``/``!=``, limit/continue,
  list resourceVersion), PUT (409 on a stale resourceVersion), merge patch, JSON patch (the ``test`` op
  fails with 422 as kopf expects), strategic merge patch for built-ins (lists merged by the usual keys),
  the status subresource (status-only writes there; main-resource writes keep the old status);
  generation increments when anything but metadata and status changes; no-op writes change nothing;
- CRD schemas are enforced: unknown fields are pruned, types/enums/patterns/bounds are checked (422);
- delete with finalizers (deletionTimestamp first, removal when the last finalizer goes; no new
  finalizers while deleting), propagationPolicy Orphan, deletecollection, namespace deletion deleting
  its contents, and (switchable) garbage collection of objects whose owners are all gone;
- watch (``?watch=true``): JSON lines of ``{type, object}``; from a resourceVersion it replays what
  happened since (410 Gone past the retained history), without one it starts with ADDED for every
  object; ``sendInitialEvents`` ends the initial ADDEDs with a BOOKMARK; selectors are honoured, and an
  object that stops (starts) matching is sent as DELETED (ADDED), as the real watch cache does;
- every HTTP request is recorded in ``requests``; ``pod_writes()`` lists those that would modify a Pod;
- kubectl works against it (``kubeconfig()``): lists and gets are served as Tables with the CRD printer
  columns when asked (``kubectl get pna -o wide``).

Authorization is off unless ``enforce_rbac(roles)`` is given ClusterRoles/Roles (e.g. deploy/rbac.yaml):
then a request they do not allow is answered 403, as the controller's service account would be.

Not modelled: authentication, admission webhooks, server-side apply,
dryRun (rejected with 400), protobuf, pod graceful deletion (pods go at once, as if force-deleted),
foreground deletion (treated as background), defaulting of built-in objects, CRD version conversion.
Direct helpers (``create``, ``get``, ``list``, ``patch``, ``delete`` ...) seed and inspect objects without
HTTP; they notify watchers but are not recorded as requests. They are safe to call from other threads.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import copy
import dataclasses
import datetime
import json
import random
import re
import string
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from aiohttp import web
from pydantic import BaseModel, Field

JsonObject = dict[str, Any]
WatchEventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]

SERVER_VERSION: JsonObject = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-netalloc-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
POD_WRITE_PATH = re.compile(r"^/api/v1/(namespaces/[^/]+/)?(pods|bindings)(/|$)")


# ----------------------------------------------------------------------------------------------------------
# Resource types


@dataclasses.dataclass(frozen=True)
class ApiResource:
    """A resource type the emulator serves."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    has_generation: bool = False
    custom: bool = False
    schema: JsonObject | None = dataclasses.field(default=None, compare=False, hash=False)
    verbs: tuple[str, ...] = ALL_VERBS
    printer_columns: tuple[JsonObject, ...] = dataclasses.field(default=(), compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """Objects are stored per (group, plural): all versions of a resource share one store."""
        return (self.group, self.plural)

    @property
    def group_resource(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status_subresource(self) -> bool:
        return "status" in self.subresources


def _builtin(
    group: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool,
    short: tuple[str, ...] = (),
    subresources: Iterable[str] = (),
    generation: bool = False,
    version: str = "v1",
    categories: tuple[str, ...] = (),
    verbs: tuple[str, ...] = ALL_VERBS,
    columns: tuple[JsonObject, ...] = (),
) -> ApiResource:
    return ApiResource(
        group=group,
        version=version,
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        short_names=short,
        categories=categories,
        subresources=frozenset(subresources),
        has_generation=generation,
        verbs=verbs,
        printer_columns=(*columns, AGE_COLUMN),
    )


AGE_COLUMN: JsonObject = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
_POD_COLUMNS: tuple[JsonObject, ...] = (
    {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
    {"name": "IP", "type": "string", "jsonPath": ".status.podIP", "priority": 1},
    {"name": "Node", "type": "string", "jsonPath": ".spec.nodeName", "priority": 1},
)
BUILTIN_RESOURCES: tuple[ApiResource, ...] = (
    _builtin(
        "",
        "pods",
        "Pod",
        namespaced=True,
        short=("po",),
        subresources=("status", "binding", "eviction"),
        generation=True,
        categories=("all",),
        columns=_POD_COLUMNS,
    ),
    _builtin("", "nodes", "Node", namespaced=False, short=("no",), subresources=("status",)),
    _builtin("", "namespaces", "Namespace", namespaced=False, short=("ns",), subresources=("status",)),
    _builtin("", "events", "Event", namespaced=True, short=("ev",)),
    _builtin("", "configmaps", "ConfigMap", namespaced=True, short=("cm",)),
    _builtin("", "secrets", "Secret", namespaced=True),
    _builtin("", "serviceaccounts", "ServiceAccount", namespaced=True, short=("sa",)),
    _builtin(
        "",
        "services",
        "Service",
        namespaced=True,
        short=("svc",),
        subresources=("status",),
        categories=("all",),
    ),
    _builtin("events.k8s.io", "events", "Event", namespaced=True, short=("ev",)),
    _builtin("coordination.k8s.io", "leases", "Lease", namespaced=True),
    _builtin(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short=("crd", "crds"),
        subresources=("status",),
        generation=True,
        categories=("api-extensions",),
    ),
)
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY = ("", "namespaces")
POD_KEY = ("", "pods")


# ----------------------------------------------------------------------------------------------------------
# Errors in the Kubernetes Status shape


class KubeApiError(Exception):
    """An API failure; ``status_body()`` is the ``Status`` object kube-apiserver would send."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        name: str = "",
        kind: str = "",
        group: str = "",
        causes: Sequence[JsonObject] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details: JsonObject = {k: v for k, v in (("name", name), ("group", group), ("kind", kind)) if v}
        if causes:
            self.details["causes"] = list(causes)

    def status_body(self) -> JsonObject:
        body: JsonObject = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _not_found(resource: ApiResource, name: str) -> KubeApiError:
    return KubeApiError(
        404,
        "NotFound",
        f'{resource.group_resource} "{name}" not found',
        name=name,
        group=resource.group,
        kind=resource.plural,
    )


def _conflict(resource: ApiResource, name: str, why: str) -> KubeApiError:
    return KubeApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {resource.group_resource} "{name}": {why}',
        name=name,
        group=resource.group,
        kind=resource.plural,
    )


_CAUSE_REASONS = (
    ("Unsupported value", "FieldValueNotSupported"),
    ("Required value", "FieldValueRequired"),
    ("Forbidden", "FieldValueForbidden"),
    ("Too long", "FieldValueTooLong"),
    ("Too many", "FieldValueTooMany"),
    ("Duplicate value", "FieldValueDuplicate"),
)


def _cause_reason(message: str) -> str:
    """The `causes[].reason` kube-apiserver gives a field error, from the message's first words."""
    return next(
        (reason for prefix, reason in _CAUSE_REASONS if message.startswith(prefix)), "FieldValueInvalid"
    )


def _invalid(resource: ApiResource, name: str, problems: Sequence[tuple[str, str]]) -> KubeApiError:
    """422 Invalid; ``problems`` are (field, message) pairs. As kube-apiserver v1.26 answers it (see
    shared/captures): one problem is written bare, several in brackets; the order of several follows
    the schema walk, which in kube-apiserver is a Go map's and so not fixed either."""
    causes = [{"reason": _cause_reason(msg), "message": msg, "field": field} for field, msg in problems]
    listed = ", ".join(f"{field}: {msg}" if field else msg for field, msg in problems)
    summary = listed if len(problems) == 1 else f"[{listed}]"
    qualified = f"{resource.kind}.{resource.group}" if resource.group else resource.kind
    return KubeApiError(
        422,
        "Invalid",
        f'{qualified} "{name}" is invalid: {summary}',
        name=name,
        group=resource.group,
        kind=resource.kind,
        causes=causes,
    )


POD_UPDATE_FORBIDDEN = (
    "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
    "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to "
    "existing tolerations) or `spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
    "previously negative)"
)


def _mutable_pod_fields_dropped(spec: Mapping[str, Any]) -> JsonObject:
    kept = copy.deepcopy(dict(spec))
    for field in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        kept.pop(field, None)
    for key in ("containers", "initContainers"):
        for container in kept.get(key) or []:
            if isinstance(container, dict):
                container.pop("image", None)
    return kept


def _check_pod_spec_update(name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """A pod UPDATE may change only a few spec fields (a mutating webhook that touches others on an
    annotation patch turns it into this 422, the failure the field notes start from)."""
    before, after = _mutable_pod_fields_dropped(old), _mutable_pod_fields_dropped(new)
    if before == after:
        return
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    diff = "\n".join(
        f"  core.PodSpec.{key}: {json.dumps(before.get(key))} -> {json.dumps(after.get(key))}"
        for key in changed
    )
    message = f"{POD_UPDATE_FORBIDDEN}\n{diff}\n"
    raise KubeApiError(
        422,
        "Invalid",
        f'Pod "{name}" is invalid: spec: {message}',
        name=name,
        kind="Pod",
        causes=[{"reason": "FieldValueForbidden", "message": message, "field": "spec"}],
    )


def _bad_request(message: str) -> KubeApiError:
    return KubeApiError(400, "BadRequest", message)


# ----------------------------------------------------------------------------------------------------------
# Label and field selectors


@dataclasses.dataclass(frozen=True)
class _Requirement:
    key: str
    operator: Literal["=", "!=", "in", "notin", "exists", "!exists"]
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values  # "!=" and "notin" match absent keys


_LABEL_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_LABEL_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_REQUIREMENT = re.compile(rf"^({_LABEL_KEY})\s+(in|notin)\s*\(([^)]*)\)$")
_EQUALITY_REQUIREMENT = re.compile(rf"^({_LABEL_KEY})\s*(==|=|!=)\s*({_LABEL_VALUE})$")
_EXISTS_REQUIREMENT = re.compile(rf"^(!?)\s*({_LABEL_KEY})$")


def _split_top_level(text: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


class LabelSelector:
    """A parsed ``labelSelector`` query: equality-based and set-based requirements, ANDed."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.requirements: list[_Requirement] = []
        for part in _split_top_level(text):
            if match := _SET_REQUIREMENT.match(part):
                values = tuple(v.strip() for v in match.group(4).split(",") if v.strip())
                operator: Literal["in", "notin"] = "in" if match.group(3) == "in" else "notin"
                self.requirements.append(_Requirement(match.group(1), operator, values))
            elif match := _EQUALITY_REQUIREMENT.match(part):
                eq: Literal["=", "!="] = "!=" if match.group(3) == "!=" else "="
                self.requirements.append(_Requirement(match.group(1), eq, (match.group(4),)))
            elif match := _EXISTS_REQUIREMENT.match(part):
                exists: Literal["exists", "!exists"] = "!exists" if match.group(1) else "exists"
                self.requirements.append(_Requirement(match.group(2), exists))
            else:
                raise _bad_request(f"unable to parse requirement: {part!r} in labelSelector {text!r}")

    def matches(self, obj: Mapping[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement.matches(labels) for requirement in self.requirements)


class FieldSelector:
    """A parsed ``fieldSelector``: ``path=value``, ``path==value``, ``path!=value`` terms, ANDed.

    Any dotted path is accepted (a real server accepts only a per-resource set); a missing field
    compares as the empty string, as it does for the fields a real server supports.
    """

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.terms: list[tuple[tuple[str, ...], bool, str]] = []
        for part in _split_top_level(text):
            match = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", part)
            if not match:
                raise _bad_request(f"invalid selector: {part!r} in fieldSelector {text!r}")
            self.terms.append((tuple(match.group(1).split(".")), match.group(2) != "!=", match.group(3)))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for path, equal, expected in self.terms:
            value: Any = obj
            for step in path:
                value = value.get(step) if isinstance(value, Mapping) else None
            actual = "" if value is None else (str(value).lower() if isinstance(value, bool) else str(value))
            if (actual == expected) != equal:
                return False
        return True


# ----------------------------------------------------------------------------------------------------------
# Patches


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; returns a new value and leaves both arguments alone."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: JsonObject = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


class JsonPatchError(ValueError):
    """A JSON patch that cannot be applied (bad path, failed ``test``)."""


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise JsonPatchError(f"JSON pointer must start with '/': {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _resolve_parent(document: Any, tokens: list[str]) -> tuple[Any, str]:
    node = document
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise JsonPatchError(f"path /{'/'.join(tokens)} does not exist")
    return node, tokens[-1]


def _get_at(document: Any, path: str) -> Any:
    node = document
    for token in _pointer(path):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise JsonPatchError(f"path {path} does not exist")
    return node


def _add_at(document: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return copy.deepcopy(value)
    parent, last = _resolve_parent(document, tokens)
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-":
            parent.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), copy.deepcopy(value))
        else:
            raise JsonPatchError(f"index {last} out of range at {path}")
    else:
        raise JsonPatchError(f"cannot add at {path}: the parent is not a container")
    return document


def _remove_at(document: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise JsonPatchError("cannot remove the whole document")
    parent, last = _resolve_parent(document, tokens)
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise JsonPatchError(f"path {path} does not exist")


def apply_json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test) on a copy of ``document``."""
    if not isinstance(operations, list):
        raise JsonPatchError("a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise JsonPatchError(f"malformed JSON patch operation: {operation!r}")
        op, path = operation["op"], operation["path"]
        if op == "add":
            result = _add_at(result, path, operation.get("value"))
        elif op == "remove":
            _remove_at(result, path)
        elif op == "replace":
            _get_at(result, path)
            if _pointer(path):
                _remove_at(result, path)
            result = _add_at(result, path, operation.get("value"))
        elif op in ("move", "copy"):
            value = copy.deepcopy(_get_at(result, operation.get("from", "")))
            if op == "move":
                _remove_at(result, operation.get("from", ""))
            result = _add_at(result, path, value)
        elif op == "test":
            try:
                actual = _get_at(result, path)
            except JsonPatchError:
                actual = None
            if actual != operation.get("value"):
                raise JsonPatchError(
                    f"test failed at {path}: expected {operation.get('value')!r}, got {actual!r}"
                )
        else:
            raise JsonPatchError(f"unknown JSON patch operation {op!r}")
    return result


# List fields that strategic merge patch merges by a key instead of replacing (the common ones).
_STRATEGIC_MERGE_KEYS: Mapping[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "conditions": "type",
    "ownerReferences": "uid",
    "imagePullSecrets": "name",
    "addresses": "type",
}
_STRATEGIC_SET_LISTS = frozenset({"finalizers"})


def apply_strategic_merge_patch(target: Any, patch: Any) -> Any:
    """An approximation of strategic merge patch for built-in objects.

    Merge-patch semantics, except that the lists in ``_STRATEGIC_MERGE_KEYS`` merge item by item on their
    key (``$patch: delete`` in an item removes it), ``finalizers`` are a set union, and
    ``$deleteFromPrimitiveList/<field>`` removes primitive values. Other directives are ignored.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    result: JsonObject = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        current = result.get(key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in _STRATEGIC_MERGE_KEYS and isinstance(current, list):
            result[key] = _merge_list_by_key(current, value, _STRATEGIC_MERGE_KEYS[key])
        elif isinstance(value, list) and key in _STRATEGIC_SET_LISTS and isinstance(current, list):
            result[key] = current + [item for item in value if item not in current]
        elif isinstance(value, dict) and value.get("$patch") == "delete":
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = apply_strategic_merge_patch(current, value)
        else:
            result[key] = copy.deepcopy(value)
    for key, value in patch.items():
        prefix = "$deleteFromPrimitiveList/"
        if key.startswith(prefix) and isinstance(result.get(key[len(prefix) :]), list):
            field = key[len(prefix) :]
            result[field] = [item for item in result[field] if item not in value]
    return result


def _merge_list_by_key(current: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    merged = copy.deepcopy(current)
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            merged.append(copy.deepcopy(item))
            continue
        index = next(
            (
                i
                for i, old in enumerate(merged)
                if isinstance(old, dict) and old.get(merge_key) == item[merge_key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                merged.pop(index)
        elif index is None:
            merged.append({k: copy.deepcopy(v) for k, v in item.items() if not k.startswith("$")})
        else:
            merged[index] = apply_strategic_merge_patch(merged[index], item)
    return merged


# ----------------------------------------------------------------------------------------------------------
# CRD schema validation and pruning (structural OpenAPI v3 subset used by apiextensions.k8s.io/v1)


def _is_date_time(value: str) -> bool:
    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return "T" in value.upper()


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def validate_against_schema(value: Any, schema: Mapping[str, Any], path: str = "") -> list[tuple[str, str]]:
    """Check ``value`` against a CRD's openAPIV3Schema; prune unknown fields and non-nullable nulls in place.

    Returns (field path, message) problems, empty when valid. At the root, ``apiVersion``, ``kind`` and
    ``metadata`` are not checked (the server owns them), as in kube-apiserver.
    """
    problems: list[tuple[str, str]] = []
    _check_node(value, schema, path, problems, root=(path == ""))
    return problems


def _check_node(
    value: Any, schema: Mapping[str, Any], path: str, problems: list[tuple[str, str]], root: bool
) -> None:
    shown = path or "<root>"
    if value is None:
        if not schema.get("nullable"):
            problems.append(
                (shown, f'Invalid value: "null": {shown} in body must be of type {schema.get("type")}')
            )
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            problems.append(
                (shown, f"Invalid value: {value!r}: {shown} in body must be of type int-or-string")
            )
        return
    expected = schema.get("type")
    actual = _type_name(value)
    type_ok = (
        expected is None
        or actual == expected
        or (expected == "number" and actual == "integer")
        or (expected == "integer" and isinstance(value, float) and value.is_integer())
    )
    if not type_ok:
        problems.append((shown, f'Invalid value: "{actual}": {shown} in body must be of type {expected}'))
        return
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(json.dumps(v) for v in schema["enum"])
        problems.append((shown, f"Unsupported value: {json.dumps(value)}: supported values: {allowed}"))
    if isinstance(value, dict):
        _check_object(value, schema, path, problems, root)
    elif isinstance(value, list):
        _check_array(value, schema, path, problems)
    elif isinstance(value, str):
        _check_string(value, schema, shown, problems)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(
                (shown, f"Invalid value: {value}: {shown} in body should be >= {schema['minimum']}")
            )
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(
                (shown, f"Invalid value: {value}: {shown} in body should be <= {schema['maximum']}")
            )


def _check_object(
    value: JsonObject, schema: Mapping[str, Any], path: str, problems: list[tuple[str, str]], root: bool
) -> None:
    properties: Mapping[str, Any] = schema.get("properties", {})
    additional = schema.get("additionalProperties")
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    for key in list(value):
        field = f"{path}.{key}" if path else key
        if root and key in ("apiVersion", "kind", "metadata"):
            continue
        child = properties.get(key, additional if isinstance(additional, Mapping) else None)
        if value[key] is None and child is not None and not child.get("nullable"):
            del value[
                key
            ]  # null in a non-nullable field is dropped, as kube-apiserver does before validating
            continue
        if key in properties:
            _check_node(value[key], properties[key], field, problems, root=False)
        elif isinstance(additional, Mapping):
            _check_node(value[key], additional, field, problems, root=False)
        elif additional is True or preserve:
            continue
        else:
            del value[key]  # pruning, as a structural schema does
    for required in schema.get("required", []):
        if required not in value:
            field = f"{path}.{required}" if path else required
            problems.append((field, "Required value"))
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        problems.append((path, f"should have at least {schema['minProperties']} properties"))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        problems.append((path, f"should have at most {schema['maxProperties']} properties"))


def _check_array(
    value: list[Any], schema: Mapping[str, Any], path: str, problems: list[tuple[str, str]]
) -> None:
    shown = path or "<root>"
    if "minItems" in schema and len(value) < schema["minItems"]:
        problems.append(
            (
                shown,
                f"Invalid value: {len(value)}: {shown} in body should have at least "
                f"{schema['minItems']} items",
            )
        )
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        problems.append((shown, f"Too many: {len(value)}: must have at most {schema['maxItems']} items"))
    items = schema.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            _check_node(item, items, f"{path}[{index}]", problems, root=False)
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        seen: list[Any] = []
        for index, item in enumerate(value):
            if item in seen:
                problems.append((f"{path}[{index}]", f"Duplicate value: {json.dumps(item)}"))
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen_keys: list[tuple[Any, ...]] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            item_key = tuple(item.get(k) for k in keys)
            if item_key in seen_keys:
                shown_key = ", ".join(f'"{k}":{json.dumps(item.get(k))}' for k in keys)
                problems.append(
                    (f"{path}[{index}]", f"Duplicate value: map[string]interface {{}}{{{shown_key}}}")
                )
            seen_keys.append(item_key)


def _check_string(value: str, schema: Mapping[str, Any], shown: str, problems: list[tuple[str, str]]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        problems.append(
            (
                shown,
                f'Invalid value: "{value}": {shown} in body should be at least '
                f"{schema['minLength']} chars long",
            )
        )
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        problems.append((shown, f"Too long: may not be more than {schema['maxLength']} bytes"))
    if "pattern" in schema and not re.search(schema["pattern"], value):
        problems.append(
            (shown, f"Invalid value: \"{value}\": {shown} in body should match '{schema['pattern']}'")
        )
    if schema.get("format") == "date-time" and not _is_date_time(value):
        problems.append((shown, f'Invalid value: "{value}": {shown} in body must be of type date-time'))


# ----------------------------------------------------------------------------------------------------------
# The JSONPath subset of printer columns (``.a.b``, ``.a[0]``, ``.a[*]``, ``.a[?(@.type=="Ready")]``)

_JSONPATH_TOKEN = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_-]+)
      | \[(?P<index>\d+|\*)\]
      | \[\?\(@\.(?P<filter_field>[A-Za-z0-9_.-]+)\s*==\s*
            (?P<quote>["'])(?P<filter_value>[^"']*)(?P=quote)\)\]""",
    re.VERBOSE,
)


def parse_jsonpath(path: str) -> list[tuple[str, str, str]]:
    """Tokens of ``path``: ("field", name, ""), ("index", n or "*", ""), ("filter", field, value)."""
    tokens: list[tuple[str, str, str]] = []
    position = 0
    while position < len(path):
        match = _JSONPATH_TOKEN.match(path, position)
        if match is None:
            raise ValueError(f"unsupported JSONPath at {path[position:]!r} in {path!r}")
        if match.group("field") is not None:
            tokens.append(("field", match.group("field"), ""))
        elif match.group("index") is not None:
            tokens.append(("index", match.group("index"), ""))
        else:
            tokens.append(("filter", match.group("filter_field"), match.group("filter_value")))
        position = match.end()
    return tokens


def evaluate_jsonpath(obj: Any, path: str) -> list[Any]:
    """All values ``path`` selects in ``obj`` (an empty list when nothing matches)."""
    current = [obj]
    for kind, name, value in parse_jsonpath(path):
        selected: list[Any] = []
        for node in current:
            if kind == "field" and isinstance(node, Mapping) and name in node:
                selected.append(node[name])
            elif kind == "index" and isinstance(node, list):
                selected.extend(node if name == "*" else node[int(name) : int(name) + 1])
            elif kind == "filter" and isinstance(node, list):
                selected.extend(item for item in node if _dotted_text(item, name) == value)
        current = selected
    return current


def _dotted_text(item: Any, dotted: str) -> str | None:
    for step in dotted.split("."):
        item = item.get(step) if isinstance(item, Mapping) else None
    return None if item is None else str(item)


# ----------------------------------------------------------------------------------------------------------
# Requests, events and watchers


class RecordedRequest(BaseModel):
    """One HTTP request the emulator served (direct helper calls are not recorded)."""

    method: str
    path: str
    query: dict[str, str] = Field(default_factory=dict)
    is_write: bool
    is_watch: bool = False
    content_type: str = ""
    body: Any = None
    status: int | None = None
    user: str = ""  # the bearer token that sent it (benchmarks count one client's requests)

    @property
    def modifies_pod(self) -> bool:
        return self.is_write and bool(POD_WRITE_PATH.match(self.path))


class ApiFault(BaseModel):
    """A scripted failure: the next `times` requests matching method and path answer `code`.

    With `delay_s`, the answer comes that late (a client with a shorter timeout sees a timeout); with
    `effect` the request is carried out first, so the change happens but its answer is lost.
    """

    methods: frozenset[str] = frozenset({"POST", "PUT", "PATCH", "DELETE"})
    path: str = ".*"  # a regular expression, searched in the request path
    code: int = 500
    times: int = Field(default=1, ge=1)
    delay_s: float = Field(default=0.0, ge=0)
    effect: bool = False

    def matches(self, method: str, path: str) -> bool:
        return method in self.methods and re.search(self.path, path) is not None

    def error(self) -> KubeApiError:
        if self.code == 409:
            return KubeApiError(
                409,
                "Conflict",
                "Operation cannot be fulfilled: the object has been modified; please apply your "
                "changes to the latest version and try again",
            )
        if self.code == 422:
            return KubeApiError(422, "Invalid", "the request is invalid (injected fault)")
        if self.code == 429:
            return KubeApiError(
                429, "TooManyRequests", "the server has received too many requests (injected)"
            )
        if self.code == 504:
            return KubeApiError(
                504, "Timeout", "the server was unable to return a response in time (injected)"
            )
        return KubeApiError(self.code, "InternalError", "Internal error occurred: injected fault")


def request_label(request: RecordedRequest) -> str:
    """ "verb resource[/subresource]", e.g. "patch podnetworkallocations/status" or "watch pods"."""
    parts = request.path.strip("/").split("/")
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    resource = (rest[0] if rest else "discovery") + (f"/{rest[2]}" if len(rest) == 3 else "")
    if request.method == "GET":
        verb = "watch" if request.is_watch else ("get" if len(rest) >= 2 else "list")
    else:
        verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
        verb = verbs.get(request.method, request.method)
    return f"{verb} {resource}"


@dataclasses.dataclass(frozen=True)
class _Change:
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    resource_key: tuple[str, str]
    obj: JsonObject
    old: JsonObject | None
    resource_version: int


@dataclasses.dataclass(eq=False)
class _Watcher:
    resource: ApiResource
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    queue: asyncio.Queue[JsonObject | None]

    def translate(self, change: _Change) -> JsonObject | None:
        """The event this watcher should see for ``change`` (None: not for it)."""
        if change.resource_key != self.resource.key:
            return None
        namespace = change.obj.get("metadata", {}).get("namespace")
        if self.namespace is not None and namespace != self.namespace:
            return None
        now_matches = self._matches(change.obj)
        if change.type == "MODIFIED":
            was_matching = change.old is not None and self._matches(change.old)
            if was_matching and not now_matches:
                return self._event("DELETED", change.obj)
            if now_matches and not was_matching:
                return self._event("ADDED", change.obj)
        return self._event(change.type, change.obj) if now_matches else None

    def _matches(self, obj: JsonObject) -> bool:
        return self.labels.matches(obj) and self.fields.matches(obj)

    def _event(self, event_type: str, obj: JsonObject) -> JsonObject:
        shown = copy.deepcopy(obj)
        shown["apiVersion"] = self.resource.api_version
        shown["kind"] = self.resource.kind
        return {"type": event_type, "object": shown}


def _now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _human_age(timestamp: str, now: datetime.datetime) -> str:
    """How kubectl shows an age ("42s", "3m5s", "7h", "12d"), from an RFC 3339 timestamp."""
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    seconds = max(0, int((now - then).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d"


def _without(obj: Mapping[str, Any], *keys: str) -> JsonObject:
    return {k: v for k, v in obj.items() if k not in keys}


def _meta(obj: Mapping[str, Any]) -> JsonObject:
    metadata = obj.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


# ----------------------------------------------------------------------------------------------------------
# The emulator


class KubeApiEmulator:
    """An in-process kube-apiserver: real HTTP on 127.0.0.1 (random port), state in memory."""

    def __init__(
        self,
        *,
        garbage_collection: bool = True,
        require_namespaces: bool = False,
        history_limit: int = 10_000,
        wall_clock: Callable[[], datetime.datetime] = _now_utc,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.garbage_collection = garbage_collection
        self.require_namespaces = require_namespaces
        self.requests: builtins.list[RecordedRequest] = []
        self._wall_clock = wall_clock
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._resource_version = 0
        self._resources: dict[tuple[str, str, str], ApiResource] = {}  # (group, version, plural)
        self._objects: dict[tuple[str, str], dict[tuple[str, str], JsonObject]] = {}
        self._history: deque[_Change] = deque(maxlen=history_limit)
        self._compacted_resource_version = 0
        self._watchers: set[_Watcher] = set()
        self._live_uids: set[str] = set()
        self._faults: builtins.list[list[Any]] = []  # [ApiFault, remaining]
        self._rbac: builtins.list[tuple[str | None, JsonObject]] | None = None  # (namespace or None, rule)
        self._rbac_user = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._runner: web.AppRunner | None = None
        self._base_url = ""
        for resource in BUILTIN_RESOURCES:
            self._register(resource)
        for namespace in INITIAL_NAMESPACES:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

    # -- lifecycle ---------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise RuntimeError("the emulator is not started")
        return self._base_url

    async def start(self) -> str:
        """Serve on ``port`` of ``host`` (0: a free one); returns the base URL (``http://127.0.0.1:PORT``)."""
        if self._runner is not None:
            return self._base_url
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self._base_url = f"http://{self._host}:{port}"
        return self._base_url

    async def stop(self) -> None:
        """End every watch stream and stop serving."""
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._base_url = ""

    async def __aenter__(self) -> KubeApiEmulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def kubeconfig(self) -> JsonObject:
        """A kubeconfig for this server (``kubernetes.config.load_kube_config_from_dict``, kubectl)."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.base_url}}],
            "users": [{"name": "emulator", "user": {"token": "emulator"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator"}}],
            "current-context": "emulator",
        }

    # -- recorded requests -------------------------------------------------------------------------------

    def writes(self) -> builtins.list[RecordedRequest]:
        return [request for request in self.requests if request.is_write]

    def pod_writes(self) -> builtins.list[RecordedRequest]:
        """Requests that would modify a Pod: any write on a pods path (incl. status, binding, eviction)."""
        return [request for request in self.requests if request.modifies_pod]

    def request_counts(self, user: str | None = None) -> JsonObject:
        """Requests by verb and resource (refused ones apart, with their code), one user's if given, and how
        many wrote a Pod."""
        counts: dict[str, int] = {}
        for request in self.requests:
            if (user is not None and request.user != user) or request.path.startswith("/_emulator"):
                continue
            label = request_label(request)
            if request.status is not None and request.status >= 400:
                label += f" ({request.status})"  # refused: a conflict, an injected fault
            counts[label] = counts.get(label, 0) + 1
        pod_writes = sum(1 for r in self.requests if r.modifies_pod and (user is None or r.user == user))
        return {"requests": counts, "pod_writes": pod_writes, "total": sum(counts.values())}

    def clear_requests(self) -> None:
        self.requests.clear()

    # -- authorization -----------------------------------------------------------------------------------

    def enforce_rbac(
        self,
        roles: Iterable[Mapping[str, Any]],
        *,
        user: str = "system:serviceaccount:netalloc-system:netalloc",
    ) -> None:
        """From now on, answer 403 to HTTP requests the given ClusterRoles/Roles do not allow.

        ClusterRole rules count everywhere, a Role's only in its namespace (bindings are assumed);
        ``resourceNames`` and wildcards behave as in Kubernetes. Discovery stays open. Direct helper
        calls are never checked. Other manifests in ``roles`` are ignored, so a whole YAML set may be given.
        """
        rules: builtins.list[tuple[str | None, JsonObject]] = []
        for role in roles:
            if role.get("kind") not in ("ClusterRole", "Role"):
                continue
            scope = _meta(role).get("namespace") if role["kind"] == "Role" else None
            rules.extend((scope, dict(rule)) for rule in role.get("rules") or [])
        self._rbac = rules
        self._rbac_user = user

    def _authorize(
        self, verb: str, resource: ApiResource, namespace: str | None, name: str | None, subresource: str
    ) -> None:
        if self._rbac is None:
            return
        wanted = f"{resource.plural}/{subresource}" if subresource else resource.plural
        for scope, rule in self._rbac:
            if scope is not None and scope != namespace:
                continue
            groups, resources_ = rule.get("apiGroups") or [], rule.get("resources") or []
            verbs, names = rule.get("verbs") or [], rule.get("resourceNames") or []
            if not ("*" in groups or resource.group in groups):
                continue
            if not (
                "*" in resources_
                or wanted in resources_
                or (subresource and f"*/{subresource}" in resources_)
            ):
                continue
            if not ("*" in verbs or verb in verbs):
                continue
            if names and name not in names:
                continue
            return
        where = f' in the namespace "{namespace}"' if namespace else ""
        target = f'{resource.group_resource} "{name}"' if name else resource.group_resource
        raise KubeApiError(
            403,
            "Forbidden",
            f'{target} is forbidden: User "{self._rbac_user}" cannot {verb} resource "{wanted}" in API group '
            f'"{resource.group}"{where}',
            name=name or "",
            group=resource.group,
            kind=resource.plural,
        )

    # -- resource types and CRDs -------------------------------------------------------------------------

    def resources(self) -> builtins.list[ApiResource]:
        with self._lock:
            return list(self._resources.values())

    def install_crd(self, crd: Mapping[str, Any]) -> JsonObject:
        """Create (or replace) a CustomResourceDefinition; its resource is served at once."""
        name = _meta(crd).get("name", "")
        if self.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name) is None:
            return self.create(crd)
        replacement = copy.deepcopy(dict(crd))
        replacement.setdefault("metadata", {}).pop("resourceVersion", None)
        return self.replace(replacement)

    def install_crds_from(self, directory: str | Path, *, recursive: bool = False) -> builtins.list[str]:
        """Install every CRD in the YAML files of ``directory``; returns the CRD names installed."""
        root = Path(directory)
        files = sorted(root.rglob("*.yaml") if recursive else root.glob("*.yaml"))
        names: builtins.list[str] = []
        for file in files:
            for document in yaml.safe_load_all(file.read_text()):
                if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                    installed = self.install_crd(document)
                    names.append(installed["metadata"]["name"])
        return names

    def resolve(self, api_version: str, kind_or_plural: str) -> ApiResource:
        """The served resource of ``api_version`` named by kind, plural, singular or short name."""
        group, _, version = api_version.rpartition("/")
        wanted = kind_or_plural.lower()
        with self._lock:
            for (res_group, res_version, _), resource in self._resources.items():
                if res_group != group or res_version != version:
                    continue
                names = {resource.kind.lower(), resource.plural, resource.singular, *resource.short_names}
                if wanted in names:
                    return resource
        raise KubeApiError(
            404, "NotFound", f"the server doesn't have a resource type {kind_or_plural!r} in {api_version!r}"
        )

    def _register(self, resource: ApiResource) -> None:
        self._resources[(resource.group, resource.version, resource.plural)] = resource
        self._objects.setdefault(resource.key, {})

    def _register_crd(self, crd: JsonObject) -> None:
        spec = crd.get("spec", {})
        group = spec.get("group", "")
        names = spec.get("names", {})
        self._unregister_crd_versions(group, names.get("plural", ""))
        for version in spec.get("versions", []):
            if not version.get("served", True):
                continue
            subresources = version.get("subresources") or {}
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            self._register(
                ApiResource(
                    group=group,
                    version=version["name"],
                    plural=names["plural"],
                    singular=names.get("singular") or names["kind"].lower(),
                    kind=names["kind"],
                    namespaced=spec.get("scope") == "Namespaced",
                    short_names=tuple(names.get("shortNames", [])),
                    categories=tuple(names.get("categories", [])),
                    subresources=frozenset(subresources),
                    has_generation=True,
                    custom=True,
                    schema=copy.deepcopy(schema) if schema else None,
                    printer_columns=tuple(version.get("additionalPrinterColumns") or (AGE_COLUMN,)),
                )
            )

    def _unregister_crd_versions(self, group: str, plural: str) -> None:
        for key in [key for key in self._resources if key[0] == group and key[2] == plural]:
            del self._resources[key]

    def _crd_status(self, crd: JsonObject) -> JsonObject:
        names = crd.get("spec", {}).get("names", {})
        now = _timestamp(self._wall_clock())
        accepted = {
            k: v
            for k, v in names.items()
            if k in ("plural", "singular", "kind", "listKind", "shortNames", "categories")
        }
        return {
            "acceptedNames": accepted,
            "storedVersions": [
                v["name"] for v in crd.get("spec", {}).get("versions", []) if v.get("storage")
            ],
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now, "reason": r, "message": m}
                for t, r, m in (
                    ("NamesAccepted", "NoConflicts", "no conflicts found"),
                    ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
                )
            ],
        }

    # -- direct helpers (not recorded) -------------------------------------------------------------------

    def create(self, obj: Mapping[str, Any], *, namespace: str | None = None) -> JsonObject:
        """Create ``obj`` (its ``apiVersion``/``kind`` name the resource). ``status`` is kept as given."""
        resource = self.resolve(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        target_namespace = self._default_namespace(resource, namespace or _meta(obj).get("namespace"))
        with self._lock:
            return self._create(resource, target_namespace, copy.deepcopy(dict(obj)), keep_status=True)

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> JsonObject | None:
        resource = self.resolve(api_version, kind)
        namespace = self._default_namespace(resource, namespace)
        with self._lock:
            found = self._lookup(resource, namespace, name)
            return self._shown(resource, found) if found is not None else None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str = "",
        field_selector: str = "",
    ) -> builtins.list[JsonObject]:
        """Objects of one resource, sorted by namespace and name; ``namespace=None`` means all of them."""
        resource = self.resolve(api_version, kind)
        labels, fields = LabelSelector(label_selector), FieldSelector(field_selector)
        with self._lock:
            return [
                self._shown(resource, obj)
                for obj in self._sorted_objects(resource, namespace)
                if labels.matches(obj) and fields.matches(obj)
            ]

    def replace(self, obj: Mapping[str, Any], *, subresource: str = "") -> JsonObject:
        """PUT semantics: a ``metadata.resourceVersion`` in ``obj`` must be current (409 otherwise)."""
        resource = self.resolve(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        metadata = _meta(obj)
        namespace = self._default_namespace(resource, metadata.get("namespace"))
        with self._lock:
            old = self._require(resource, namespace, metadata.get("name", ""))
            return self._update(resource, old, copy.deepcopy(dict(obj)), subresource=subresource)

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str = "",
    ) -> JsonObject:
        """Merge-patch an object (``subresource="status"`` for its status, e.g. a kubelet's pod status)."""
        resource = self.resolve(api_version, kind)
        namespace = self._default_namespace(resource, namespace)
        with self._lock:
            old = self._require(resource, namespace, name)
            candidate = apply_merge_patch(old, dict(patch))
            return self._update(resource, old, candidate, subresource=subresource)

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation_policy: str = "Background",
    ) -> JsonObject | None:
        """Delete like the API does (finalizers first); None when there was no such object."""
        resource = self.resolve(api_version, kind)
        namespace = self._default_namespace(resource, namespace)
        with self._lock:
            if self._lookup(resource, namespace, name) is None:
                return None
            return self._delete(resource, namespace, name, propagation_policy=propagation_policy)

    @staticmethod
    def _default_namespace(resource: ApiResource, namespace: str | None) -> str | None:
        """Direct helpers default a namespaced object's namespace to "default", as kubectl does."""
        if not resource.namespaced:
            return None
        return namespace or "default"

    def inject_fault(self, fault: ApiFault) -> None:
        """Fail the next matching HTTP requests (after any faults already scripted for them)."""
        with self._lock:
            self._faults.append([fault, fault.times])

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> int:
        with self._lock:
            return sum(remaining for _, remaining in self._faults)

    def _take_fault(self, method: str, path: str) -> ApiFault | None:
        with self._lock:
            for entry in self._faults:
                fault, remaining = entry
                if remaining > 0 and fault.matches(method, path):
                    entry[1] = remaining - 1
                    self._faults = [e for e in self._faults if e[1] > 0]
                    return fault  # type: ignore[no-any-return]
        return None

    def drop_watches(self) -> int:
        """End every watch stream now, as a restarting API server or a broken connection does."""
        with self._lock:
            watchers = list(self._watchers)
            self._watchers.clear()
        for watcher in watchers:
            self._deliver(watcher, None)
        return len(watchers)

    def expire_watch_history(self) -> None:
        """Forget all change history: watches resuming from an older resourceVersion get 410 Gone."""
        with self._lock:
            self._history.clear()
            self._compacted_resource_version = self._resource_version

    @property
    def resource_version(self) -> int:
        return self._resource_version

    # -- storage -----------------------------------------------------------------------------------------

    def _object_key(self, resource: ApiResource, namespace: str | None, name: str) -> tuple[str, str]:
        return ((namespace or "") if resource.namespaced else "", name)

    def _lookup(self, resource: ApiResource, namespace: str | None, name: str) -> JsonObject | None:
        return self._objects[resource.key].get(self._object_key(resource, namespace, name))

    def _require(self, resource: ApiResource, namespace: str | None, name: str) -> JsonObject:
        found = self._lookup(resource, namespace, name)
        if found is None:
            raise _not_found(resource, name)
        return found

    def _sorted_objects(self, resource: ApiResource, namespace: str | None) -> builtins.list[JsonObject]:
        store = self._objects[resource.key]
        return [
            store[key]
            for key in sorted(store)
            if namespace is None or not resource.namespaced or key[0] == namespace
        ]

    def _shown(self, resource: ApiResource, obj: JsonObject) -> JsonObject:
        shown = copy.deepcopy(obj)
        shown["apiVersion"] = resource.api_version
        shown["kind"] = resource.kind
        return shown

    def _next_resource_version(self) -> int:
        self._resource_version += 1
        return self._resource_version

    def _publish(self, change: _Change) -> None:
        self._history.append(change)
        if len(self._history) == self._history.maxlen:
            self._compacted_resource_version = self._history[0].resource_version - 1
        for watcher in list(self._watchers):
            event = watcher.translate(change)
            if event is not None:
                self._deliver(watcher, event)

    def _deliver(self, watcher: _Watcher, event: JsonObject | None) -> None:
        if self._loop is None or threading.get_ident() == self._loop_thread:
            watcher.queue.put_nowait(event)
        else:
            self._loop.call_soon_threadsafe(watcher.queue.put_nowait, event)

    def _validate(self, resource: ApiResource, obj: JsonObject) -> None:
        name = _meta(obj).get("name", "")
        if resource.schema is not None:
            problems = validate_against_schema(obj, resource.schema)
            if problems:
                raise _invalid(resource, name, problems)
        if resource.key == CRD_KEY:
            spec = obj.get("spec", {})
            expected = f"{spec.get('names', {}).get('plural', '')}.{spec.get('group', '')}"
            if name != expected:
                raise _invalid(
                    resource,
                    name,
                    [
                        (
                            "metadata.name",
                            f'Invalid value: "{name}": must be spec.names.'
                            f'plural+"."+spec.group ("{expected}")',
                        )
                    ],
                )

    # -- the write paths shared by HTTP and direct calls --------------------------------------------------

    def _create(
        self, resource: ApiResource, namespace: str | None, obj: JsonObject, *, keep_status: bool
    ) -> JsonObject:
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise _bad_request("metadata must be an object")
        if resource.namespaced:
            if not namespace:
                raise _bad_request("the namespace of the object is required")
            if metadata.get("namespace") not in (None, "", namespace):
                raise _bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if (
                self.require_namespaces
                and self._lookup(self.resolve("v1", "namespaces"), None, namespace) is None
            ):
                raise KubeApiError(
                    404, "NotFound", f'namespaces "{namespace}" not found', name=namespace, kind="namespaces"
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if not metadata.get("name"):
            prefix = metadata.get("generateName")
            if not prefix:
                raise _invalid(
                    resource, "", [("metadata.name", "Required value: name or generateName is required")]
                )
            metadata["name"] = prefix + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        name = metadata["name"]
        if self._lookup(resource, namespace, name) is not None:
            raise KubeApiError(
                409,
                "AlreadyExists",
                f'{resource.group_resource} "{name}" already exists',
                name=name,
                group=resource.group,
                kind=resource.plural,
            )
        obj["apiVersion"] = resource.api_version
        obj["kind"] = resource.kind
        if resource.has_status_subresource and not keep_status:
            obj.pop("status", None)
        for server_owned in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink", "managedFields"):
            metadata.pop(server_owned, None)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = _timestamp(self._wall_clock())
        if resource.has_generation:
            metadata["generation"] = 1
        else:
            metadata.pop("generation", None)
        self._validate(resource, obj)
        if resource.key == CRD_KEY:
            obj["status"] = self._crd_status(obj)
        if resource.key == NAMESPACE_KEY:
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
        metadata["resourceVersion"] = str(self._next_resource_version())
        self._objects[resource.key][self._object_key(resource, namespace, name)] = obj
        self._live_uids.add(metadata["uid"])
        if resource.key == CRD_KEY:
            self._register_crd(obj)
        self._publish(_Change("ADDED", resource.key, copy.deepcopy(obj), None, self._resource_version))
        if self.garbage_collection and self._owners_all_gone(obj):
            self._delete(resource, namespace, name, propagation_policy="Background")
        return self._shown(resource, obj)

    def _update(
        self,
        resource: ApiResource,
        old: JsonObject,
        candidate: Any,
        *,
        subresource: str,
        check_pod_spec: bool = True,
    ) -> JsonObject:
        """Store ``candidate`` as the new state of ``old`` (PUT and PATCH of the object or its status)."""
        if check_pod_spec and resource.key == POD_KEY and not subresource and isinstance(candidate, dict):
            _check_pod_spec_update(
                _meta(old).get("name", ""), old.get("spec") or {}, candidate.get("spec") or {}
            )
        old_meta = _meta(old)
        name = old_meta["name"]
        if not isinstance(candidate, dict) or not isinstance(candidate.get("metadata", {}), dict):
            raise _bad_request("the object must be a JSON object with object metadata")
        candidate.setdefault("metadata", {})
        new_meta = candidate["metadata"]
        if subresource and subresource not in resource.subresources:
            raise KubeApiError(
                404,
                "NotFound",
                f"the server could not find the requested resource ({resource.group_resource}/{subresource})",
            )
        if new_meta.get("name", name) != name:
            raise _bad_request(
                f"the name of the object ({new_meta.get('name')}) does not match the name on the URL ({name})"
            )
        sent_version = new_meta.get("resourceVersion")
        if sent_version not in (None, "") and str(sent_version) != old_meta["resourceVersion"]:
            raise _conflict(
                resource,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        if new_meta.get("uid") not in (None, "", old_meta["uid"]):
            raise _conflict(
                resource,
                name,
                f"Precondition failed: UID in precondition: {new_meta.get('uid')}, "
                f"UID in object meta: {old_meta['uid']}",
            )
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in candidate:
                new["status"] = candidate["status"]
            else:
                new.pop("status", None)
        else:
            new = candidate
            if resource.has_status_subresource:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            meta = new["metadata"]
            for owned in (
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if owned in old_meta:
                    meta[owned] = old_meta[owned]
                else:
                    meta.pop(owned, None)
        new["apiVersion"] = resource.api_version
        new["kind"] = resource.kind
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        if old_meta.get("deletionTimestamp"):
            added = set(new["metadata"].get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise _invalid(
                    resource,
                    name,
                    [
                        (
                            "metadata.finalizers",
                            f"Forbidden: no new finalizers can be "
                            f"added if the object is being deleted, "
                            f"found new finalizers {sorted(added)}",
                        )
                    ],
                )
        self._validate(resource, new)
        if new == old:
            return self._shown(resource, old)  # a no-op write changes nothing, not even resourceVersion
        if resource.has_generation and _without(new, "metadata", "status") != _without(
            old, "metadata", "status"
        ):
            new["metadata"]["generation"] = int(old_meta.get("generation", 0)) + 1
        if resource.key == CRD_KEY:
            new["status"] = self._crd_status(new) if subresource != "status" else new.get("status", {})
        new["metadata"]["resourceVersion"] = str(self._next_resource_version())
        namespace = old_meta.get("namespace")
        self._objects[resource.key][self._object_key(resource, namespace, name)] = new
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            # As kube-apiserver does: the write that empties the finalizers deletes (one DELETED event).
            return self._remove(resource, new, orphan=False)
        if resource.key == CRD_KEY:
            self._register_crd(new)
        self._publish(
            _Change("MODIFIED", resource.key, copy.deepcopy(new), copy.deepcopy(old), self._resource_version)
        )
        return self._shown(resource, new)

    def _delete(
        self,
        resource: ApiResource,
        namespace: str | None,
        name: str,
        *,
        propagation_policy: str = "Background",
        precondition_uid: str | None = None,
        precondition_version: str | None = None,
    ) -> JsonObject:
        obj = self._require(resource, namespace, name)
        metadata = obj["metadata"]
        if precondition_uid and precondition_uid != metadata["uid"]:
            raise _conflict(
                resource,
                name,
                f"Precondition failed: UID in precondition: {precondition_uid}, "
                f"UID in object meta: {metadata['uid']}",
            )
        if precondition_version and precondition_version != metadata["resourceVersion"]:
            raise _conflict(resource, name, "Precondition failed: the object has been modified")
        if metadata.get("finalizers"):
            if metadata.get("deletionTimestamp"):
                return self._shown(resource, obj)
            old = copy.deepcopy(obj)
            metadata["deletionTimestamp"] = _timestamp(self._wall_clock())
            metadata["deletionGracePeriodSeconds"] = 0
            metadata["resourceVersion"] = str(self._next_resource_version())
            self._publish(_Change("MODIFIED", resource.key, copy.deepcopy(obj), old, self._resource_version))
            if resource.key == NAMESPACE_KEY:
                self._delete_namespace_contents(name)
            return self._shown(resource, obj)
        return self._remove(resource, obj, orphan=propagation_policy == "Orphan")

    def _remove(self, resource: ApiResource, obj: JsonObject, *, orphan: bool) -> JsonObject:
        metadata = obj["metadata"]
        key = self._object_key(resource, metadata.get("namespace"), metadata["name"])
        self._objects[resource.key].pop(key, None)
        self._live_uids.discard(metadata["uid"])
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = str(self._next_resource_version())
        self._publish(_Change("DELETED", resource.key, copy.deepcopy(final), None, self._resource_version))
        if resource.key == CRD_KEY:
            self._drop_crd(obj)
        if resource.key == NAMESPACE_KEY:
            self._delete_namespace_contents(metadata["name"])
        if orphan:
            self._orphan_dependents(metadata["uid"])
        elif self.garbage_collection:
            self._collect_dependents(metadata["uid"])
        return self._shown(resource, final)

    def _drop_crd(self, crd: JsonObject) -> None:
        spec = crd.get("spec", {})
        group, plural = spec.get("group", ""), spec.get("names", {}).get("plural", "")
        served = [r for r in self._resources.values() if r.group == group and r.plural == plural]
        if served:
            for obj in list(self._objects.get((group, plural), {}).values()):
                self._remove(served[0], obj, orphan=False)
        self._unregister_crd_versions(group, plural)
        self._objects.pop((group, plural), None)

    def _delete_namespace_contents(self, namespace: str) -> None:
        for resource in self._storage_resources():
            if not resource.namespaced:
                continue
            for key, obj in list(self._objects[resource.key].items()):
                if key[0] == namespace and key in self._objects[resource.key]:
                    self._delete(resource, namespace, _meta(obj)["name"])

    def _storage_resources(self) -> builtins.list[ApiResource]:
        """One served resource per stored (group, plural)."""
        unique: dict[tuple[str, str], ApiResource] = {}
        for resource in self._resources.values():
            unique.setdefault(resource.key, resource)
        return list(unique.values())

    def _owners_all_gone(self, obj: JsonObject) -> bool:
        owners = [ref.get("uid") for ref in _meta(obj).get("ownerReferences") or [] if ref.get("uid")]
        if not owners:
            return False
        return not any(uid in self._live_uids for uid in owners)

    def _collect_dependents(self, owner_uid: str) -> None:
        for resource in self._storage_resources():
            for obj in list(self._objects.get(resource.key, {}).values()):
                refs = _meta(obj).get("ownerReferences") or []
                if not any(ref.get("uid") == owner_uid for ref in refs):
                    continue
                metadata = _meta(obj)
                still_there = self._lookup(resource, metadata.get("namespace"), metadata["name"])
                if still_there is obj and self._owners_all_gone(obj):
                    self._delete(resource, metadata.get("namespace"), metadata["name"])

    def _orphan_dependents(self, owner_uid: str) -> None:
        for resource in self._storage_resources():
            for obj in list(self._objects.get(resource.key, {}).values()):
                refs = _meta(obj).get("ownerReferences") or []
                if any(ref.get("uid") == owner_uid for ref in refs):
                    candidate = copy.deepcopy(obj)
                    candidate["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != owner_uid]
                    if not candidate["metadata"]["ownerReferences"]:
                        del candidate["metadata"]["ownerReferences"]
                    self._update(resource, obj, candidate, subresource="")

    # -- HTTP --------------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = {key: request.query[key] for key in request.query}
        is_watch = request.method == "GET" and query.get("watch", "").lower() in ("true", "1")
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._error_response(_bad_request("the request body is not valid JSON"))
        authorization = request.headers.get("Authorization", "")
        record = RecordedRequest(
            user=authorization.removeprefix("Bearer ").strip(),
            method=request.method,
            path=request.path,
            query=query,
            is_write=request.method in WRITE_METHODS,
            is_watch=is_watch,
            content_type=request.content_type,
            body=body,
        )
        self.requests.append(record)
        if is_watch:
            record.status = 200  # a stream ends by cancellation more often than not; errors overwrite this
        fault = None if is_watch else self._take_fault(request.method, request.path)
        if fault is not None and not fault.effect:
            if fault.delay_s:
                await asyncio.sleep(fault.delay_s)
            record.status = fault.code
            return self._error_response(fault.error())
        try:
            response = await self._dispatch(request, query, body, is_watch)
            if fault is not None:  # carried out; the answer is lost (late, or an error)
                if fault.delay_s:
                    await asyncio.sleep(fault.delay_s)
                response = self._error_response(fault.error())
        except KubeApiError as error:
            response = self._error_response(error)
        except JsonPatchError as error:
            response = self._error_response(KubeApiError(422, "Invalid", str(error)))
        record.status = response.status
        return response

    def _error_response(self, error: KubeApiError) -> web.Response:
        return web.json_response(error.status_body(), status=error.code)

    async def _dispatch(
        self, request: web.Request, query: dict[str, str], body: Any, is_watch: bool
    ) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if path == "/_emulator/requests":  # not Kubernetes: what benchmarks read of a separate process
            return web.json_response(self.request_counts(query.get("user")))
        if path == "/version":
            return web.json_response(SERVER_VERSION)
        discovery = self._discovery(path)
        if discovery is not None:
            if request.method != "GET":
                raise KubeApiError(405, "MethodNotAllowed", f"{request.method} is not allowed on {path}")
            return web.json_response(discovery)
        if query.get("dryRun"):
            raise _bad_request("dryRun is not supported by the netalloc API emulator")
        resource, namespace, name, subresource = self._route(path)
        method = request.method
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, "")
        if method == "GET":
            verb = "watch" if is_watch else ("list" if name is None else "get")
        elif method == "DELETE":
            verb = "deletecollection" if name is None else "delete"
        self._authorize(verb, resource, namespace, name, subresource)
        as_table = "as=Table" in request.headers.get("Accept", "")
        if name is None:
            if method == "GET" and is_watch:
                return await self._serve_watch(request, resource, namespace, query, as_table=as_table)
            if method == "GET":
                listed = self._serve_list(resource, namespace, query)
                if as_table:
                    return web.json_response(self._table(resource, listed["items"], listed["metadata"]))
                return web.json_response(listed)
            if method == "POST":
                if resource.namespaced and namespace is None:
                    raise KubeApiError(405, "MethodNotAllowed", f"create {resource.plural} needs a namespace")
                if not isinstance(body, dict):
                    raise _bad_request("the object must be a JSON object")
                with self._lock:
                    created = self._create(resource, namespace, body, keep_status=False)
                return web.json_response(created, status=201)
            if method == "DELETE":
                return web.json_response(self._serve_delete_collection(resource, namespace, query))
        else:
            if method == "GET" and not subresource:
                with self._lock:
                    found = self._shown(resource, self._require(resource, namespace, name))
                if as_table:
                    return web.json_response(self._table(resource, [found], {"resourceVersion": ""}))
                return web.json_response(found)
            if method == "GET" and subresource == "status" and "status" in resource.subresources:
                with self._lock:
                    return web.json_response(self._shown(resource, self._require(resource, namespace, name)))
            if method == "PUT":
                with self._lock:
                    old = self._require(resource, namespace, name)
                    return web.json_response(self._update(resource, old, body, subresource=subresource))
            if method == "PATCH":
                return web.json_response(
                    self._serve_patch(request, resource, namespace, name, subresource, body)
                )
            if method == "DELETE" and not subresource:
                options = body if isinstance(body, dict) else {}
                preconditions = options.get("preconditions") or {}
                with self._lock:
                    deleted = self._delete(
                        resource,
                        namespace,
                        name,
                        propagation_policy=query.get("propagationPolicy")
                        or options.get("propagationPolicy")
                        or "Background",
                        precondition_uid=preconditions.get("uid"),
                        precondition_version=preconditions.get("resourceVersion"),
                    )
                return web.json_response(deleted)
            if method == "POST" and resource.key == POD_KEY and subresource in ("binding", "eviction"):
                return web.json_response(
                    self._serve_pod_subresource(resource, namespace, name, subresource, body), status=201
                )
        raise KubeApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")

    def _route(self, path: str) -> tuple[ApiResource, str | None, str | None, str]:
        """(resource, namespace, name, subresource) of a resource URL; 404 when nothing serves it."""
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise KubeApiError(404, "NotFound", "the server could not find the requested resource")
        with self._lock:
            served = {
                plural: r for (g, v, plural), r in self._resources.items() if g == group and v == version
            }
        namespace: str | None = None
        namespaces_served = group == "" and "namespaces" in served
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] in served and served[rest[2]].namespaced:
            namespace, rest = rest[1], rest[2:]
        elif rest[0] == "namespaces" and not namespaces_served and len(rest) >= 2:
            raise KubeApiError(404, "NotFound", "the server could not find the requested resource")
        resource = served.get(rest[0])
        if resource is None or len(rest) > 3:
            raise KubeApiError(404, "NotFound", "the server could not find the requested resource")
        if resource.namespaced is False and namespace is not None:
            raise KubeApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) >= 2 else None
        subresource = rest[2] if len(rest) == 3 else ""
        if subresource and subresource not in resource.subresources:
            raise KubeApiError(404, "NotFound", "the server could not find the requested resource")
        if resource.namespaced and name is not None and namespace is None:
            raise KubeApiError(404, "NotFound", "the server could not find the requested resource")
        return resource, namespace, name, subresource

    def _serve_list(
        self, resource: ApiResource, namespace: str | None, query: Mapping[str, str]
    ) -> JsonObject:
        labels = LabelSelector(query.get("labelSelector", ""))
        fields = FieldSelector(query.get("fieldSelector", ""))
        limit = int(query.get("limit") or 0)
        start_after: tuple[str, str] | None = None
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"].encode()))
                start_after = (token["namespace"], token["name"])
            except (ValueError, KeyError, TypeError):
                raise _bad_request("invalid continue token") from None
        with self._lock:
            list_version = str(self._resource_version)
            matching = [
                obj
                for obj in self._sorted_objects(resource, namespace)
                if labels.matches(obj) and fields.matches(obj)
            ]
            if start_after is not None:
                matching = [
                    obj
                    for obj in matching
                    if (_meta(obj).get("namespace", ""), _meta(obj)["name"]) > start_after
                ]
            page = matching[:limit] if limit > 0 else matching
            items = [self._shown(resource, obj) for obj in page]
        list_meta: JsonObject = {"resourceVersion": list_version}
        if limit > 0 and len(matching) > limit:
            last = _meta(page[-1])
            token = {"namespace": last.get("namespace", ""), "name": last["name"]}
            list_meta["continue"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
            list_meta["remainingItemCount"] = len(matching) - limit
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": list_meta,
            "items": items,
        }

    def _serve_delete_collection(
        self, resource: ApiResource, namespace: str | None, query: Mapping[str, str]
    ) -> JsonObject:
        labels = LabelSelector(query.get("labelSelector", ""))
        fields = FieldSelector(query.get("fieldSelector", ""))
        deleted: builtins.list[JsonObject] = []
        with self._lock:
            for obj in self._sorted_objects(resource, namespace):
                metadata = _meta(obj)
                if (
                    labels.matches(obj)
                    and fields.matches(obj)
                    and self._lookup(resource, metadata.get("namespace"), metadata["name"]) is obj
                ):
                    deleted.append(self._delete(resource, metadata.get("namespace"), metadata["name"]))
            list_version = str(self._resource_version)
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": list_version},
            "items": deleted,
        }

    def _serve_patch(
        self,
        request: web.Request,
        resource: ApiResource,
        namespace: str | None,
        name: str,
        subresource: str,
        body: Any,
    ) -> JsonObject:
        content_type = request.content_type
        with self._lock:
            old = self._require(resource, namespace, name)
            if content_type == "application/merge-patch+json":
                candidate = apply_merge_patch(old, body)
            elif content_type == "application/json-patch+json":
                try:
                    candidate = apply_json_patch(old, body)
                except JsonPatchError as error:
                    raise _invalid(resource, name, [("", str(error))]) from None
            elif content_type == "application/strategic-merge-patch+json" and not resource.custom:
                candidate = apply_strategic_merge_patch(old, body)
            else:
                raise KubeApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types include: "
                    f"application/json-patch+json, application/merge-patch+json"
                    f"{'' if resource.custom else ', application/strategic-merge-patch+json'} "
                    f"(got {content_type!r})",
                )
            return self._update(resource, old, candidate, subresource=subresource)

    def _serve_pod_subresource(
        self, resource: ApiResource, namespace: str | None, name: str, subresource: str, body: Any
    ) -> JsonObject:
        with self._lock:
            pod = self._require(resource, namespace, name)
            if subresource == "eviction":
                self._delete(resource, namespace, name)
                return {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "code": 201,
                }
            target = (body or {}).get("target", {}).get("name", "") if isinstance(body, dict) else ""
            if pod.get("spec", {}).get("nodeName"):
                raise _conflict(
                    resource, name, f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"'
                )
            candidate = copy.deepcopy(pod)
            candidate.setdefault("spec", {})["nodeName"] = target
            self._update(resource, pod, candidate, subresource="", check_pod_spec=False)
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    async def _serve_watch(
        self,
        request: web.Request,
        resource: ApiResource,
        namespace: str | None,
        query: Mapping[str, str],
        *,
        as_table: bool = False,
    ) -> web.StreamResponse:
        watcher = _Watcher(
            resource=resource,
            namespace=namespace if resource.namespaced else None,
            labels=LabelSelector(query.get("labelSelector", "")),
            fields=FieldSelector(query.get("fieldSelector", "")),
            queue=asyncio.Queue(),
        )
        since = query.get("resourceVersion", "")
        initial: builtins.list[JsonObject] = []
        with self._lock:
            if since not in ("", "0"):
                if not since.isdigit():
                    raise _bad_request(f"invalid resourceVersion {since!r}")
                if int(since) < self._compacted_resource_version:
                    initial.append(
                        {
                            "type": "ERROR",
                            "object": KubeApiError(
                                410,
                                "Expired",
                                f"too old resource version: {since} ({self._compacted_resource_version})",
                            ).status_body(),
                        }
                    )
                else:
                    for change in self._history:
                        if change.resource_version > int(since):
                            event = watcher.translate(change)
                            if event is not None:
                                initial.append(event)
            else:
                for obj in self._sorted_objects(resource, watcher.namespace):
                    if watcher.labels.matches(obj) and watcher.fields.matches(obj):
                        initial.append({"type": "ADDED", "object": self._shown(resource, obj)})
                if query.get("sendInitialEvents", "").lower() == "true":
                    initial.append(
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": resource.kind,
                                "apiVersion": resource.api_version,
                                "metadata": {
                                    "resourceVersion": str(self._resource_version),
                                    "annotations": {"k8s.io/initial-events-end": "true"},
                                },
                            },
                        }
                    )
            expired = bool(initial) and initial[0]["type"] == "ERROR"
            if not expired:
                self._watchers.add(watcher)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        try:
            for event in initial:
                await response.write(self._watch_line(resource, event, as_table))
            if not expired:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        while (event_or_end := await watcher.queue.get()) is not None:
                            await response.write(self._watch_line(resource, event_or_end, as_table))
        except (ConnectionError, RuntimeError):
            pass  # the client went away
        finally:
            with self._lock:
                self._watchers.discard(watcher)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await response.write_eof()
        return response

    def _watch_line(self, resource: ApiResource, event: JsonObject, as_table: bool) -> bytes:
        if as_table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
            version = _meta(event["object"]).get("resourceVersion", "")
            event = {
                "type": event["type"],
                "object": self._table(resource, [event["object"]], {"resourceVersion": version}),
            }
        return json.dumps(event).encode() + b"\n"

    def _table(
        self, resource: ApiResource, objects: Sequence[JsonObject], list_meta: JsonObject
    ) -> JsonObject:
        """A ``meta.k8s.io/v1`` Table, as kubectl asks for: the printer columns, computed server-side."""
        columns: list[JsonObject] = [
            {
                "name": "Name",
                "type": "string",
                "format": "name",
                "description": "Name of the object",
                "priority": 0,
            }
        ]
        for column in resource.printer_columns:
            columns.append(
                {
                    "name": column["name"],
                    "type": column.get("type", "string"),
                    "format": column.get("format", ""),
                    "description": column.get("description", ""),
                    "priority": column.get("priority", 0),
                }
            )
        rows: list[JsonObject] = []
        for obj in objects:
            cells: list[Any] = [_meta(obj).get("name", "")]
            for column in resource.printer_columns:
                values = evaluate_jsonpath(obj, column["jsonPath"])
                value = values[0] if values else None
                if column.get("type") == "date" and isinstance(value, str):
                    value = _human_age(value, self._wall_clock())
                cells.append(
                    json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else value
                )
            partial = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": _meta(obj),
            }
            rows.append({"cells": cells, "object": partial})
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "columnDefinitions": columns,
            "rows": rows,
        }

    # -- discovery ---------------------------------------------------------------------------------------

    def _discovery(self, path: str) -> JsonObject | None:
        with self._lock:
            resources = list(self._resources.values())
        groups: dict[str, list[str]] = {}
        for resource in resources:
            versions = groups.setdefault(resource.group, [])
            if resource.version not in versions:
                versions.append(resource.version)
        if path == "/api":
            return {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": self._base_url.removeprefix("http://")}
                ],
            }
        if path == "/apis":
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._group_document(g, v) for g, v in sorted(groups.items()) if g],
            }
        parts = path.strip("/").split("/")
        if parts == ["api", "v1"]:
            return self._resource_list("", "v1", resources)
        if parts[0] == "apis" and len(parts) == 2 and parts[1] in groups:
            return self._group_document(parts[1], groups[parts[1]]) | {"kind": "APIGroup", "apiVersion": "v1"}
        if parts[0] == "apis" and len(parts) == 3 and parts[2] in groups.get(parts[1], []):
            return self._resource_list(parts[1], parts[2], resources)
        return None

    @staticmethod
    def _group_document(group: str, versions: Sequence[str]) -> JsonObject:
        listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": listed, "preferredVersion": listed[0]}

    @staticmethod
    def _resource_list(group: str, version: str, resources: Sequence[ApiResource]) -> JsonObject:
        entries: builtins.list[JsonObject] = []
        for resource in sorted(resources, key=lambda r: r.plural):
            if resource.group != group or resource.version != version:
                continue
            entry: JsonObject = {
                "name": resource.plural,
                "singularName": resource.singular,
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": list(resource.verbs),
            }
            if resource.short_names:
                entry["shortNames"] = list(resource.short_names)
            if resource.categories:
                entry["categories"] = list(resource.categories)
            entries.append(entry)
            for subresource in sorted(resource.subresources):
                verbs = ["create"] if subresource in ("binding", "eviction") else ["get", "patch", "update"]
                kind = {"binding": "Binding", "eviction": "Eviction"}.get(subresource, resource.kind)
                entries.append(
                    {
                        "name": f"{resource.plural}/{subresource}",
                        "singularName": "",
                        "namespaced": resource.namespaced,
                        "kind": kind,
                        "verbs": verbs,
                    }
                )
        group_version = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": entries,
        }


@contextlib.asynccontextmanager
async def emulated_cluster(
    *crd_directories: str | Path, garbage_collection: bool = True
) -> AsyncIterator[KubeApiEmulator]:
    """A started emulator with the CRDs of ``crd_directories`` installed; stopped on exit."""
    emulator = KubeApiEmulator(garbage_collection=garbage_collection)
    for directory in crd_directories:
        emulator.install_crds_from(directory)
    async with emulator:
        yield emulator
