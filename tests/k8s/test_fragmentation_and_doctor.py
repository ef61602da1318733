"""Issue 11: fragmentation seen before it bites, the prefix fallback, and `kubectl netalloc doctor`.

The real controller (harness) in prefix mode on a subnet fragmented so that it keeps thousands of free
addresses and no free aligned /28; the doctor runs as the kubectl plugin, a separate process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.k8s.harness import MANAGED_NAMESPACE, SimCluster, fast_config, wait_until
from controller.settings import PoolSettings

pytestmark = pytest.mark.slow
TIMEOUT = 20.0
PLUGIN = Path(sys.executable).parent / "kubectl-netalloc"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[SimCluster, Path]]:
    pool = PoolSettings(
        enable_prefix_delegation=True, warm_prefix_target=1, ip_cooldown_s=0.3, excess_release_delay_s=0.5
    )
    with SimCluster(config=fast_config(pool), seed=11, rbac=False) as running:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(running.emulator.kubeconfig()))
        yield running, kubeconfig


def doctor(kubeconfig: Path, *args: str) -> dict[str, Any]:
    command = [str(PLUGIN)] if PLUGIN.exists() else [sys.executable, "-m", "controller.cli"]
    done = subprocess.run(
        [*command, "doctor", *args, "--kubeconfig", str(kubeconfig), "--output", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def pool_status(cluster: SimCluster) -> dict[str, Any]:
    pools = cluster.pools()
    return (pools[0].get("status") or {}) if pools else {}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def test_fragmentation_is_reported_pods_fall_back_and_come_back_and_doctor_says_what_to_do(
    cluster: tuple[SimCluster, Path],
) -> None:
    sim, kubeconfig = cluster
    assert PLUGIN.exists() or shutil.which("kubectl-netalloc") is None  # the console script is installed
    sim.add_node("n1", "c5.4xlarge")
    sim.start_controller()
    assert wait_until(
        lambda: pool_status(sim).get("subnet", {}).get("freePrefixBlocks", 0) > 0, timeout=TIMEOUT
    )
    subnet = sim.fleet.subnet.subnet_id
    occupied = sim.in_controller(lambda: sim.fleet.vpc.fragment(subnet, keep_free_per_block=15, seed=2))

    def fragmented() -> bool:
        status = pool_status(sim)
        return (
            condition(status, "SubnetFragmented").get("status") == "True"
            and status["subnet"]["freePrefixBlocks"] == 0
        )

    assert wait_until(fragmented, timeout=TIMEOUT), pool_status(sim)
    assert pool_status(sim)["subnet"]["freeAddresses"] >= 100
    controller = sim.controller
    assert controller is not None and controller.runtime is not None
    gauge = controller.runtime.ctx.metrics.subnet_free_prefix_blocks.labels(subnet=subnet)
    assert gauge._value.get() == 0
    assert wait_until(
        lambda: any(
            e["reason"] == "SubnetFragmented" and e["type"] == "Warning"
            for e in sim.emulator.list("v1", "Event")
        ),
        timeout=TIMEOUT,
    )
    report = doctor(kubeconfig, "subnet", subnet)
    assert "create-subnet-cidr-reservation" in report["advice"] and report["facts"]["freePrefixBlocks"] == 0

    names = [f"api-{i}" for i in range(24)]  # more than the one /28 the pool holds
    for name in names:
        sim.add_pod(name, "n1")

    def all_allocated() -> bool:
        pnas = {p["metadata"]["name"]: p for p in sim.pnas()}
        return all((pnas.get(n, {}).get("status") or {}).get("state") == "Allocated" for n in names)

    assert wait_until(all_allocated, timeout=TIMEOUT)
    fallback = [p for p in sim.allocated() if p["status"]["reason"] == "PrefixFallback"]
    assert fallback, "no pod was served by the fallback"
    assert wait_until(
        lambda: all(
            p["spec"]["mode"] == "SecondaryIP"
            for p in sim.allocated()
            if p["status"]["reason"] == "PrefixFallback"
        ),
        timeout=TIMEOUT,
    )
    assert all(p["status"].get("prefix") is None for p in fallback)
    told = doctor(kubeconfig, "pod", f"{MANAGED_NAMESPACE}/{fallback[0]['metadata']['name']}")
    assert told["networked"] is True and "secondary IP" in told["advice"]

    sim.in_controller(lambda: sim.fleet.vpc.vacate(subnet, occupied))
    for pna in fallback:
        sim.delete_pod(pna["metadata"]["name"])
    assert wait_until(
        lambda: condition(pool_status(sim), "SubnetFragmented").get("status") == "False", timeout=TIMEOUT
    )
    later = [f"later-{i}" for i in range(4)]
    for name in later:
        sim.add_pod(name, "n1")
    assert wait_until(
        lambda: (
            all(
                (p.get("status") or {}).get("state") == "Allocated" and p["status"].get("prefix")
                for p in sim.pnas()
                if p["metadata"]["name"] in later
            )
            and len([p for p in sim.pnas() if p["metadata"]["name"] in later]) == 4
        ),
        timeout=TIMEOUT,
    ), [p.get("status") for p in sim.pnas() if p["metadata"]["name"] in later]
    node = doctor(kubeconfig, "node", "n1")
    assert node["facts"]["ready"] == "True" and node["facts"]["subnet"]["fragmented"] is False


def test_doctor_explains_a_pod_in_an_unmanaged_namespace(cluster: tuple[SimCluster, Path]) -> None:
    sim, kubeconfig = cluster
    sim.emulator.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plain"}})
    sim.add_node("n1")
    sim.start_controller()
    sim.add_pod("lonely", "n1", namespace="plain")
    told = doctor(kubeconfig, "pod", "plain/lonely")
    assert told["networked"] is False and "netalloc.dev/managed=true" in told["advice"]
