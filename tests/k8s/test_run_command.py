"""`netalloc run --kubeconfig K --ec2 sim` as its own process against an API server it knows only by URL.

This is what a user does on a test cluster without an AWS account: nodes get simulated instances with
their own ids and types, pods get PodNetworkAllocations, and no pod is ever written to.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from controller.k8s.api_emulator import KubeApiEmulator
from controller.k8s.sandbox import EmulatorThread, crd_directory

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeApiEmulator, Path]]:
    emulator = KubeApiEmulator()
    server = EmulatorThread(emulator)
    server.start()
    emulator.install_crds_from(crd_directory(), recursive=True)
    for name, labels in (("netalloc-system", {}), ("shop", {"netalloc.dev/managed": "true"})):
        emulator.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(emulator.kubeconfig()))
    try:
        yield emulator, kubeconfig
    finally:
        server.stop()


def wait(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_run_with_a_kubeconfig_and_the_simulated_vpc(cluster: tuple[KubeApiEmulator, Path]) -> None:
    emulator, kubeconfig = cluster
    process = start_run(kubeconfig, {"ENABLE_PREFIX_DELEGATION": "true"}, output=subprocess.PIPE)
    try:
        for i, instance_type in enumerate(("m5.large", "c5.4xlarge")):
            emulator.create(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": f"ip-10-0-0-{i}",
                        "labels": {"node.kubernetes.io/instance-type": instance_type},
                    },
                    "spec": {"providerID": f"aws:///us-west-2a/i-0{i}23456789abcdef0"},
                }
            )
        emulator.create(
            {
                "apiVersion": "vpcresources.k8s.aws/v1beta1",
                "kind": "SecurityGroupPolicy",
                "metadata": {"name": "web", "namespace": "shop"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "securityGroups": {"groupIds": ["sg-0a1b2c3d4e5f60718"]},  # a real cluster's id
                },
            }
        )
        pods = []
        for i in range(8):
            pods.append(
                emulator.create(
                    {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {
                            "name": f"web-{i}",
                            "namespace": "shop",
                            "labels": {"app": "web" if i < 3 else "api"},
                        },
                        "spec": {
                            "nodeName": f"ip-10-0-0-{i % 2}",
                            "containers": [{"name": "c", "image": "nginx"}],
                        },
                    }
                )
            )

        def allocated() -> int:
            pnas = emulator.list("netalloc.dev/v1alpha1", "PodNetworkAllocation")
            return sum(1 for p in pnas if (p.get("status") or {}).get("state") == "Allocated")

        wait(lambda: allocated() == 8)
        pnas = emulator.list("netalloc.dev/v1alpha1", "PodNetworkAllocation")
        branch = [p for p in pnas if p["spec"]["mode"] == "BranchENI"]
        assert len(branch) == 3 and all(
            p["status"]["securityGroupIds"] == ["sg-0a1b2c3d4e5f60718"] for p in branch
        )
        pools = emulator.list("netalloc.dev/v1alpha1", "NodeNetworkPool")
        assert sorted(p["spec"]["instanceId"] for p in pools) == [
            "i-0023456789abcdef0",
            "i-0123456789abcdef0",
        ]
        for pod in pods:
            now = emulator.get("v1", "Pod", pod["metadata"]["name"], "shop")
            assert now is not None
            assert now["metadata"]["resourceVersion"] == pod["metadata"]["resourceVersion"]
        assert emulator.pod_writes() == []
        leases = emulator.list("coordination.k8s.io/v1", "Lease", namespace="netalloc-system")
        assert len(leases) == 1 and leases[0]["spec"]["holderIdentity"], leases  # it led through a Lease
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output[-3000:]


def start_run(
    kubeconfig: Path, settings: dict[str, str] | None = None, *, output: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """`netalloc run --ec2 sim` as its own process (with leader election, as deployed)."""
    env = {**os.environ, "ENABLE_POD_ENI": "true", "CLUSTER_NAME": "trial", **(settings or {})}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--ec2",
            "sim",
            "--metrics-port",
            "0",
            "--health-port",
            "0",
            "--log-format",
            "json",
        ],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT if output == subprocess.PIPE else subprocess.DEVNULL,
        text=True,
    )


def test_a_standby_takes_over_a_killed_leader_s_simulated_vpc_without_giving_an_address_twice(
    cluster: tuple[KubeApiEmulator, Path],
) -> None:
    """Issue 7 item 14: `--ec2 sim` rebuilds its VPC from the cluster's records when a replica leads."""
    emulator, kubeconfig = cluster
    emulator.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1", "labels": {"node.kubernetes.io/instance-type": "m5.xlarge"}},
            "spec": {"providerID": "aws:///us-west-2a/i-0923456789abcdef0"},
        }
    )
    emulator.create(
        {
            "apiVersion": "vpcresources.k8s.aws/v1beta1",
            "kind": "SecurityGroupPolicy",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "web"}},
                "securityGroups": {"groupIds": ["sg-0a1b2c3d4e5f60718"]},
            },
        }
    )

    def pod(name: str, app: str) -> None:
        emulator.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx"}]},
            }
        )

    def held() -> dict[str, tuple[str, str]]:
        pnas = emulator.list("netalloc.dev/v1alpha1", "PodNetworkAllocation")
        return {
            p["metadata"]["name"]: (p["status"]["ip"], p["status"]["eniId"])
            for p in pnas
            if (p.get("status") or {}).get("state") == "Allocated"
        }

    leader = start_run(kubeconfig, {"WARM_BRANCH_ENI_TARGET": "1"})
    standby = None
    try:
        for i in range(6):
            pod(f"first-{i}", "web" if i < 2 else "api")
        wait(lambda: len(held()) == 6)
        wait(
            lambda: bool(
                emulator.list("netalloc.dev/v1alpha1", "NodeNetworkPool")[0].get("status", {}).get("enis")
            )
        )
        standby = start_run(kubeconfig, {"WARM_BRANCH_ENI_TARGET": "1"})
        time.sleep(2)  # the standby waits for the Lease
        before = held()
        leader.kill()  # SIGKILL: no release of the Lease, no last write
        leader.wait(timeout=30)
        for i in range(6):
            pod(f"second-{i}", "web" if i < 2 else "api")
        wait(lambda: len(held()) == 12, timeout=90)  # the Lease expires (15 s), the standby leads
        after = held()
        assert {name: after[name] for name in before} == before, "a running pod's address changed"
        ips = [ip for ip, _ in after.values()]
        assert len(set(ips)) == len(ips), f"an address was given twice: {sorted(ips)}"
        branches = [eni for name, (_, eni) in after.items() if name.split("-")[1] in ("0", "1")]
        assert len(set(branches)) == len(branches) == 4
    finally:
        for process in (leader, standby):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)
