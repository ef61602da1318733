"""Benchmark: a burst of pods on a warm pool, end to end through the real controller and the emulator.

Prints allocations per second, p50 and p99 time from PodNetworkAllocation creation to Allocated,
and peak RSS. Target (issue): at least 100 allocations/s and p99 at most 2 s on 2 cores.
Run: `.venv/bin/python benchmarks/controller_burst.py --pods 1000`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import statistics
import time

from controller.k8s.sandbox import Sandbox, percentile
from controller.settings import PoolSettings


async def burst(pods: int, nodes: int, branch_share: float) -> dict[str, float]:
    per_node = -(-pods // nodes)
    branch_per_node = int(per_node * branch_share)
    pool = PoolSettings(
        enable_prefix_delegation=True,
        enable_pod_eni=True,
        warm_ip_target=per_node,  # warm: every pod's address is there before the burst
        warm_branch_eni_target=min(branch_per_node, 54),
    )
    async with Sandbox.running(pool=pool, workers=32, reconcile_interval_s=2) as sandbox:
        runtime = sandbox.runtime
        assert runtime is not None
        web_group = sandbox.fleet.app_groups[0]
        sandbox.add_security_group_policy("web-sg", "web", [web_group])
        setup_started = time.perf_counter()
        for i in range(nodes):
            sandbox.add_node(f"node-{i}", "c5.4xlarge")

        def warm() -> bool:
            networks = list(runtime.networks.values())
            return len(networks) == nodes and all(
                n.pool.status().free_ips >= per_node
                and n.pool.status().branch_warm >= pool.warm_branch_eni_target
                for n in networks
            )

        await sandbox.wait_for(warm, timeout=600, interval=0.5)
        setup_s = time.perf_counter() - setup_started
        started = time.perf_counter()
        for i in range(pods):
            with_groups = (i // nodes) < branch_per_node
            sandbox.add_pod(f"pod-{i:04d}", f"node-{i % nodes}", app="web" if with_groups else "api")

        def written_allocated() -> int:  # what the controller wrote to the API, not what it holds in memory
            return sum(1 for pna in runtime.state.pnas if pna.status.get("state") == "Allocated")

        await sandbox.wait_for(lambda: written_allocated() == pods, timeout=600, interval=0.2)
        elapsed = time.perf_counter() - started
        latencies = sorted(runtime.latencies)
        calls = sandbox.fleet.vpc.calls_by_action()
        return {
            "pods": pods,
            "setup_s": setup_s,
            "elapsed_s": elapsed,
            "allocations_per_s": pods / elapsed,
            "p50_s": statistics.median(latencies),
            "p99_s": percentile(latencies, 0.99),
            "branch_pods": branch_per_node * nodes,
            "pod_writes": len(sandbox.emulator.pod_writes()),
            "controller_writes": len(sandbox.emulator.writes()),
            "modify_calls": calls.get("ModifyNetworkInterfaceAttribute", 0),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--branch-share", type=float, default=0.2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    f = asyncio.run(burst(args.pods, args.nodes, args.branch_share))
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pods in the burst             : {f['pods']:.0f} on {args.nodes} nodes")
    print(f"  of which with a branch ENI  : {f['branch_pods']:.0f}")
    print(f"pre-allocation (not timed)    : {f['setup_s']:.1f} s until every pool was warm")
    print(f"burst to last Allocated write : {f['elapsed_s']:.2f} s")
    print(f"allocations per second        : {f['allocations_per_s']:.1f}   (target >= 100)")
    print(f"PNA creation -> Allocated p50 : {f['p50_s']:.3f} s")
    print(f"PNA creation -> Allocated p99 : {f['p99_s']:.3f} s   (target <= 2 s)")
    print(f"ModifyNetworkInterfaceAttribute calls during the burst and set-up: {f['modify_calls']:.0f}")
    print(f"requests that wrote a Pod     : {f['pod_writes']:.0f}")
    print(f"controller requests that wrote: {f['controller_writes']:.0f}")
    print(f"peak RSS (controller, emulator and simulated VPC in one process): {rss_mib:.0f} MiB")


if __name__ == "__main__":
    main()
