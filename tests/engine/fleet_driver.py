"""Drives pods through the real allocation driver on a simulated fleet, and checks invariants."""

from __future__ import annotations

import asyncio
import ipaddress
import random
from dataclasses import dataclass, field

from controller.core.allocation_model import AllocationMode, AllocationRequest
from controller.core.allocation_state import AllocationState, AllocationStatus
from controller.core.retry_policy import RetryPolicy
from controller.engine.allocation_driver import allocation_step, release_step
from controller.engine.node_network import NodeNetwork
from controller.sim_fleet import SimFleet


@dataclass
class SimPod:
    request: AllocationRequest
    network: NodeNetwork
    status: AllocationStatus
    deleted: bool = False
    task: asyncio.Task[None] | None = None
    history: list[AllocationState] = field(default_factory=list)


class PodDriver:
    def __init__(self, fleet: SimFleet, seed: int) -> None:
        self.fleet = fleet
        self.rng = random.Random(seed)
        self.policy = RetryPolicy()
        self.pods: dict[str, SimPod] = {}
        self.released: list[SimPod] = []

    def request_for(self, key: str, network: NodeNetwork, branch: bool) -> AllocationRequest:
        if branch:
            groups = (self.rng.choice(self.fleet.app_groups),)
            return AllocationRequest(
                key=key,
                node_name=network.node_name,
                mode=AllocationMode.BRANCH_ENI,
                security_group_ids=groups,
            )
        mode = (
            AllocationMode.PREFIX_IP
            if network.pool.settings.enable_prefix_delegation
            else AllocationMode.SECONDARY_IP
        )
        return AllocationRequest(key=key, node_name=network.node_name, mode=mode)

    def start(self, key: str, network: NodeNetwork, branch: bool) -> SimPod:
        pod = SimPod(
            self.request_for(key, network, branch), network, AllocationStatus.new(network.clock.now())
        )
        self.pods[key] = pod
        pod.task = asyncio.ensure_future(self._drive(pod))
        return pod

    async def _drive(self, pod: SimPod) -> None:
        while not pod.deleted:
            result = await allocation_step(
                pod.status, pod.request, pod.network, policy=self.policy, rng=self.rng
            )
            pod.status = result.status
            pod.history.append(result.status.state)
            if result.retry_in is None:
                return
            await asyncio.sleep(result.retry_in)

    async def delete(self, key: str) -> None:
        pod = self.pods.pop(key)
        pod.deleted = True
        if pod.task is not None and not pod.task.done():
            # never interrupt a step: the controller serialises work per object the same way
            while not pod.task.done():
                await asyncio.sleep(0.05)
        result = await release_step(
            pod.status,
            pod.request.key,
            pod.network,
            policy=self.policy,
            rng=self.rng,
            now=pod.network.clock.now(),
        )
        pod.status = result.status
        assert pod.status.state is AllocationState.RELEASED
        self.released.append(pod)

    def check_invariants(self) -> None:
        """No address or ENI is held twice, and every holding is real in the simulated VPC."""
        ips: dict[str, str] = {}
        branch_enis: dict[str, str] = {}
        for key, pod in self.pods.items():
            resources = pod.status.resources
            if pod.status.state is not AllocationState.ALLOCATED or resources is None:
                continue
            assert resources.ip not in ips, f"{resources.ip} given to {ips.get(resources.ip)} and {key}"
            ips[resources.ip] = key
            eni = self.fleet.vpc.network_interface(resources.eni_id)
            assert eni is not None, f"{key} holds {resources.eni_id}, which does not exist"
            if resources.mode is AllocationMode.BRANCH_ENI:
                assert resources.eni_id not in branch_enis, f"branch {resources.eni_id} given twice"
                branch_enis[resources.eni_id] = key
                assert eni.private_ip == resources.ip
                assert set(eni.security_group_ids) == set(pod.request.security_group_ids)
            elif resources.mode is AllocationMode.PREFIX_IP:
                assert resources.prefix in eni.prefixes
                assert ipaddress.ip_address(resources.ip) in ipaddress.ip_network(resources.prefix or "")
            else:
                assert resources.ip in eni.secondary_ips
            pool_holding = pod.network.pool.holding_for(key)
            assert pool_holding == resources, f"{key}: the pool and the status disagree"
