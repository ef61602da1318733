"""NodeNetworkPool spec and status: the mode follows the settings, Ready keeps its transition time."""

from __future__ import annotations

from controller.k8s.nnp_mapping import (
    POOL_FINALIZER,
    new_nnp,
    nnp_spec,
    ready_condition,
    spec_outdated,
    unready_status,
)
from controller.k8s.objects import NodeView, parse_provider_id
from controller.settings import PoolSettings


def test_provider_ids_parse_only_for_ec2() -> None:
    parsed = parse_provider_id("aws:///us-west-2a/i-0123456789abcdef0")
    assert parsed is not None and parsed.instance_id == "i-0123456789abcdef0" and parsed.zone == "us-west-2a"
    for other in ("", "gce://p/z/n", "aws:///us-west-2a/not-an-id", "kind://docker/kind/node"):
        assert parse_provider_id(other) is None


def test_a_node_view_reads_the_instance_from_its_provider_id() -> None:
    node = NodeView.from_k8s(
        {
            "metadata": {"name": "n", "uid": "u", "labels": {"node.kubernetes.io/instance-type": "m5.large"}},
            "spec": {"providerID": "aws:///us-east-1a/i-0123456789abcdef0"},
        }
    )
    assert node.instance_id == "i-0123456789abcdef0" and node.instance_type == "m5.large"


def test_the_spec_mode_follows_the_settings_and_an_unknown_subnet_keeps_the_stored_one() -> None:
    old = nnp_spec(
        node_name="n",
        instance_id="i-1",
        instance_type="m5.large",
        subnet_id="subnet-1",
        settings=PoolSettings(),
    )
    assert old["mode"] == "SecondaryIP"
    prefix = nnp_spec(
        node_name="n",
        instance_id="i-1",
        instance_type="m5.large",
        subnet_id=None,
        settings=PoolSettings(enable_prefix_delegation=True),
    )
    assert prefix["mode"] == "PrefixDelegation" and "subnetId" not in prefix
    assert spec_outdated(old, prefix)
    same = nnp_spec(
        node_name="n", instance_id="i-1", instance_type="m5.large", subnet_id=None, settings=PoolSettings()
    )
    assert not spec_outdated(old, same)


def test_ready_keeps_its_transition_time_while_its_status_stays() -> None:
    first = ready_condition([], ready=True, reason="PoolReady", message="ok", now=1_000.0)
    later = ready_condition([first], ready=True, reason="PoolReady", message="ok", now=9_000.0)
    assert later["lastTransitionTime"] == first["lastTransitionTime"]
    failed = ready_condition([later], ready=False, reason="Request.LimitExceeded", message="x", now=9_000.0)
    assert failed["lastTransitionTime"] != first["lastTransitionTime"]
    assert failed["reason"] == "RequestLimitExceeded"  # condition reasons hold no dots


def test_a_pool_that_cannot_be_made_says_why() -> None:
    status = unready_status(
        reason="UnknownInstanceType", message="unknown instance type 'x9'", previous={}, now=5.0
    )
    (ready,) = status["conditions"]
    assert (
        ready["status"] == "False" and ready["reason"] == "UnknownInstanceType" and "x9" in ready["message"]
    )


def test_a_new_pool_record_has_netalloc_s_finalizer() -> None:
    node = NodeView(name="n", uid="u")
    body = new_nnp(node=node, spec={"nodeName": "n"})
    assert body["metadata"]["finalizers"] == [POOL_FINALIZER]
    assert body["metadata"]["ownerReferences"][0]["uid"] == "u"
