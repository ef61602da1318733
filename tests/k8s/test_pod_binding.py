"""Which pods get a PNA, with which mode and groups: derived from the pod, never from a PNA's spec."""

from __future__ import annotations

from typing import Any

from controller.core.allocation_model import AllocationMode
from controller.core.pod_selection import LabelSelector
from controller.k8s.objects import PnaSpec, PnaView, PodView, PolicyView, pack_json
from controller.k8s.pna_mapping import status_to_k8s
from controller.k8s.reconcilers.pod_binding import desired_spec
from tests.k8s.test_pna_mapping import allocated

SELECTOR = LabelSelector.parse("netalloc.dev/managed=true")
MANAGED = {"netalloc.dev/managed": "true"}


def pod(**fields: Any) -> PodView:
    values: dict[str, Any] = {
        "namespace": "ns",
        "name": "p",
        "uid": "u1",
        "node_name": "n1",
        "labels": {"app": "web"},
    }
    values.update(fields)
    return PodView(**values)


def policy(groups: list[str], *, sa: dict[str, str] | None = None) -> PolicyView:
    spec: dict[str, Any] = {"securityGroups": {"groupIds": groups}}
    if sa is None:
        spec["podSelector"] = {"matchLabels": {"app": "web"}}
    else:
        spec["serviceAccountSelector"] = {"matchLabels": sa}
    return PolicyView.from_k8s({"metadata": {"name": "sgp", "namespace": "ns", "uid": "x"}, "spec": spec})


def desired(p: PodView | None, existing: PnaView | None = None, **kw: Any) -> PnaSpec | None:
    values: dict[str, Any] = {
        "namespace_labels": MANAGED,
        "policies": [],
        "service_account_labels": {},
        "selector": SELECTOR,
        "prefix_delegation": False,
    }
    values.update(kw)
    return desired_spec(p, existing, **values)


def pna(spec: PnaSpec, status: dict[str, Any] | None = None) -> PnaView:
    return PnaView(
        namespace="ns", name=spec.pod_name, uid="pna", spec=spec, packed_status=pack_json(status or {})
    )


def test_only_scheduled_live_pods_in_managed_namespaces_get_one() -> None:
    assert desired(pod()) is not None
    assert desired(pod(node_name="")) is None
    assert desired(pod(host_network=True)) is None
    assert desired(pod(phase="Succeeded")) is None
    assert desired(pod(), namespace_labels={}) is None
    assert desired(pod(), namespace_labels=None) is None
    assert desired(None) is None
    assert desired(pod(deleting=True)) is None  # no new PNA for a pod on its way out


def test_mode_and_groups_come_from_the_policies() -> None:
    spec = desired(pod(), policies=[policy(["sg-0b"]), policy(["sg-0a"])])
    assert (
        spec is not None
        and spec.mode is AllocationMode.BRANCH_ENI
        and spec.security_group_ids == ("sg-0a", "sg-0b")
    )
    plain = desired(pod(), prefix_delegation=True)
    assert plain is not None and plain.mode is AllocationMode.PREFIX_IP


def test_a_service_account_selector_matches_through_the_account_s_labels() -> None:
    matched = desired(
        pod(), policies=[policy(["sg-0c"], sa={"team": "pay"})], service_account_labels={"team": "pay"}
    )
    assert matched is not None and matched.security_group_ids == ("sg-0c",)
    unmatched = desired(pod(), policies=[policy(["sg-0c"], sa={"team": "pay"})], service_account_labels={})
    assert unmatched is not None and unmatched.mode is AllocationMode.SECONDARY_IP


def test_a_pna_that_holds_an_address_keeps_the_spec_of_what_it_holds() -> None:
    hand_edited = PnaSpec(
        pod_name="p",
        pod_uid="u1",
        node_name="n1",
        mode=AllocationMode.BRANCH_ENI,
        security_group_ids=("sg-0x",),
    )
    holding = pna(hand_edited, status_to_k8s(allocated()))  # it holds a secondary IP
    spec = desired(pod(), holding, policies=[policy(["sg-0a"])], namespace_labels={})
    assert spec is not None and spec.mode is AllocationMode.SECONDARY_IP and spec.security_group_ids == ()
    assert desired(pod(deleting=True), holding) is not None  # kept while the pod's containers stop


def test_a_pna_of_another_pod_with_the_same_name_is_not_kept() -> None:
    old = pna(
        PnaSpec(pod_name="p", pod_uid="old", node_name="n1", mode=AllocationMode.SECONDARY_IP),
        status_to_k8s(allocated()),
    )
    spec = desired(pod(uid="new"), old)
    assert spec is not None and spec.pod_uid == "new"


def test_a_policy_annotated_for_eni_sharing_or_the_global_setting_gives_shared_eni() -> None:
    sharing = PolicyView.from_k8s(
        {
            "metadata": {
                "name": "sgp",
                "namespace": "ns",
                "uid": "x",
                "annotations": {"netalloc.dev/eni-sharing": "node"},
            },
            "spec": {
                "podSelector": {"matchLabels": {"app": "web"}},
                "securityGroups": {"groupIds": ["sg-0a"]},
            },
        }
    )
    spec = desired(pod(), policies=[sharing])
    assert (
        spec is not None and spec.mode is AllocationMode.SHARED_ENI and spec.security_group_ids == ("sg-0a",)
    )
    everywhere = desired(pod(), policies=[policy(["sg-0a"])], shared_eni=True)
    assert everywhere is not None and everywhere.mode is AllocationMode.SHARED_ENI
    assert desired(pod(), policies=[policy(["sg-0a"])]).mode is AllocationMode.BRANCH_ENI  # type: ignore[union-attr]
    plain = desired(pod(), shared_eni=True)  # no groups: an ordinary address
    assert plain is not None and plain.mode is AllocationMode.SECONDARY_IP
