"""Each reconciler on its own: called pass by pass (no kopf, no workers) against the API emulator and
the simulated VPC, so every outcome is the result of one known sequence of passes."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes import client as k8s

from controller.adapters.sim_vpc import LatencyConfig
from controller.clock import Clock, ManualClock, WallClock
from controller.core import tags as tagging
from controller.engine.node_network import NodeNetwork
from controller.instance_data import Ec2InstanceLimits
from controller.k8s.api_emulator import KubeApiEmulator
from controller.k8s.harness import fast_config
from controller.k8s.kube_api import Conflict, KubeApi
from controller.k8s.objects import PnaView
from controller.k8s.reconcilers import LEAKS, node_item, pna_item
from controller.k8s.reconcilers.context import ControllerConfig, PoolPhase
from controller.k8s.reconcilers.holdings import collect_orphan_holdings
from controller.k8s.reconcilers.status_writer import write_pna_status
from controller.k8s.runtime import KINDS, ControllerRuntime
from controller.k8s.sandbox import crd_directory
from controller.ports.ec2 import InterfaceType
from controller.settings import PoolSettings
from controller.sim_fleet import SimFleet


class Bench:
    def __init__(self, emulator: KubeApiEmulator, fleet: SimFleet, runtime: ControllerRuntime) -> None:
        self.emulator, self.fleet, self.runtime = emulator, fleet, runtime
        self.ctx = runtime.ctx

    async def sync(self) -> None:
        for kind in KINDS:
            await self.runtime.relist(kind)

    async def node(self, name: str, instance_type: str = "c5.4xlarge") -> str:
        vpc = self.fleet.vpc
        instance = vpc.launch_instance(
            instance_type, self.fleet.subnet.subnet_id, security_group_ids=[vpc.default_security_group_id]
        )
        self.emulator.create(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"node.kubernetes.io/instance-type": instance_type}},
                "spec": {"providerID": f"aws:///{instance.availability_zone}/{instance.instance_id}"},
            }
        )
        await self.sync()
        await self.runtime.reconcilers.reconcile(node_item(name))
        return instance.instance_id

    async def pod(self, name: str, node: str) -> dict[str, Any]:
        body = self.emulator.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x"}]},
            }
        )
        await self.sync()
        await self.runtime.reconcilers.reconcile(pna_item("shop", name))
        return body


@contextlib.asynccontextmanager
async def open_bench(config: ControllerConfig, clock: Clock | None = None) -> AsyncIterator[Bench]:
    emulator = KubeApiEmulator(garbage_collection=False)
    emulator.install_crds_from(crd_directory(), recursive=True)
    emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "shop", "labels": {"netalloc.dev/managed": "true"}},
        }
    )
    async with emulator:
        configuration = k8s.Configuration()
        configuration.host = emulator.base_url
        kube = KubeApi.for_configuration(configuration)
        fleet = SimFleet(cluster_name="bench", clock=WallClock(), latency=LatencyConfig.none())
        runtime = ControllerRuntime(
            config=config,
            ec2=fleet.vpc,
            limits_for=Ec2InstanceLimits(fleet.vpc, fleet.catalog).get,
            kube=kube,
            clock=clock,
            seed=1,
        )
        try:
            yield Bench(emulator, fleet, runtime)
        finally:
            await runtime.ctx.events.close()
            await kube.close()


@pytest.fixture
async def bench() -> AsyncIterator[Bench]:
    async with open_bench(fast_config(cluster_name="bench")) as opened:
        yield opened


# ----- leak collection ------------------------------------------------------------------------------------


def tagged_eni(bench: Bench, instance_id: str, cluster_id: str | None = None) -> str:
    eni_id = f"eni-{abs(hash((instance_id, cluster_id))) % 10**17:017x}"
    eni = bench.fleet.vpc.restore_eni(
        eni_id=eni_id,
        subnet_id=bench.fleet.subnet.subnet_id,
        interface_type=InterfaceType.INTERFACE,
        tags=tagging.eni_tags(
            cluster="bench",
            instance_id=instance_id,
            owner="gone",
            role="pod-ips",
            cluster_id=bench.ctx.cluster_id() if cluster_id is None else cluster_id,
        ),
    )
    return eni.eni_id


async def test_the_leak_sweep_deletes_an_unknown_eni_only_on_its_second_sighting(bench: Bench) -> None:
    await bench.node("n1")
    leaked = tagged_eni(bench, "i-00000000000000dead")
    await bench.runtime.reconcilers.reconcile(LEAKS)
    assert bench.fleet.vpc.network_interface(leaked) is not None
    await bench.runtime.reconcilers.reconcile(LEAKS)
    assert bench.fleet.vpc.network_interface(leaked) is None


async def test_another_cluster_with_the_same_name_never_loses_an_eni(bench: Bench) -> None:
    """Issue 7 item 12: the sweep deletes only ENIs tagged with this cluster's id (kube-system's UID)."""
    await bench.node("n1")
    assert bench.ctx.cluster_id()
    theirs = tagged_eni(bench, "i-0000000000000beef", cluster_id="another-clusters-kube-system-uid")
    untagged = tagged_eni(bench, "i-0000000000000cafe", cluster_id="")  # made before ids were tagged
    for _ in range(4):
        await bench.runtime.reconcilers.reconcile(LEAKS)
    assert bench.fleet.vpc.network_interface(theirs) is not None
    assert bench.fleet.vpc.network_interface(untagged) is not None


async def test_every_eni_netalloc_makes_carries_the_cluster_id(bench: Bench) -> None:
    await bench.node("n1")
    made = [e for e in bench.fleet.vpc.network_interfaces() if e.tags.get(tagging.TAG_CLUSTER) == "bench"]
    assert made and all(e.tags.get(tagging.TAG_CLUSTER_ID) == bench.ctx.cluster_id() for e in made)


async def test_the_leak_sweep_never_touches_an_eni_of_a_current_node_s_instance(bench: Bench) -> None:
    instance = await bench.node("n1")
    stray = tagged_eni(bench, instance)  # not in the pool, but its instance is a current node's
    for _ in range(4):
        await bench.runtime.reconcilers.reconcile(LEAKS)
    assert bench.fleet.vpc.network_interface(stray) is not None


async def test_the_leak_sweep_waits_while_any_node_s_pool_is_not_registered(bench: Bench) -> None:
    await bench.node("n1")
    bench.fleet.vpc.faults.inject_throttling("DescribeInstances", times=50)
    await bench.node("n2")
    assert bench.ctx.pools.get("n2") is not None and bench.ctx.pools.get("n2").phase is PoolPhase.NOT_READY  # type: ignore[union-attr]
    leaked = tagged_eni(bench, "i-00000000000000dead")
    for _ in range(3):
        await bench.runtime.reconcilers.reconcile(LEAKS)
    assert bench.fleet.vpc.network_interface(leaked) is not None
    assert "n2" in bench.runtime.reconcilers.leaks.last_skip_reason


# ----- holdings within live allocations --------------------------------------------------------------------


async def test_a_holding_without_pna_or_pod_is_released_and_one_whose_pod_lives_is_kept(bench: Bench) -> None:
    await bench.node("n1")
    network = bench.runtime.networks["n1"]
    pod = await bench.pod("alive", "n1")
    alive_key = f"shop/alive/{pod['metadata']['uid']}"
    assert alive_key in network.held_keys()
    network.pool.take_ip("shop/ghost/00000000")
    bench.emulator.patch(
        "netalloc.dev/v1alpha1",
        "PodNetworkAllocation",
        "alive",
        {"metadata": {"finalizers": None}},
        namespace="shop",
    )
    bench.emulator.delete("netalloc.dev/v1alpha1", "PodNetworkAllocation", "alive", "shop")
    await bench.sync()
    released = await collect_orphan_holdings(bench.ctx, network)
    assert released == ["shop/ghost/00000000"]
    assert alive_key in network.held_keys()  # its pod runs: the PNA is made again, with this address


async def test_a_holding_is_kept_when_the_api_server_has_its_pna_and_the_cache_does_not(bench: Bench) -> None:
    await bench.node("n1")
    network = bench.runtime.networks["n1"]
    pod = await bench.pod("p", "n1")
    key = f"shop/p/{pod['metadata']['uid']}"
    bench.ctx.state.pnas.remove(("shop", "p"))
    bench.ctx.state.pods.remove(("shop", "p"))  # a cache that fell behind
    assert await collect_orphan_holdings(bench.ctx, network) == []
    assert key in network.held_keys()


# ----- the status writer -----------------------------------------------------------------------------------


async def test_a_status_write_on_a_stale_version_is_refused_and_the_cache_rereads(bench: Bench) -> None:
    await bench.node("n1")
    await bench.pod("p", "n1")
    stale = bench.ctx.state.pnas.get(("shop", "p"))
    assert stale is not None
    bench.emulator.patch(
        "netalloc.dev/v1alpha1",
        "PodNetworkAllocation",
        "p",
        {"metadata": {"labels": {"x": "y"}}},
        namespace="shop",
    )
    with pytest.raises(Conflict):
        await write_pna_status(bench.ctx, stale, {"reason": "Stale"})
    fresh = bench.ctx.state.pnas.get(("shop", "p"))
    assert isinstance(fresh, PnaView) and fresh.resource_version != stale.resource_version
    assert (
        bench.emulator.get("netalloc.dev/v1alpha1", "PodNetworkAllocation", "p", "shop")["status"]["reason"]
        != "Stale"
    )  # type: ignore[index]


# ----- node pools ------------------------------------------------------------------------------------


async def test_a_node_without_an_ec2_provider_id_is_not_served_and_says_why(bench: Bench) -> None:
    bench.emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "kind-1"},
            "spec": {"providerID": "kind://docker/kind/kind-1"},
        }
    )
    await bench.sync()
    await bench.runtime.reconcilers.reconcile(node_item("kind-1"))
    entry = bench.ctx.pools.get("kind-1")
    assert entry is not None and entry.error is not None and entry.error.code == "NodeNotEc2"
    assert "kind://docker/kind/kind-1" in bench.ctx.unavailable("kind-1").message
    assert not bench.emulator.list("netalloc.dev/v1alpha1", "NodeNetworkPool")


async def test_a_pool_record_deleted_by_hand_while_its_node_lives_is_made_again_without_a_drain(
    bench: Bench,
) -> None:
    await bench.node("n1")
    await bench.pod("p", "n1")
    network = bench.runtime.networks["n1"]
    bench.emulator.delete("netalloc.dev/v1alpha1", "NodeNetworkPool", "n1")
    await bench.sync()
    await bench.runtime.reconcilers.reconcile(node_item("n1"))
    await bench.sync()
    await bench.runtime.reconcilers.reconcile(node_item("n1"))
    assert bench.emulator.get("netalloc.dev/v1alpha1", "NodeNetworkPool", "n1") is not None
    assert bench.runtime.networks["n1"] is network and not network.draining
    assert network.held_keys()


async def test_a_node_gone_is_drained_only_after_the_api_server_confirms_it(bench: Bench) -> None:
    await bench.node("n1")
    bench.ctx.state.nodes.remove("n1")  # the cache lost it; the API server still has it
    await bench.runtime.reconcilers.reconcile(node_item("n1"))
    assert bench.ctx.pools.get("n1").phase is PoolPhase.REGISTERED  # type: ignore[union-attr]
    bench.emulator.delete("v1", "Node", "n1")
    await bench.sync()
    await bench.runtime.reconcilers.reconcile(node_item("n1"))
    assert bench.ctx.pools.get("n1").phase is PoolPhase.DRAINED  # type: ignore[union-attr]
    assert not bench.emulator.list("netalloc.dev/v1alpha1", "NodeNetworkPool")


def pool_status_writes(bench: Bench) -> int:
    kube = bench.ctx.kube
    assert isinstance(kube, KubeApi)
    return kube.writes[("patch", "nodenetworkpools/status")]


def timed_config() -> ControllerConfig:
    """The shipped intervals on a clock the test moves; a pool that tops up on its one ENI."""
    pool = PoolSettings(warm_ip_target=4)
    return fast_config(
        pool, cluster_name="bench", pool_status_interval_s=10.0, reconcile_interval_s=10.0, ec2_pacing_share=0
    )


async def warm_pool(bench: Bench, clock: ManualClock) -> NodeNetwork:
    """Node n1 registered, its warm-up done and its record written (the counts after their interval)."""
    await bench.node("n1")
    network = bench.runtime.networks["n1"]
    for _ in range(3):
        await network.settle()
        clock.advance(10.0)
        await bench.runtime.reconcilers.reconcile(node_item("n1"))
    return network


async def test_moved_pool_counts_wait_the_interval_from_when_they_moved_not_from_the_last_write() -> None:
    """Issue 10: an idle pool's record was last written long ago; the first pass of a burst found its
    counts moved and wrote them at once (one write per node inside the burst), and the burst's later
    counts waited for the next interval anyway. The counts wait the interval from when the pool says
    they moved, and the pass that holds them back asks to look again when they are due."""
    clock = ManualClock(1_700_000_000.0)
    async with open_bench(timed_config(), clock) as bench:
        network = await warm_pool(bench, clock)
        clock.advance(60.0)  # idle: the last write is long past
        settled = pool_status_writes(bench)
        await bench.runtime.reconcilers.reconcile(node_item("n1"))
        assert pool_status_writes(bench) == settled  # nothing moved, nothing written

        await bench.pod("p", "n1")  # an allocation: the pool's counts moved
        await network.settle()  # and its top-up (addresses on the same ENI)
        clock.advance(6.0)  # the next periodic pass comes a while later
        result = await bench.runtime.reconcilers.reconcile(node_item("n1"))
        assert pool_status_writes(bench) == settled  # not written while the burst may go on
        assert result.requeue_after == pytest.approx(4.0)  # due an interval after the allocation
        clock.advance(4.0)
        await bench.runtime.reconcilers.reconcile(node_item("n1"))
        assert pool_status_writes(bench) == settled + 1  # written once, within the interval
        record = bench.emulator.get("netalloc.dev/v1alpha1", "NodeNetworkPool", "n1")
        assert record is not None and record["status"]["usedIps"] == 1, record


async def test_a_pool_whose_enis_changed_is_written_at_once() -> None:
    clock = ManualClock(1_700_000_000.0)
    async with open_bench(timed_config(), clock) as bench:
        network = await warm_pool(bench, clock)
        before = pool_status_writes(bench)
        eni = next(iter(network.pool.enis))
        network.pool.enis.pop(eni)  # as if EC2 took it: the ENI set the record shows is wrong now
        await bench.runtime.reconcilers.reconcile(node_item("n1"))
        assert pool_status_writes(bench) == before + 1
        record = bench.emulator.get("netalloc.dev/v1alpha1", "NodeNetworkPool", "n1")
        assert record is not None and eni not in [e["eniId"] for e in record["status"]["enis"]]


# ----- allocation and release ---------------------------------------------------------------------------


async def test_an_allocated_status_the_pool_does_not_back_is_allocated_again(bench: Bench) -> None:
    await bench.node("n1")
    await bench.pod("p", "n1")
    network = bench.runtime.networks["n1"]
    before = bench.ctx.state.pnas.get(("shop", "p"))
    assert before is not None and before.status["state"] == "Allocated"
    key = before.allocation_key
    await network.release(key)
    network.pool.cooling_ips.clear()  # and its address is gone from EC2's side of the pool
    for eni in network.pool.enis.values():
        if before.status["ip"] in eni.ips:
            network.pool.remove_ips(eni.eni_id, [before.status["ip"]])
    await bench.runtime.reconcilers.reconcile(pna_item("shop", "p"))  # ResourcesLost, then a new address
    again = bench.ctx.state.pnas.get(("shop", "p"))
    assert (
        again is not None
        and again.status["state"] == "Allocated"
        and again.status["ip"] != before.status["ip"]
    )
    await bench.ctx.events.flush()
    events = bench.emulator.list("v1", "Event", namespace="shop")
    assert any(e["reason"] == "ResourcesLost" and before.status["ip"] in e["message"] for e in events)
    new_ip = again.status["ip"]
    assert any(e["type"] == "Normal" and new_ip in e["message"] for e in events), [
        (e["reason"], e["message"]) for e in events
    ]  # the new address is told, not only the lost one
    assert network.pool.holding_for(key) is not None


async def test_a_pod_on_a_node_without_a_pool_waits_with_the_reason(bench: Bench) -> None:
    await bench.pod("p", "nowhere")
    pna = bench.ctx.state.pnas.get(("shop", "p"))
    assert pna is not None
    assert (pna.status["state"], pna.status["reason"]) == ("WaitingForCapacity", "NodePoolNotReady")
    assert "nowhere does not exist" in pna.status["message"]


async def test_a_release_waits_until_the_node_s_pool_is_loaded(bench: Bench) -> None:
    await bench.node("n1")
    await bench.pod("p", "n1")
    key = bench.ctx.state.pnas.get(("shop", "p")).allocation_key  # type: ignore[union-attr]
    network = bench.runtime.networks["n1"]
    bench.ctx.pools.not_ready("n1", bench.ctx.unavailable("n1"))  # as after a restart, before registration
    bench.emulator.delete("v1", "Pod", "p", "shop")
    await bench.sync()
    result = await bench.runtime.reconcilers.reconcile(pna_item("shop", "p"))
    assert result.requeue_after is not None
    assert bench.emulator.get("netalloc.dev/v1alpha1", "PodNetworkAllocation", "p", "shop") is not None
    assert key in network.held_keys()
    bench.ctx.pools.registered(network, network.pool.instance_id)
    await bench.runtime.reconcilers.reconcile(pna_item("shop", "p"))
    assert bench.emulator.get("netalloc.dev/v1alpha1", "PodNetworkAllocation", "p", "shop") is None
    assert key not in network.held_keys()


async def test_a_pna_deleted_after_its_pod_is_released_even_when_the_cache_still_has_the_pod(
    bench: Bench,
) -> None:
    """The garbage collector deletes the PNA once the pod is gone; the PNA's event can come before the
    pod's. The cache still shows the pod, the API server does not: the address is released, not kept."""
    await bench.node("n1")
    await bench.pod("p", "n1")
    pna = bench.ctx.state.pnas.get(("shop", "p"))
    assert pna is not None and pna.status["state"] == "Allocated"
    key = pna.allocation_key
    network = bench.runtime.networks["n1"]
    bench.emulator.delete("v1", "Pod", "p", "shop")
    bench.emulator.delete("netalloc.dev/v1alpha1", "PodNetworkAllocation", "p", "shop")
    await bench.runtime.relist("podnetworkallocations")  # the pod watch lags: only the PNA's news came
    assert bench.ctx.state.pods.get(("shop", "p")) is not None
    await bench.runtime.reconcilers.reconcile(pna_item("shop", "p"))
    assert bench.emulator.get("netalloc.dev/v1alpha1", "PodNetworkAllocation", "p", "shop") is None
    assert key not in network.held_keys()
    assert bench.ctx.state.pods.get(("shop", "p")) is None  # the cache learnt it too


async def test_a_terminating_pod_s_holding_is_marked_returning_in_its_pool(bench: Bench) -> None:
    """Seen with deletionTimestamp (its grace period running), the pod's address or branch will come
    back: the pool's planner counts it, so it makes no replacement meanwhile."""
    await bench.node("n1")
    body = await bench.pod("p", "n1")
    key = f"shop/p/{body['metadata']['uid']}"
    network = bench.runtime.networks["n1"]
    assert key in network.held_keys() and key not in network.pool.returning
    bench.emulator.patch("v1", "Pod", "p", {"metadata": {"finalizers": ["test/hold"]}}, namespace="shop")
    bench.emulator.delete("v1", "Pod", "p", "shop")  # kept by the finalizer: terminating
    await bench.runtime.relist("pods")
    assert key in network.pool.returning


class CountingGets:
    """Counts the controller's GETs of pods (each one a request under the client's rate limit)."""

    def __init__(self, bench: Bench) -> None:
        self.pod_gets = 0
        kube = bench.ctx.kube
        real_get = kube.get

        async def get(resource: Any, name: str, namespace: str | None = None) -> Any:
            if resource.plural == "pods":
                self.pod_gets += 1
            return await real_get(resource, name, namespace)

        kube.get = get  # type: ignore[method-assign]


async def test_a_pod_whose_deleted_event_came_loses_its_pna_without_another_get(bench: Bench) -> None:
    """The watch said the pod (this UID) was deleted: a UID never comes back, so the PNA is deleted
    without asking the API server again. In a rollout that GET was one request in five per pod."""
    await bench.node("n1")
    body = await bench.pod("p", "n1")
    gets = CountingGets(bench)
    bench.emulator.delete("v1", "Pod", "p", "shop")
    bench.runtime.on_event("pods", "DELETED", body)
    await bench.runtime.reconcilers.reconcile(pna_item("shop", "p"))
    pna = bench.emulator.get("netalloc.dev/v1alpha1", "PodNetworkAllocation", "p", "shop")
    assert pna is None or pna["metadata"].get("deletionTimestamp")
    assert gets.pod_gets == 0


async def test_a_pod_gone_from_the_cache_without_its_deleted_event_is_asked_for_and_kept(
    bench: Bench,
) -> None:
    """Not seen deleted (a list from a stale cache, say): the server is asked, and a live pod keeps its
    PNA and its address."""
    await bench.node("n1")
    await bench.pod("p", "n1")
    pna = bench.ctx.state.pnas.get(("shop", "p"))
    assert pna is not None
    gets = CountingGets(bench)
    bench.ctx.state.pods.remove(("shop", "p"))
    await bench.runtime.reconcilers.reconcile(pna_item("shop", "p"))
    assert gets.pod_gets == 1
    kept = bench.emulator.get("netalloc.dev/v1alpha1", "PodNetworkAllocation", "p", "shop")
    assert kept is not None and not kept["metadata"].get("deletionTimestamp")
    assert pna.allocation_key in bench.runtime.networks["n1"].held_keys()


async def test_pods_under_a_policy_that_opts_into_sharing_get_one_shared_eni(bench: Bench) -> None:
    """Through the runtime: the SecurityGroupPolicy's annotation makes the PNAs SharedENI, and the two
    pods of the node share one ENI with exactly the policy's groups."""
    await bench.node("n1")
    group = bench.fleet.app_groups[0]
    bench.emulator.create(
        {
            "apiVersion": "vpcresources.k8s.aws/v1beta1",
            "kind": "SecurityGroupPolicy",
            "metadata": {
                "name": "shared",
                "namespace": "shop",
                "annotations": {"netalloc.dev/eni-sharing": "node"},
            },
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "securityGroups": {"groupIds": [group]}},
        }
    )
    for name in ("web-1", "web-2"):
        bench.emulator.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "shop", "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x"}]},
            }
        )
    await bench.sync()
    for name in ("web-1", "web-2"):
        await bench.runtime.reconcilers.reconcile(pna_item("shop", name))  # binding: the PNA
        await bench.runtime.reconcilers.reconcile(pna_item("shop", name))  # one allocation step
    records = [
        bench.emulator.get("netalloc.dev/v1alpha1", "PodNetworkAllocation", n, "shop")
        for n in ("web-1", "web-2")
    ]
    assert all(r is not None for r in records)
    statuses = [r["status"] for r in records if r is not None]
    assert [r["spec"]["mode"] for r in records if r is not None] == ["SharedENI", "SharedENI"]
    assert all(s["state"] == "Allocated" and s["securityGroupIds"] == [group] for s in statuses)
    assert statuses[0]["eniId"] == statuses[1]["eniId"] and statuses[0]["ip"] != statuses[1]["ip"]
    eni = bench.fleet.vpc.network_interface(statuses[0]["eniId"])
    assert eni is not None and eni.security_group_ids == (group,)
