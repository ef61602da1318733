"""`netalloc demo`: what a few instance types get, then a short simulated allocation run."""

from __future__ import annotations

import random
from pathlib import Path

from rich.console import Console
from rich.table import Table

from controller.adapters.sim_vpc import LatencyConfig
from controller.core.allocation_model import AllocationMode, AllocationRequest
from controller.core.allocation_state import AllocationStatus
from controller.core.retry_policy import RetryPolicy
from controller.engine.allocation_driver import allocation_step
from controller.research.virtual_time import run_virtual
from controller.settings import PoolSettings
from controller.sim_fleet import NodeSpec, SimFleet

DEMO_NODES = [
    NodeSpec(
        name="node-sg",
        instance_type="m5.large",
        settings=PoolSettings(enable_pod_eni=True, warm_branch_eni_target=6),
    ),
    NodeSpec(
        name="node-prefix",
        instance_type="c5.4xlarge",
        settings=PoolSettings(enable_prefix_delegation=True, warm_prefix_target=1),
    ),
]


async def simulated_run(console: Console, pods_per_node: int = 6) -> None:
    fleet = SimFleet(seed=7, latency=LatencyConfig())
    networks = await fleet.register_all(DEMO_NODES)
    registered = fleet.vpc.calls_by_action()
    table = Table(title="Pre-allocated at node registration (simulated VPC)")
    for column in ("node", "type", "trunk ENI", "warm branch ENIs", "free IPs", "EC2 calls"):
        table.add_column(column)
    for network in networks:
        status = network.pool.status()
        table.add_row(
            network.node_name,
            network.pool.limits.instance_type,
            status.trunk_eni_id or "-",
            str(status.branch_warm),
            str(status.free_ips),
            "",
        )
    table.add_row("", "", "", "", "", str(sum(registered.values())))
    console.print(table)
    policy, rng = RetryPolicy(), random.Random(7)
    assigned = Table(
        title="Assigned to pods: from the warm pool; a warm branch ENI with other groups gets one modify"
    )
    for column in ("pod", "node", "mode", "IP", "ENI", "VLAN", "state", "t (s)"):
        assigned.add_column(column)
    start = fleet.clock.now()
    for network in networks:
        for i in range(pods_per_node):
            branch = network.pool.settings.enable_pod_eni
            mode = AllocationMode.BRANCH_ENI if branch else AllocationMode.PREFIX_IP
            groups = (fleet.app_groups[i % 2],) if branch else ()
            request = AllocationRequest(
                key=f"demo/pod-{network.node_name}-{i}",
                node_name=network.node_name,
                mode=mode,
                security_group_ids=groups,
            )
            step = await allocation_step(
                AllocationStatus.new(fleet.clock.now()), request, network, policy=policy, rng=rng
            )
            res = step.status.resources
            assigned.add_row(
                request.key,
                network.node_name,
                mode.value,
                res.ip if res else "-",
                res.eni_id if res else "-",
                str(res.vlan_id or "-") if res else "-",
                step.status.state.value,
                f"{fleet.clock.now() - start:.2f}",
            )
    console.print(assigned)
    after = fleet.vpc.calls_by_action()
    extra = {a: after[a] - registered.get(a, 0) for a in after if after[a] != registered.get(a, 0)}
    console.print(f"EC2 calls made while serving {pods_per_node * len(networks)} pods: {extra or 'none'}")
    for network in networks:
        await network.drain()
    console.print(f"after draining both nodes, ENIs netalloc still owns: {fleet.census().total}")


QUICK_SCENARIOS = ("admission-conflict", "rollout-churn", "prefix-exhaustion")


def run_comparisons(console: Console, out_root: Path) -> None:
    """The quick research scenarios, each writing its report under `out_root`."""
    from controller.research.compare import run_comparison
    from controller.research.report import render_table, write_outputs

    for scenario in QUICK_SCENARIOS:
        result, performance = run_comparison(scenario, seed=1, scale=1.0, parallel=True)
        out_dir = out_root / scenario
        write_outputs(result, performance, out_dir)
        console.print(render_table(result, performance), highlight=False, markup=False)
        console.print(f"report: {out_dir / 'report.md'} (with results.json and PNG plots)\n")


def run_demo() -> None:
    console = Console(width=150)
    from controller.cli import plan_document, plan_new_node
    from controller.instance_data import shipped_catalog

    table = Table(title="Instance limits and max pods (shipped dataset)")
    for column in ("type", "max pods", "with prefixes", "branch ENIs", "ENIs", "IPv4/ENI"):
        table.add_column(column)
    catalog = shipped_catalog()
    for instance_type in ("m5.large", "m5.xlarge", "c5.4xlarge", "m5.metal"):
        limits = catalog.get(instance_type)
        plain = plan_document(limits, PoolSettings(), plan_new_node(limits, PoolSettings()))
        prefixed = PoolSettings(enable_prefix_delegation=True)
        table.add_row(
            instance_type,
            str(plain["max_pods"]),
            str(plan_new_node(limits, prefixed).max_pods),
            str(limits.branch_enis),
            str(limits.max_enis),
            str(limits.ipv4_per_eni),
        )
    console.print(table)
    console.rule("The allocation engine on the simulated VPC")
    run_virtual(simulated_run(console))
    console.rule("The controller: kopf over HTTP against an in-process API server (netalloc sandbox)")
    from controller.k8s.sandbox_run import sandbox_main

    sandbox_main(nodes=3, pods=24, output="table")
    console.rule("Research: the annotation approach against PodNetworkAllocation (netalloc compare)")
    out_root = Path("out") / "compare"
    run_comparisons(console, out_root)
    console.print(f"Reports written under {out_root.resolve()}/<scenario>/report.md")
