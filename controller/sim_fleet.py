"""A fleet of simulated nodes: a simulated VPC, instances in it, and their registered node networks.

Used by `netalloc demo`, the benchmarks, the sandbox's `--ec2 sim` and the tests, so every one of
them runs the real engine against the same simulated AWS.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from controller.adapters.ec2_observer import Ec2CallObserver
from controller.adapters.sim_vpc import ApiLimitsConfig, LatencyConfig, SimulatedVpc
from controller.clock import Clock, LoopClock
from controller.core import tags as tagging
from controller.core.instance_limits import InstanceCatalog
from controller.engine.node_network import NodeNetwork
from controller.instance_data import shipped_catalog
from controller.ports.ec2 import InterfaceType
from controller.settings import PoolSettings


class NodeSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    instance_type: str = "m5.large"
    settings: PoolSettings = Field(default_factory=PoolSettings)


class EniCensus(BaseModel):
    """What the simulated VPC holds that netalloc created, for leak checks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trunk: int
    branch: int
    pod_ip_enis: int
    unattached: int

    @property
    def total(self) -> int:
        return self.trunk + self.branch + self.pod_ip_enis


class SimFleet:
    def __init__(
        self,
        *,
        clock: Clock | None = None,
        seed: int = 0,
        cluster_name: str = "sim",
        subnet_cidr: str = "10.0.0.0/16",
        catalog: InstanceCatalog | None = None,
        api_limits: ApiLimitsConfig | None = None,
        latency: LatencyConfig | None = None,
        vpc: SimulatedVpc | None = None,
        observer: Ec2CallObserver | None = None,
    ) -> None:
        self.clock = clock or LoopClock()
        self.catalog = catalog or shipped_catalog()
        self.cluster_name = cluster_name
        self._rng = random.Random(seed)
        self.vpc = vpc or SimulatedVpc(
            instance_types=self.catalog.described,
            branch_limits=self.catalog.branch_limits,
            clock=self.clock,
            seed=seed,
            api_limits=api_limits,
            latency=latency,
            observer=observer,
        )
        self.subnet = self.vpc.create_subnet(subnet_cidr)
        self.app_groups = tuple(self.vpc.create_security_group(f"app-{i}") for i in range(3))
        self.networks: dict[str, NodeNetwork] = {}

    def add_node(self, spec: NodeSpec) -> NodeNetwork:
        instance = self.vpc.launch_instance(
            spec.instance_type, self.subnet.subnet_id, security_group_ids=[self.vpc.default_security_group_id]
        )
        network = NodeNetwork(
            ec2=self.vpc,
            clock=self.clock,
            limits=self.catalog.get(spec.instance_type),
            settings=spec.settings,
            node_name=spec.name,
            instance=instance,
            subnet_cidr=self.subnet.cidr_block,
            cluster_name=self.cluster_name,
            rng=random.Random(self._rng.getrandbits(32)),
        )
        self.networks[spec.name] = network
        return network

    async def register_all(self, specs: Iterable[NodeSpec]) -> list[NodeNetwork]:
        networks = [self.add_node(spec) for spec in specs]
        for network in networks:
            await network.register()
            await network.settle()  # and the warm targets, made in the background
        return networks

    def census(self) -> EniCensus:
        """Count the ENIs carrying this cluster's tag, by role."""
        counts = {"trunk": 0, "branch": 0, "pod-ips": 0}
        unattached = 0
        for eni in self.vpc.network_interfaces():
            if eni.tags.get(tagging.TAG_CLUSTER) != self.cluster_name:
                continue
            role = eni.tags.get(tagging.TAG_ROLE, "")
            counts[role] = counts.get(role, 0) + 1
            if eni.attachment is None and eni.interface_type is not InterfaceType.BRANCH:
                unattached += 1
        return EniCensus(
            trunk=counts["trunk"],
            branch=counts["branch"],
            pod_ip_enis=counts["pod-ips"],
            unattached=unattached,
        )
