"""Subnet fragmentation: free addresses against free aligned /28 blocks, for every subnet the pools use.

One cluster-wide pass every `subnet_report_interval_s`: per subnet, DescribeNetworkInterfaces filtered
by subnet (paged by the adapter, through its one limiter) and GetSubnetCidrReservations, then
`controller.core.subnet_report`. The result is kept for the node passes, which publish it in each
NodeNetworkPool's status (`subnet`, and the `SubnetFragmented` condition with a Warning Event when it
turns true), and as Prometheus gauges. A subnet that cannot be described now keeps its last report.
"""

from __future__ import annotations

from controller.core.errors import Ec2Error
from controller.core.subnet_report import SubnetReport, subnet_report
from controller.k8s.reconcilers.context import Context, Result, logger


class SubnetReports:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def reconcile(self) -> Result:
        ctx = self.ctx
        subnets: dict[str, tuple[str, list[str]]] = {}
        for network in ctx.pools.networks().values():
            pool = network.pool
            cidr, nodes = subnets.setdefault(pool.subnet_id, (pool.subnet_cidr, []))
            nodes.append(network.node_name)
        for subnet_id, (cidr, nodes) in sorted(subnets.items()):
            try:
                report = await self.describe(subnet_id, cidr, nodes=len(nodes))
            except Ec2Error as error:
                logger.warning("subnet %s: fragmentation report not refreshed: %s", subnet_id, error)
                continue
            before = ctx.subnets.get(subnet_id)
            ctx.subnets[subnet_id] = report
            if report.free_prefix_blocks > 0:  # pools that the subnet refused may ask again now
                for network in ctx.pools.networks().values():
                    if network.pool.subnet_id == subnet_id and network.pool.prefix_refused_until:
                        network.prefix_blocks_may_be_free()
            ctx.metrics.subnet_free_addresses.labels(subnet=subnet_id).set(report.free_addresses)
            ctx.metrics.subnet_free_prefix_blocks.labels(subnet=subnet_id).set(report.free_prefix_blocks)
            if before != report:
                for node in nodes:
                    ctx.enqueue(("node", node))
        return Result.after(ctx.config.subnet_report_interval_s)

    async def describe(self, subnet_id: str, cidr: str, *, nodes: int = 1) -> SubnetReport:
        """The threshold is at least the number of pools on the subnet: each may need one more /28."""
        ctx = self.ctx
        interfaces = await ctx.ec2.describe_network_interfaces(subnet_id=subnet_id)
        reservations = await ctx.ec2.describe_subnet_cidr_reservations(subnet_id)
        return subnet_report(
            subnet_id=subnet_id,
            cidr=cidr,
            interfaces=interfaces,
            reservations=reservations,
            threshold=max(ctx.config.pool.subnet_fragmentation_threshold, nodes),
        )
