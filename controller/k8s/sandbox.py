"""`netalloc sandbox`: the real controller against an in-process Kubernetes API and a simulated VPC.

The same runtime and kopf operator as `netalloc run`, over real HTTP, so what the sandbox shows is
what the controller does: which requests it sends (none that write a Pod), what each PNA holds,
and that deleting pods and nodes gives everything back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from pydantic import BaseModel, ConfigDict

from controller.adapters.sim_vpc import LatencyConfig
from controller.clock import WallClock
from controller.core.allocation_state import AllocationState
from controller.instance_data import Ec2InstanceLimits
from controller.k8s.api_emulator import KubeApiEmulator
from controller.k8s.kube_api import KubeApi
from controller.k8s.operator import run_operator
from controller.k8s.reconcilers.context import ControllerConfig
from controller.k8s.resources import NODE_NETWORK_POOL, POD_NETWORK_ALLOCATION
from controller.k8s.resources import crd_directory as package_crds
from controller.k8s.runtime import ControllerRuntime
from controller.settings import PoolSettings
from controller.sim_fleet import SimFleet

JsonObject = dict[str, Any]
MANAGED_NAMESPACE = "shop"


class SandboxSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    nodes: int
    pods: int
    allocated: int
    released: int
    leaked_enis: int
    pod_writes: int
    controller_writes: int
    p50_allocation_s: float
    p99_allocation_s: float


def crd_directory() -> Path:
    found = package_crds()
    if not (found / "podnetworkallocations.yaml").exists():
        raise FileNotFoundError(f"the CRD manifests are not at {found}: the package is incomplete")
    return found


class EmulatorThread:
    """Serves the emulator from its own thread and loop, as a real API server is a separate process.

    kopf treats every task created in its loop after start-up as its own, so an emulator in the same
    loop would have its watch handlers waited for, then cancelled, at shutdown.
    """

    def __init__(self, emulator: KubeApiEmulator) -> None:
        self.emulator = emulator
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kube-api-emulator", daemon=True)

    def start(self) -> str:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.emulator.start(), self._loop).result(timeout=30)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.emulator.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


class Sandbox:
    def __init__(
        self,
        *,
        pool: PoolSettings | None = None,
        seed: int = 1,
        latency: LatencyConfig | None = None,
        workers: int = 16,
        reconcile_interval_s: float = 2.0,
    ) -> None:
        self.emulator = KubeApiEmulator()
        self._server = EmulatorThread(self.emulator)
        self.fleet = SimFleet(seed=seed, cluster_name="sandbox", clock=WallClock(), latency=latency)
        self.pool = pool or PoolSettings(
            enable_pod_eni=True, enable_prefix_delegation=True, warm_prefix_target=2, warm_branch_eni_target=6
        )
        self.config = ControllerConfig(
            cluster_name="sandbox", pool=self.pool, workers=workers, reconcile_interval_s=reconcile_interval_s
        )
        self.rng = random.Random(seed)
        self.runtime: ControllerRuntime | None = None
        self.kube: KubeApi | None = None
        self._stop: asyncio.Event | None = None
        self._controller_loop: asyncio.AbstractEventLoop | None = None
        self._controller_thread = threading.Thread(
            target=self._run_controller, name="netalloc-controller", daemon=True
        )
        self._controller_ready = threading.Event()
        self._controller_error: BaseException | None = None
        self.instances: dict[str, str] = {}  # node name -> instance id

    # ----- start and stop ---------------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.to_thread(self._server.start)
        self.emulator.install_crds_from(crd_directory(), recursive=True)
        self.emulator.create(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": MANAGED_NAMESPACE, "labels": {"netalloc.dev/managed": "true"}},
            }
        )
        self._controller_thread.start()
        await asyncio.to_thread(self._controller_ready.wait, 60)
        if self.runtime is None or not self.runtime.started.is_set():
            raise RuntimeError("the controller did not start") from self._controller_error
        self.emulator.clear_requests()

    def _run_controller(self) -> None:
        """The controller's own thread and loop: kopf owns every task in it, as in a real process."""
        loop = asyncio.new_event_loop()
        self._controller_loop = loop
        try:
            loop.run_until_complete(self._controller_main())
        except BaseException as error:  # reported to start() and stop()
            self._controller_error = error
        finally:
            self._controller_ready.set()
            loop.close()

    async def _controller_main(self) -> None:
        configuration = k8s.Configuration()
        configuration.host = self.emulator.base_url
        configuration.api_key = {"authorization": "Bearer sandbox"}
        self.kube = KubeApi.for_configuration(configuration)
        self.runtime = ControllerRuntime(
            config=self.config,
            ec2=self.fleet.vpc,
            limits_for=Ec2InstanceLimits(self.fleet.vpc, self.fleet.catalog).get,
            kube=self.kube,
            clock=WallClock(),
            seed=self.rng.getrandbits(32),
        )
        self._stop = asyncio.Event()
        ready = asyncio.Event()
        operator = asyncio.create_task(
            run_operator(self.runtime, configuration, stop_flag=self._stop, ready_flag=ready)
        )
        await ready.wait()
        await self.runtime.started.wait()
        self._controller_ready.set()
        await operator
        await self.kube.close()

    async def stop(self) -> None:
        loop, stop = self._controller_loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        await asyncio.to_thread(self._controller_thread.join, 30)
        await asyncio.to_thread(self._server.stop)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, **kwargs: Any) -> AsyncIterator[Sandbox]:
        sandbox = cls(**kwargs)
        await sandbox.start()
        try:
            yield sandbox
        finally:
            await sandbox.stop()

    # ----- the cluster's objects (created directly, as kubectl or the scheduler would) ------------------
    def add_node(self, name: str, instance_type: str = "c5.4xlarge") -> JsonObject:
        instance = self.fleet.vpc.launch_instance(
            instance_type,
            self.fleet.subnet.subnet_id,
            security_group_ids=[self.fleet.vpc.default_security_group_id],
        )
        self.instances[name] = instance.instance_id
        return self.emulator.create(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"node.kubernetes.io/instance-type": instance_type}},
                "spec": {"providerID": f"aws:///{instance.availability_zone}/{instance.instance_id}"},
            }
        )

    def add_security_group_policy(self, name: str, app: str, group_ids: list[str]) -> JsonObject:
        return self.emulator.create(policy_manifest(name, app, group_ids))

    def add_pod(
        self, name: str, node: str, app: str = "web", namespace: str = MANAGED_NAMESPACE
    ) -> JsonObject:
        return self.emulator.create(pod_manifest(name, node, app=app, namespace=namespace, phase="Pending"))

    def delete_pod(self, name: str, namespace: str = MANAGED_NAMESPACE) -> None:
        self.emulator.delete("v1", "Pod", name, namespace)

    def delete_node(self, name: str) -> None:
        self.emulator.delete("v1", "Node", name)

    # ----- observation --------------------------------------------------------------------------------
    def pnas(self) -> list[JsonObject]:
        return self.emulator.list(POD_NETWORK_ALLOCATION.api_version, POD_NETWORK_ALLOCATION.kind)

    def pools(self) -> list[JsonObject]:
        return self.emulator.list(NODE_NETWORK_POOL.api_version, NODE_NETWORK_POOL.kind)

    def allocated(self) -> list[JsonObject]:
        return [
            p for p in self.pnas() if (p.get("status") or {}).get("state") == AllocationState.ALLOCATED.value
        ]

    async def wait_for(self, predicate: Any, *, timeout: float = 60.0, interval: float = 0.05) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            if loop.time() > deadline:
                raise TimeoutError("the sandbox did not reach the expected state in time")
            await asyncio.sleep(interval)

    def summary(self, *, pods: int, released: int) -> SandboxSummary:
        latencies = sorted(self.runtime.latencies) if self.runtime else []
        return SandboxSummary(
            nodes=len(self.instances),
            pods=pods,
            allocated=len(latencies),
            released=released,
            leaked_enis=self.fleet.census().total,
            pod_writes=len(self.emulator.pod_writes()),
            controller_writes=len(self.emulator.writes()),
            p50_allocation_s=round(statistics.median(latencies), 4) if latencies else 0.0,
            p99_allocation_s=round(percentile(latencies, 0.99), 4) if latencies else 0.0,
        )


def policy_manifest(
    name: str, app: str, group_ids: list[str], namespace: str = MANAGED_NAMESPACE
) -> JsonObject:
    """A SecurityGroupPolicy giving pods labelled `app` these groups."""
    return {
        "apiVersion": "vpcresources.k8s.aws/v1beta1",
        "kind": "SecurityGroupPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {"matchLabels": {"app": app}}, "securityGroups": {"groupIds": group_ids}},
    }


def pod_manifest(
    name: str, node: str, *, app: str, namespace: str = MANAGED_NAMESPACE, phase: str = "Running"
) -> JsonObject:
    """A pod bound to `node`, as the scheduler leaves it."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx"}]},
        "status": {"phase": phase},
    }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]
