"""The crd side of `netalloc compare` is netalloc's own runtime: its KubePort over the simulated API
server behaves as a kube-apiserver does where the runtime depends on it, and a run goes through the
runtime's queue and reconcilers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controller.clock import LoopClock
from controller.k8s.kube_api import AlreadyExists, Conflict, NotFound
from controller.k8s.pna_mapping import RELEASE_FINALIZER
from controller.k8s.resources import NODES, POD_NETWORK_ALLOCATION, PODS
from controller.k8s.runtime import ControllerRuntime
from controller.research.api_server import ApiServer, KubeObject, LatencyModel
from controller.research.baseline_params import BaselineParams
from controller.research.compare import _make_approach
from controller.research.crd_allocator import CrdAllocator
from controller.research.metrics import MetricsRecorder
from controller.research.scenarios import ScenarioName, scenario_params
from controller.research.sim_kube import SimKube
from controller.research.sim_world import SimWorld
from controller.research.virtual_time import run_virtual
from controller.research.workload import Workload


def _server() -> ApiServer:
    loop = asyncio.get_running_loop()
    return ApiServer(
        LoopClock(),
        schedule_at=lambda when, cb: (loop.call_at(when, cb), None)[1],
        seed=1,
        latency=LatencyModel(0.015, 0.084),
        watch_delay_s=0.05,
    )


def _kube(api: ApiServer) -> SimKube:
    return SimKube(api, api.client("netalloc", qps=None, burst=None), zone_of=lambda _i: "us-west-2a")


def _pna(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "netalloc.dev/v1alpha1",
        "kind": "PodNetworkAllocation",
        "metadata": {"name": name, "namespace": "apps", "finalizers": [RELEASE_FINALIZER]},
        "spec": {"podName": name, "podUID": "u1", "nodeName": "n1", "mode": "BranchENI"},
    }


def test_a_delete_waits_for_finalizers_and_completes_when_the_last_is_patched_away() -> None:
    async def scenario() -> None:
        api = _server()
        kube = _kube(api)
        created = await kube.create(POD_NETWORK_ALLOCATION, _pna("p"))
        kept = await kube.delete(POD_NETWORK_ALLOCATION, "p", "apps")
        assert kept is not None and kept["metadata"]["deletionTimestamp"]
        assert api.peek("PodNetworkAllocation", "apps", "p") is not None
        version = kept["metadata"]["resourceVersion"]
        assert version != created["metadata"]["resourceVersion"]
        await kube.merge_patch(
            POD_NETWORK_ALLOCATION,
            "p",
            {"metadata": {"finalizers": [], "resourceVersion": version}},
            "apps",
        )
        assert api.peek("PodNetworkAllocation", "apps", "p") is None
        assert await kube.get(POD_NETWORK_ALLOCATION, "p", "apps") is None

    run_virtual(scenario())


def test_preconditions_and_errors_are_the_runtime_s_typed_ones() -> None:
    async def scenario() -> None:
        api = _server()
        kube = _kube(api)
        created = await kube.create(POD_NETWORK_ALLOCATION, _pna("p"))
        with pytest.raises(AlreadyExists):
            await kube.create(POD_NETWORK_ALLOCATION, _pna("p"))
        await kube.merge_patch(
            POD_NETWORK_ALLOCATION, "p", {"status": {"state": "Pending"}}, "apps", subresource="status"
        )
        with pytest.raises(Conflict):  # the resourceVersion the patch was decided on is stale now
            await kube.merge_patch(
                POD_NETWORK_ALLOCATION,
                "p",
                {
                    "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
                    "status": {"state": "X"},
                },
                "apps",
                subresource="status",
            )
        with pytest.raises(Conflict):  # a delete of another object of the same name
            await kube.delete(POD_NETWORK_ALLOCATION, "p", "apps", uid="someone-else")
        with pytest.raises(NotFound):
            await kube.merge_patch(POD_NETWORK_ALLOCATION, "q", {"status": {}}, "apps", subresource="status")
        body = await kube.get(POD_NETWORK_ALLOCATION, "p", "apps")
        assert body is not None and body["status"] == {"state": "Pending"}
        assert body["metadata"]["finalizers"] == [RELEASE_FINALIZER]

    run_virtual(scenario())


def test_a_node_s_bare_instance_id_becomes_an_ec2_provider_id_and_events_are_counted() -> None:
    async def scenario() -> None:
        api = _server()
        kube = _kube(api)
        api.apply_create(KubeObject(kind="Node", namespace="", name="n1", spec={"providerID": "i-0abc"}))
        node = await kube.get(NODES, "n1")
        assert node is not None and node["spec"]["providerID"] == "aws:///us-west-2a/i-0abc"
        await kube.post_event(
            {"kind": "Node", "metadata": {"name": "n1"}}, event_type="Warning", reason="R", message="m"
        )
        stats = api.stats_for("netalloc")
        assert stats.writes_by_kind["Event"] == 1
        assert api.last_event[("Node", "", "n1")] == ("R", "m")

    run_virtual(scenario())


def test_the_crd_side_of_a_comparison_is_the_controller_runtime() -> None:
    """A small batch start-up: every pod is made ready by the runtime's reconcilers (its PNAs carry the
    runtime's finalizer and status), through one client, with no pod write."""
    params = scenario_params(ScenarioName.BATCH_SCALE_UP, scale=0.05)

    async def scenario() -> tuple[CrdAllocator, SimWorld]:
        recorder = MetricsRecorder(LoopClock())
        world = SimWorld(params=params, seed=1, recorder=recorder, baseline=BaselineParams())
        approach, _clients, _cooldown = _make_approach("crd", params, world, recorder, 1, BaselineParams())
        assert isinstance(approach, CrdAllocator)
        outcome = await Workload(
            params=params, world=world, approach=approach, recorder=recorder, seed=1
        ).run()
        assert outcome is not None
        return approach, world

    approach, world = run_virtual(scenario())
    assert isinstance(approach.runtime, ControllerRuntime)
    pnas = world.api.list_kind("PodNetworkAllocation")
    pods = world.api.list_kind("Pod")
    assert pods and len(pnas) == len(pods)
    assert all(p.meta.get("finalizers") == [RELEASE_FINALIZER] for p in pnas)
    assert {p.status.get("state") for p in pnas} == {"Allocated"}
    stats = world.api.stats_for("netalloc")
    assert stats.pod_writes == 0
    assert stats.writes_by_kind["PodNetworkAllocation"] >= 2 * len(pods)  # a create and a status write each
    assert len(approach.runtime.latencies) == len(pods)  # each allocation timed by the runtime's reconciler


def test_a_graceful_pod_delete_shows_the_pod_terminating_until_its_grace_period_ends() -> None:
    async def scenario() -> tuple[object, object, object]:
        api = _server()
        api.apply_create(KubeObject(kind="Pod", namespace="apps", name="p", spec={"nodeName": "n1"}))
        marked = api.apply_graceful_delete(("Pod", "apps", "p"))
        body = _kube(api).body(PODS, marked)
        during = api.peek("Pod", "apps", "p")
        api.apply_delete(("Pod", "apps", "p"))  # the kubelet is done
        return body["metadata"].get("deletionTimestamp"), during, api.peek("Pod", "apps", "p")

    stamp, during, after = run_virtual(scenario())
    assert stamp is not None and during is not None and after is None


def test_the_crd_side_says_when_it_is_quiet_and_reports_its_ec2_client_after_checking_it() -> None:
    params = scenario_params(ScenarioName.BATCH_SCALE_UP, scale=0.05)

    async def scenario() -> tuple[float | None, float | None, bool]:
        recorder = MetricsRecorder(LoopClock())
        world = SimWorld(params=params, seed=1, recorder=recorder, baseline=BaselineParams())
        approach, _clients, _cooldown = _make_approach("crd", params, world, recorder, 1, BaselineParams())
        assert isinstance(approach, CrdAllocator)
        await Workload(params=params, world=world, approach=approach, recorder=recorder, seed=1).run()
        busy_due = approach.next_action_due()  # the warm pools are still filling in the background
        for _ in range(600):
            if approach.next_action_due() is None:
                break
            await asyncio.sleep(1)
        return busy_due, approach.next_action_due(), approach.ec2_client_facts().same_as_boto3_adapter

    busy_due, quiet_due, same = run_virtual(scenario())
    assert busy_due is not None and quiet_due is None
    assert same
