"""The field's prefix-delegation baseline for the prefix-exhaustion scenario: the VPC CNI's ipamd.

RC has no prefix-delegation path (it only does branch ENIs), so in `prefix-exhaustion` the baseline
column is the VPC CNI as field notes §1 and §3 describe it, with node-local state and no record in
the API: WARM_PREFIX_TARGET=1 on the primary ENI; a pool loop every 5 s; after an
InsufficientCidrBlocks-type error it stops growing the pool for 120 s; a freed pod IP cools down
30 s; free prefixes beyond the target are released at most every 30 s. A pod whose CNI ADD finds no
free IP fails with "failed to assign an IP address to container" and the kubelet retries the
sandbox later (ASSUMPTION: every 10–15 s, the kubelet pod worker's jittered back-off). Nothing
tells the user the cause is subnet fragmentation: that message is what the pod shows.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import zlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from controller.clock import Clock
from controller.core.errors import Ec2Error, ErrorClass
from controller.ports.ec2 import Ec2Port
from controller.research.api_server import NODE, POD, ApiServer, KubeObject
from controller.research.baseline_params import CNI_NO_ADDRESS_MESSAGE
from controller.research.metrics import MetricsRecorder
from controller.research.virtual_time import spawn

POOL_LOOP_S = 5.0  # field notes §3 "Pool loop every 5 s"
EXHAUSTION_BACKOFF_S = 120.0  # field notes §1 "stops growing its pool for 120 s after such an error"
IP_COOLDOWN_S = 30.0  # field notes §3 "a freed pod IP cools down 30 s"
SHRINK_INTERVAL_S = 30.0  # field notes §3 "shrinking at most every 30 s"
WARM_PREFIX_TARGET = 1  # field notes §3 "WARM_PREFIX_TARGET | 1 in the shipped manifest"
SANDBOX_RETRY_S = (10.0, 15.0)  # ASSUMPTION: kubelet pod-worker back-off 10 s, jitter 0.5


@dataclass
class NodeIpam:
    node_name: str
    eni_id: str
    prefixes: list[str] = field(default_factory=list)
    free: dict[str, None] = field(default_factory=dict)  # insertion-ordered free IPs
    cooling: dict[str, float] = field(default_factory=dict)
    assigned: dict[str, str] = field(default_factory=dict)  # pod key -> ip
    no_growth_until: float = 0.0
    last_shrink: float = 0.0
    last_error: str = ""


class IpamdBaseline:
    name = "annotation"
    implementation = "baseline for prefix delegation: model of the VPC CNI's ipamd (RC has no prefix path)"

    def __init__(
        self, *, api: ApiServer, ec2: Ec2Port, clock: Clock, seed: int, recorder: MetricsRecorder
    ) -> None:
        self.api = api
        self.ec2 = ec2
        self.clock = clock
        self.first_shortage_at_s: float | None = None
        self.recorder = recorder
        self._rng = random.Random(seed ^ zlib.crc32(b"ipamd"))
        self.nodes: dict[str, NodeIpam] = {}
        self.pod_node: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.cni_failures = 0

    def start(self) -> None:
        self.api.watch(NODE, self._on_node)
        self.api.watch(POD, self._on_pod)

    async def crash(self) -> None:  # ipamd runs per node; the scenario that restarts RC does not apply
        return None

    def restart(self) -> None:
        return None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        spawn(coro, name="ipamd", registry=self._tasks)

    def _on_node(self, event: str, node: KubeObject) -> None:
        if event == "ADDED" and node.name not in self.nodes:
            self._spawn(self._run_node(node))

    def _on_pod(self, event: str, pod: KubeObject) -> None:
        key = f"{pod.namespace}/{pod.name}"
        node_name = pod.spec.get("nodeName")
        if event == "DELETED":
            node = self.nodes.get(self.pod_node.pop(key, ""))
            if node is not None and key in node.assigned:
                node.cooling[node.assigned.pop(key)] = self.clock.now() + IP_COOLDOWN_S
            return
        if node_name and key not in self.pod_node:
            self.pod_node[key] = str(node_name)
            self._spawn(self._sandbox(key, str(node_name)))

    async def _run_node(self, node: KubeObject) -> None:
        instance = await self.ec2.describe_instance(str(node.spec["providerID"]))
        ipam = self.nodes[node.name] = NodeIpam(node_name=node.name, eni_id=instance.primary_eni_id)
        while True:
            await self._pool_step(ipam)
            await self.clock.sleep(POOL_LOOP_S)

    async def _pool_step(self, ipam: NodeIpam) -> None:
        now = self.clock.now()
        for ip, until in list(ipam.cooling.items()):
            if until <= now:
                del ipam.cooling[ip]
                ipam.free[ip] = None
        if len(ipam.free) < 16 * WARM_PREFIX_TARGET and now >= ipam.no_growth_until:
            try:
                new = await self.ec2.assign_prefixes(ipam.eni_id, count=1)
            except Ec2Error as error:
                ipam.last_error = f"{error.code}: {error.message}"
                if error.error_class is ErrorClass.CAPACITY:
                    ipam.no_growth_until = now + EXHAUSTION_BACKOFF_S
                return
            for prefix in new:
                ipam.prefixes.append(prefix)
                for address in ipaddress.ip_network(prefix):
                    ipam.free[str(address)] = None
        elif now - ipam.last_shrink >= SHRINK_INTERVAL_S:
            await self._shrink(ipam)

    async def _shrink(self, ipam: NodeIpam) -> None:
        ipam.last_shrink = self.clock.now()
        whole_free = [p for p in ipam.prefixes if all(str(a) in ipam.free for a in ipaddress.ip_network(p))]
        for prefix in whole_free[WARM_PREFIX_TARGET:]:
            addresses = [str(a) for a in ipaddress.ip_network(prefix)]
            for address in addresses:
                ipam.free.pop(address, None)
            ipam.prefixes.remove(prefix)
            try:
                await self.ec2.unassign_prefixes(ipam.eni_id, prefixes=[prefix])
            except Ec2Error:
                ipam.prefixes.append(prefix)
                for address in addresses:
                    ipam.free[address] = None

    async def _sandbox(self, key: str, node_name: str) -> None:
        """The kubelet creating the pod sandbox: CNI ADD until an address is there."""
        while key in self.pod_node:
            node = self.nodes.get(node_name)
            if node is not None and node.free:
                ip = next(iter(node.free))
                del node.free[ip]
                node.assigned[key] = ip
                self.recorder.pod_network_ready(key)
                return
            self.cni_failures += 1
            if self.first_shortage_at_s is None:
                self.first_shortage_at_s = self.clock.now()
            await self.clock.sleep(self._rng.uniform(*SANDBOX_RETRY_S))

    def gave_up_on(self, key: str) -> bool:
        return False

    def busy(self) -> bool:
        return False  # ipamd's prefixes are recorded the moment EC2 answers

    def stuck_reason(self, pod: KubeObject | None, key: str) -> str:
        return f"FailedCreatePodSandBox: {CNI_NO_ADDRESS_MESSAGE}"

    def shows_capacity_reason(self, pod: KubeObject) -> bool:
        return False  # the pod only ever shows the CNI's generic message

    def owned_eni_ids(self) -> tuple[set[str], set[str]]:
        return set(), set()  # prefixes live on the primary ENI; ipamd creates no ENI here

    def extra_metrics(self) -> dict[str, float | int | str]:
        shortage = self.first_shortage_at_s
        return {
            "cni_add_failures": self.cni_failures,
            # ipamd only logs after the fact: nothing tells an operator before a pod cannot start
            "exhaustion_known_at_s": "never",
            "first_prefix_shortage_at_s": round(shortage, 3) if shortage is not None else "none",
        }
