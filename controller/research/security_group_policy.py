"""SecurityGroupPolicy matching as RC does it (field notes §2), plus the two pod webhooks around it.

Only policies in the pod's namespace count; a policy matches when its podSelector matches the pod's
labels and its serviceAccountSelector matches the pod's service account labels (both must match when
both are set); the groups of all matching policies are unioned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from controller.core.pod_selection import SecurityGroupPolicy
from controller.research.api_server import KubeObject, MutatingWebhook, Operation
from controller.research.baseline_params import POD_ENI_RESOURCE

SGP = "SecurityGroupPolicy"


def core_policy(policy: KubeObject) -> SecurityGroupPolicy:
    """The simulated API object as the controller's own SecurityGroupPolicy (one matcher for both sides)."""
    return SecurityGroupPolicy.from_k8s(
        {"metadata": {"namespace": policy.namespace, "name": policy.name}, "spec": policy.spec}
    )


def policy_matches(policy: KubeObject, pod: KubeObject, service_account_labels: Mapping[str, str]) -> bool:
    return policy.namespace == pod.namespace and core_policy(policy).matches(
        pod.labels, service_account_labels
    )


def security_groups_for_pod(
    pod: KubeObject,
    policies: Iterable[KubeObject],
    service_account_labels: Mapping[str, str] | None = None,
) -> tuple[str, ...]:
    """Union of the group ids of every matching policy, sorted (empty: the pod is not an SGP pod)."""
    groups: set[str] = set()
    for policy in policies:
        if policy_matches(policy, pod, service_account_labels or {}):
            groups.update(policy.spec.get("securityGroups", {}).get("groupIds", []))
    return tuple(sorted(groups))


def make_policy(
    namespace: str, name: str, match_labels: Mapping[str, str], group_ids: list[str]
) -> KubeObject:
    if not group_ids:
        raise ValueError("a SecurityGroupPolicy needs at least one group id")
    return KubeObject(
        kind=SGP,
        namespace=namespace,
        name=name,
        spec={
            "podSelector": {"matchLabels": dict(match_labels)},
            "securityGroups": {"groupIds": list(group_ids)},
        },
    )


def pod_eni_webhook(policies: Mapping[str, list[KubeObject]]) -> MutatingWebhook:
    """RC's webhook: on CREATE, add `vpc.amazonaws.com/pod-eni: 1` to the first container of SGP pods.

    `policies` maps a namespace to its policies; the caller keeps it current.
    """

    def mutate(pod: KubeObject) -> KubeObject:
        if not security_groups_for_pod(pod, policies.get(pod.namespace, [])):
            return pod
        containers = [dict(c) for c in pod.spec.get("containers", [])]
        if not containers:
            return pod
        first = containers[0]
        resources = dict(first.get("resources", {}))
        for section in ("limits", "requests"):
            resources[section] = {**dict(resources.get(section, {})), POD_ENI_RESOURCE: "1"}
        first["resources"] = resources
        return replace(pod, spec={**pod.spec, "containers": containers})

    return MutatingWebhook(name="mpod.vpc.k8s.aws", operations=frozenset({Operation.CREATE}), mutate=mutate)


PRESTOP_POLICY_LABEL = "policy.example/inject-prestop"
PRESTOP_HOOK: Mapping[str, Any] = {"exec": {"command": ["/bin/sh", "-c", "sleep 5"]}}


def prestop_policy_webhook() -> MutatingWebhook:
    """A Kyverno-like policy: on pod UPDATE, add a `lifecycle.preStop` hook to every container of
    the pods it selects (label PRESTOP_POLICY_LABEL=true) that lack one."""

    def mutate(pod: KubeObject) -> KubeObject:
        if pod.labels.get(PRESTOP_POLICY_LABEL) != "true":
            return pod
        containers = list(pod.spec.get("containers", []))
        changed = False
        for index, container in enumerate(containers):
            lifecycle = container.get("lifecycle", {})
            if "preStop" not in lifecycle:
                containers[index] = {
                    **dict(container),
                    "lifecycle": {**dict(lifecycle), "preStop": PRESTOP_HOOK},
                }
                changed = True
        return replace(pod, spec={**pod.spec, "containers": containers}) if changed else pod

    return MutatingWebhook(
        name="kyverno-add-prestop", operations=frozenset({Operation.UPDATE}), mutate=mutate
    )
