"""Benchmark: netalloc-cni ADD and DEL for a pod whose PNA is already Allocated (a warm PNA).

Each sample is what kubelet's runtime does: the installed `netalloc-cni` console script as a
subprocess in the node's network namespace, CNI_* in its environment and the config on stdin, against
the API emulator (served from inside the node's netns). So a sample's time includes interpreter
start-up, one PNA list, the netlink work and the process exit. Needs root (network namespaces).

Printed (and with `--output json`, under these keys): add_p50_s, add_p99_s, del_p50_s, del_p99_s,
samples, mode. Asserts nothing about speed.

Run: `sudo .venv/bin/python benchmarks/cni_add.py --samples 50 [--mode BranchENI]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from controller.cni.lab import Lab, entered
from controller.k8s.api_emulator import KubeApiEmulator
from controller.k8s.sandbox import EmulatorThread, crd_directory

PLUGIN = Path(sys.executable).with_name("netalloc-cni")
STAND_IN = "vlanstandin5"
MAC = "0a:1b:2c:3d:4e:05"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def pna(i: int, mode: str, subnet: str) -> dict[str, Any]:
    ip = f"10.77.{1 + i // 200}.{2 + i % 200}"
    status: dict[str, Any] = {
        "state": "Allocated",
        "reason": "Allocated",
        "message": "",
        "ip": ip,
        "eniId": "eni-0123456789abcdef0",
        "subnetCidr": subnet,
    }
    if mode == "BranchENI":
        status.update(vlanId=5, macAddress=MAC)
    else:
        status["prefix"] = f"10.77.{1 + i // 200}.0/24"
    return {
        "apiVersion": "netalloc.dev/v1alpha1",
        "kind": "PodNetworkAllocation",
        "metadata": {"name": f"pod-{i}", "namespace": "shop", "labels": {"netalloc.dev/node": "node-1"}},
        "spec": {"podName": f"pod-{i}", "podUID": f"uid-{i}", "nodeName": "node-1", "mode": mode},
        "status": status,
    }


def invoke(node: str, command: str, conf: bytes, i: int, netns: str) -> float:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": f"bench-{i}",
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/usr/lib/cni",
        "CNI_ARGS": f"K8S_POD_NAMESPACE=shop;K8S_POD_NAME=pod-{i};K8S_POD_UID=uid-{i}",
    }
    started = time.perf_counter()
    done = subprocess.run(
        ["nsenter", f"--net=/var/run/netns/{node}", str(PLUGIN)],
        input=conf,
        env=env,
        capture_output=True,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command} of sample {i} failed: {done.stdout.decode()}")
    return elapsed


def run(samples: int, mode: str) -> dict[str, Any]:
    lab = Lab(tag=f"nab{os.getpid() % 100000}")
    emulator = KubeApiEmulator()
    server = EmulatorThread(emulator)
    with tempfile.TemporaryDirectory(prefix="netalloc-cni-bench-") as scratch:
        try:
            lab.build()
            if mode == "BranchENI":
                lab.branch_stand_in(STAND_IN, 5, MAC)
            with entered(lab.node):
                server.start()
            emulator.install_crds_from(crd_directory(), recursive=True)
            emulator.create(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": "shop", "labels": {"netalloc.dev/managed": "true"}},
                }
            )
            kubeconfig = Path(scratch) / "kubeconfig"
            kubeconfig.write_text(yaml.safe_dump(emulator.kubeconfig()))
            conf = {
                "cniVersion": "1.0.0",
                "name": "netalloc",
                "type": "netalloc-cni",
                "kubeconfig": str(kubeconfig),
                "nodeName": "node-1",
                "trunkInterface": lab.trunk,
                "stateDir": f"{scratch}/state",
                "delegate": {"type": "aws-cni"},
            }
            if mode == "BranchENI":
                conf["testBranchUplink"] = STAND_IN  # this kernel may lack 802.1Q; see the README
            body = json.dumps(conf).encode()
            adds: list[float] = []
            dels: list[float] = []
            for i in range(samples):
                emulator.create(pna(i, mode, lab.subnet))
                netns = lab.pod(f"p{i}")
                adds.append(invoke(lab.node, "ADD", body, i, netns))
                dels.append(invoke(lab.node, "DEL", body, i, netns))  # a branch VLAN is reused next sample
                lab.close_pod(f"{lab.tag}-p{i}")
        finally:
            server.stop()
            lab.close()
    return {
        "mode": mode,
        "samples": samples,
        "add_p50_s": round(percentile(adds, 0.50), 4),
        "add_p99_s": round(percentile(adds, 0.99), 4),
        "del_p50_s": round(percentile(dels, 0.50), 4),
        "del_p99_s": round(percentile(dels, 0.99), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--mode", choices=("PrefixIP", "BranchENI"), default="PrefixIP")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    args = parser.parse_args()
    figures = run(args.samples, args.mode)
    if args.output == "json":
        print(json.dumps(figures))
        return
    print(f"netalloc-cni, {figures['samples']} warm {figures['mode']} pods, one at a time:")
    print(f"  ADD p50 {figures['add_p50_s'] * 1000:.1f} ms  p99 {figures['add_p99_s'] * 1000:.1f} ms")
    print(f"  DEL p50 {figures['del_p50_s'] * 1000:.1f} ms  p99 {figures['del_p99_s'] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
