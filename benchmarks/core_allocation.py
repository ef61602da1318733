"""Benchmark: the core plus the simulated VPC over many allocate/release cycles.

Prints figures; asserts nothing about speed. Run: `make bench` or
`.venv/bin/python benchmarks/core_allocation.py --cycles 10000`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import time
import tracemalloc

from controller.adapters.sim_vpc import LatencyConfig
from controller.clock import ManualClock
from controller.core.allocation_model import AllocationMode, AllocationRequest
from controller.core.errors import Ec2Error, ErrorClass
from controller.settings import PoolSettings
from controller.sim_fleet import NodeSpec, SimFleet


async def run(cycles: int, nodes: int, seed: int) -> dict[str, float]:
    clock = ManualClock(0.0)
    fleet = SimFleet(clock=clock, seed=seed, latency=LatencyConfig.none())
    specs = []
    for i in range(nodes):
        settings = (
            PoolSettings(
                enable_prefix_delegation=True,
                warm_prefix_target=2,
                enable_pod_eni=True,
                warm_branch_eni_target=4,
            )
            if i % 2 == 0
            else PoolSettings(warm_ip_target=10, enable_pod_eni=True, warm_branch_eni_target=4)
        )
        specs.append(NodeSpec(name=f"node-{i}", instance_type="c5.4xlarge", settings=settings))
    networks = await fleet.register_all(specs)
    rng = random.Random(seed)
    live: list[tuple[str, int]] = []
    refused = 0
    started = time.perf_counter()
    for cycle in range(cycles):
        index = rng.randrange(nodes)
        network = networks[index]
        if rng.random() < 0.3:
            request = AllocationRequest(
                key=f"ns/p{cycle}",
                node_name=network.node_name,
                mode=AllocationMode.BRANCH_ENI,
                security_group_ids=(rng.choice(fleet.app_groups),),
            )
        else:
            mode = (
                AllocationMode.PREFIX_IP
                if network.pool.settings.enable_prefix_delegation
                else AllocationMode.SECONDARY_IP
            )
            request = AllocationRequest(key=f"ns/p{cycle}", node_name=network.node_name, mode=mode)
        try:
            await network.allocate(request)
        except Ec2Error as error:
            if error.error_class is not ErrorClass.CAPACITY:
                raise
            refused += 1  # the node is full right now; a real pod would wait and retry
        else:
            live.append((request.key, index))
        if len(live) > nodes * 20:
            key, owner = live.pop(rng.randrange(len(live)))
            await networks[owner].release(key)
        clock.advance(0.05)
        if cycle % 500 == 0:
            await asyncio.sleep(0)  # let background top-ups run
    for key, owner in live:
        await networks[owner].release(key)
    elapsed = time.perf_counter() - started
    calls = fleet.vpc.calls_by_action()
    return {
        "cycles": cycles,
        "seconds": elapsed,
        "allocations_per_s": cycles / elapsed,
        "refused_at_capacity": refused,
        "ec2_mutating_calls": sum(n for a, n in calls.items() if not a.startswith("Describe")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    tracemalloc.start()
    figures = asyncio.run(run(args.cycles, args.nodes, args.seed))
    _, peak_traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"allocate/release cycles : {figures['cycles']:,.0f} on {args.nodes} nodes")
    print(f"wall time               : {figures['seconds']:.2f} s (tracemalloc on)")
    print(f"allocations per second  : {figures['allocations_per_s']:,.0f}")
    print(f"refused at capacity     : {figures['refused_at_capacity']:,.0f}")
    print(f"EC2 mutating calls      : {figures['ec2_mutating_calls']:,.0f}")
    print(f"peak traced memory      : {peak_traced / 2**20:.1f} MiB")
    print(f"peak RSS                : {rss_mib:.1f} MiB")


if __name__ == "__main__":
    main()
