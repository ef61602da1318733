"""Which pods netalloc manages, and how: pure functions over plain Kubernetes dicts.

A pod is managed when its namespace matches the managed-namespace selector, it is not on the host
network, it is scheduled (`spec.nodeName`) and not finished. Its mode is a branch ENI when a
SecurityGroupPolicy in its namespace matches it (AWS semantics: both selectors must match when
both are set; the groups of all matching policies are unioned), else the node pool's mode.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controller.core.allocation_model import AllocationMode

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


class LabelSelectorError(ValueError):
    """A selector that cannot be parsed; the message names it and shows the accepted form."""


class Requirement(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: tuple[str, ...] = ()


class LabelSelector(BaseModel):
    """A Kubernetes label selector (matchLabels and matchExpressions)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    match_labels: dict[str, str] = Field(default_factory=dict)
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def from_k8s(cls, selector: Mapping[str, Any] | None) -> LabelSelector | None:
        if selector is None:
            return None
        requirements = tuple(
            Requirement(key=e["key"], operator=e["operator"], values=tuple(e.get("values") or ()))
            for e in selector.get("matchExpressions") or ()
        )
        return cls(match_labels=dict(selector.get("matchLabels") or {}), requirements=requirements)

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse the equality form `a=b,c!=d,e` (as in MANAGED_NAMESPACE_SELECTOR)."""
        labels: dict[str, str] = {}
        requirements: list[Requirement] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "!=" in part:
                key, value = (s.strip() for s in part.split("!=", 1))
                requirements.append(Requirement(key=key, operator="NotIn", values=(value,)))
            elif "=" in part:
                key, value = (s.strip() for s in part.replace("==", "=").split("=", 1))
                labels[key] = value
            elif part.startswith("!"):
                requirements.append(Requirement(key=part[1:].strip(), operator="DoesNotExist"))
            else:
                requirements.append(Requirement(key=part, operator="Exists"))
        for key in [*labels, *(r.key for r in requirements)]:
            if not key:
                raise LabelSelectorError(
                    f"label selector {text!r} has an empty key; write e.g. 'netalloc.dev/managed=true'"
                )
        return cls(match_labels=labels, requirements=tuple(requirements))

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.requirements:
            present = req.key in labels
            if req.operator == "In" and (not present or labels[req.key] not in req.values):
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
        return True


ENI_SHARING_ANNOTATION = "netalloc.dev/eni-sharing"
ENI_SHARING_NODE = "node"  # the only value: the pods of one group set share an ENI per node


class SecurityGroupPolicy(BaseModel):
    """The parts of a `vpcresources.k8s.aws/v1beta1` SecurityGroupPolicy that decide a match."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: str
    name: str
    pod_selector: LabelSelector | None
    service_account_selector: LabelSelector | None
    group_ids: tuple[str, ...]
    eni_sharing: bool = False  # annotation netalloc.dev/eni-sharing: node

    @classmethod
    def from_k8s(cls, body: Mapping[str, Any]) -> SecurityGroupPolicy:
        spec = body.get("spec") or {}
        meta = body.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            pod_selector=LabelSelector.from_k8s(spec.get("podSelector")),
            service_account_selector=LabelSelector.from_k8s(spec.get("serviceAccountSelector")),
            group_ids=tuple((spec.get("securityGroups") or {}).get("groupIds") or ()),
            eni_sharing=annotations.get(ENI_SHARING_ANNOTATION) == ENI_SHARING_NODE,
        )

    def matches(self, pod_labels: Mapping[str, str], service_account_labels: Mapping[str, str]) -> bool:
        if self.pod_selector is None and self.service_account_selector is None:
            return False
        if self.pod_selector is not None and not self.pod_selector.matches(pod_labels):
            return False
        return self.service_account_selector is None or self.service_account_selector.matches(
            service_account_labels
        )


def is_managed_pod(
    pod: Mapping[str, Any], namespace_labels: Mapping[str, str], selector: LabelSelector
) -> bool:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    meta = pod.get("metadata") or {}
    return (
        selector.matches(namespace_labels)
        and not spec.get("hostNetwork", False)
        and bool(spec.get("nodeName"))
        and status.get("phase") not in TERMINAL_PHASES
        and meta.get("deletionTimestamp") is None
    )


def security_groups_for(
    pod: Mapping[str, Any],
    policies: Iterable[SecurityGroupPolicy],
    service_account_labels: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """The union of the groups of every policy in the pod's namespace that matches it (sorted)."""
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace", "")
    labels = meta.get("labels") or {}
    groups: set[str] = set()
    for policy in policies:
        if policy.namespace == namespace and policy.matches(labels, service_account_labels or {}):
            groups.update(policy.group_ids)
    return tuple(sorted(groups))


def shares_eni(
    pod: Mapping[str, Any],
    policies: Iterable[SecurityGroupPolicy],
    service_account_labels: Mapping[str, str] | None = None,
    *,
    everywhere: bool = False,
) -> bool:
    """Does the pod get its groups on a shared ENI? With SHARED_ENI_FOR_POD_SG, always; else only when
    every policy that gives it groups opts in (one policy wanting an ENI of its own decides)."""
    if everywhere:
        return True
    meta = pod.get("metadata") or {}
    namespace = meta.get("namespace", "")
    labels = meta.get("labels") or {}
    matched = [
        p
        for p in policies
        if p.namespace == namespace and p.group_ids and p.matches(labels, service_account_labels or {})
    ]
    return bool(matched) and all(p.eni_sharing for p in matched)


def allocation_mode(
    security_groups: tuple[str, ...], prefix_delegation: bool, *, shared: bool = False
) -> AllocationMode:
    if security_groups:
        return AllocationMode.SHARED_ENI if shared else AllocationMode.BRANCH_ENI
    return AllocationMode.PREFIX_IP if prefix_delegation else AllocationMode.SECONDARY_IP


def warm_branch_groups(
    pod_group_sets: Iterable[Sequence[str]], policy_group_sets: Iterable[Sequence[str]]
) -> tuple[str, ...] | None:
    """The groups a node's warm branch ENIs should be made with, so that the pods that take them need no
    ModifyNetworkInterfaceAttribute: the set most of the node's branch pods have; before any pod comes,
    the set most policies of the managed namespaces give. None: nothing to go by (the node's groups)."""
    for sets in (pod_group_sets, policy_group_sets):
        counts = Counter(tuple(sorted(set(groups))) for groups in sets if groups)
        if counts:
            return max(counts, key=lambda groups: (counts[groups], groups))
    return None
