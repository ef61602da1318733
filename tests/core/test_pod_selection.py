from typing import Any

import pytest

from controller.core.allocation_model import AllocationMode
from controller.core.pod_selection import (
    LabelSelector,
    LabelSelectorError,
    SecurityGroupPolicy,
    allocation_mode,
    is_managed_pod,
    security_groups_for,
    shares_eni,
)

MANAGED = LabelSelector.parse("netalloc.dev/managed=true")


def pod(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web", "tier": "front"}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "nginx"}]},
        "status": {"phase": "Pending"},
    }
    for path, value in overrides.items():
        section, _, field = path.partition("__")
        body[section][field] = value
    return body


def policy(
    name: str, groups: list[str], pod_selector: Any = None, sa_selector: Any = None, ns: str = "shop"
) -> Any:
    return SecurityGroupPolicy.from_k8s(
        {
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "podSelector": pod_selector,
                "serviceAccountSelector": sa_selector,
                "securityGroups": {"groupIds": groups},
            },
        }
    )


def test_scheduled_pod_in_a_managed_namespace_is_managed() -> None:
    assert is_managed_pod(pod(), {"netalloc.dev/managed": "true"}, MANAGED)


@pytest.mark.parametrize(
    ("overrides", "ns_labels"),
    [
        ({}, {}),
        ({"spec__hostNetwork": True}, {"netalloc.dev/managed": "true"}),
        ({"spec__nodeName": None}, {"netalloc.dev/managed": "true"}),
        ({"status__phase": "Succeeded"}, {"netalloc.dev/managed": "true"}),
        ({"metadata__deletionTimestamp": "2026-01-01T00:00:00Z"}, {"netalloc.dev/managed": "true"}),
    ],
)
def test_pods_that_are_not_managed(overrides: dict[str, Any], ns_labels: dict[str, str]) -> None:
    assert not is_managed_pod(pod(**overrides), ns_labels, MANAGED)


def test_matching_policies_in_the_pods_namespace_are_unioned() -> None:
    policies = [
        policy("a", ["sg-0000000000000000a"], {"matchLabels": {"app": "web"}}),
        policy(
            "b",
            ["sg-0000000000000000b"],
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]},
        ),
        policy("c", ["sg-0000000000000000c"], {"matchLabels": {"app": "db"}}),
        policy("other-ns", ["sg-0000000000000000d"], {"matchLabels": {"app": "web"}}, ns="elsewhere"),
    ]
    assert security_groups_for(pod(), policies) == ("sg-0000000000000000a", "sg-0000000000000000b")


def test_both_selectors_must_match_when_both_are_set() -> None:
    both = policy("both", ["sg-1"], {"matchLabels": {"app": "web"}}, {"matchLabels": {"role": "payments"}})
    assert security_groups_for(pod(), [both], {"role": "payments"}) == ("sg-1",)
    assert security_groups_for(pod(), [both], {"role": "other"}) == ()


def test_service_account_selector_alone_matches_by_service_account_labels() -> None:
    sa_only = policy("sa", ["sg-2"], None, {"matchLabels": {"team": "a"}})
    assert security_groups_for(pod(), [sa_only], {"team": "a"}) == ("sg-2",)
    assert security_groups_for(pod(), [sa_only], {}) == ()


def test_mode_follows_groups_then_the_pool() -> None:
    assert allocation_mode(("sg-1",), prefix_delegation=True) is AllocationMode.BRANCH_ENI
    assert allocation_mode((), prefix_delegation=True) is AllocationMode.PREFIX_IP
    assert allocation_mode((), prefix_delegation=False) is AllocationMode.SECONDARY_IP


def test_selector_parsing_and_operators() -> None:
    selector = LabelSelector.parse("env=prod,tier!=db,team,!legacy")
    assert selector.matches({"env": "prod", "tier": "web", "team": "x"})
    assert not selector.matches({"env": "prod", "tier": "db", "team": "x"})
    assert not selector.matches({"env": "prod", "team": "x", "legacy": "1"})
    assert not selector.matches({"env": "prod"})
    with pytest.raises(LabelSelectorError, match="empty key"):
        LabelSelector.parse("=x")


def _sharing(name: str, groups: list[str]) -> SecurityGroupPolicy:
    body = {
        "metadata": {"name": name, "namespace": "shop", "annotations": {"netalloc.dev/eni-sharing": "node"}},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "securityGroups": {"groupIds": groups}},
    }
    return SecurityGroupPolicy.from_k8s(body)


def test_eni_sharing_is_opted_into_per_policy_or_everywhere() -> None:
    web = {"matchLabels": {"app": "web"}}
    opted = _sharing("web-shared", ["sg-00000001"])
    plain = policy("web-own", ["sg-00000002"], pod_selector=web)
    assert opted.eni_sharing and not plain.eni_sharing
    assert shares_eni(pod(), [opted])
    assert not shares_eni(pod(), [plain])
    assert not shares_eni(pod(), [opted, plain])  # one policy that wants an ENI per pod decides
    assert shares_eni(pod(), [plain], everywhere=True)  # SHARED_ENI_FOR_POD_SG=true
    assert not shares_eni(pod(), [])  # no policy, no groups: nothing to share
    other = SecurityGroupPolicy.from_k8s(
        {
            "metadata": {
                "name": "x",
                "namespace": "shop",
                "annotations": {"netalloc.dev/eni-sharing": "pod"},
            },
            "spec": {"podSelector": web, "securityGroups": {"groupIds": ["sg-00000003"]}},
        }
    )
    assert not other.eni_sharing  # only "node" opts in
    assert allocation_mode(("sg-00000001",), False, shared=True) is AllocationMode.SHARED_ENI
    assert allocation_mode(("sg-00000001",), True, shared=False) is AllocationMode.BRANCH_ENI
    assert allocation_mode((), False, shared=True) is AllocationMode.SECONDARY_IP
