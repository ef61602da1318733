"""A cluster for trying the real controller: the API emulator, a simulated VPC, and controller processes
that can be stopped cleanly or killed.

`ControllerProcess` is one controller process: the real runtime and kopf operator in a thread and
event loop of their own, talking HTTP to the emulator. `crash()` stops that loop where it stands and
never runs it again: no `finally`, no cleanup handler, no last write, as with SIGKILL. Requests
already on the wire reach the server or not, as they would; the next process starts only once they
have ended (as a standby takes over only after the lease expires). The simulated VPC stands for EC2
and outlives every controller process.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client as k8s

from controller.adapters.sim_vpc import LatencyConfig, LatencyRange
from controller.clock import WallClock
from controller.core.retry_policy import Backoff, RetryPolicy
from controller.instance_data import Ec2InstanceLimits
from controller.k8s.api_emulator import KubeApiEmulator
from controller.k8s.kube_api import KubeApi
from controller.k8s.objects import JsonObject
from controller.k8s.operator import run_operator
from controller.k8s.reconcilers.context import ControllerConfig, LimitsLookup
from controller.k8s.resources import NODE_NETWORK_POOL, POD_NETWORK_ALLOCATION
from controller.k8s.runtime import ControllerRuntime
from controller.k8s.sandbox import EmulatorThread, crd_directory, pod_manifest, policy_manifest
from controller.settings import PoolSettings
from controller.sim_fleet import SimFleet

T = TypeVar("T")
MANAGED_NAMESPACE = "shop"
# Short but non-zero EC2 latency, so a crash can land while a call is in flight.
FAST_LATENCY = LatencyConfig(
    mutating=LatencyRange(low_s=0.001, high_s=0.004), non_mutating=LatencyRange(low_s=0.0005, high_s=0.002)
)
# Killed processes' loops and their pending tasks: never run again and never collected. Finalizing the
# coroutines of a loop stopped mid-step (garbage collection throwing GeneratorExit into them) can crash
# CPython 3.11; a real SIGKILL runs nothing either. A process that killed controllers ends with
# `os._exit` (see `killed_controllers` and tests/conftest.py).
_DEAD_LOOPS: list[asyncio.AbstractEventLoop] = []
_DEAD_TASKS: list[asyncio.Task[Any]] = []


def killed_controllers() -> int:
    """How many controller processes this process has killed (their remains must not be finalized)."""
    return len(_DEAD_LOOPS)


def fast_config(pool: PoolSettings | None = None, **overrides: Any) -> ControllerConfig:
    """Production code paths with short waits, so a test or a campaign schedule takes seconds."""
    fast = Backoff(base_s=0.05, cap_s=0.4)
    values: dict[str, Any] = {
        "cluster_name": "harness",
        "pool": pool
        or PoolSettings(
            enable_pod_eni=True,
            warm_branch_eni_target=1,
            ip_cooldown_s=0.3,
            branch_cooldown_s=0.3,
            excess_release_delay_s=0.5,
        ),
        "workers": 8,
        "reconcile_interval_s": 0.25,
        "pool_status_interval_s": 0.2,
        "resync_interval_s": 2.0,
        "relist_gap_s": 0.2,
        "leak_interval_s": 0.3,
        "subnet_report_interval_s": 0.5,
        "leak_passes": 2,
        "policy": RetryPolicy(
            throttling=fast, transient=fast, capacity=Backoff(base_s=0.1, cap_s=0.8), release=fast
        ),
        "error_backoff_base_s": 0.02,
        "error_backoff_max_s": 0.5,
    }
    values.update(overrides)
    return ControllerConfig(**values)


def shipped_rbac() -> list[JsonObject]:
    """The ClusterRole and Role of `deploy/rbac.yaml`."""
    path = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"  # a checkout's deploy/
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


class ControllerProcess:
    """One controller process against `base_url`, with the VPC of `fleet` as its EC2."""

    def __init__(
        self,
        *,
        base_url: str,
        fleet: SimFleet,
        config: ControllerConfig,
        seed: int,
        request_timeout_s: float = 2.0,
        limits_for: LimitsLookup | None = None,
        token: str = "harness",
        verify_ssl: bool = True,
    ) -> None:
        self.token = token
        self.verify_ssl = verify_ssl
        self.limits_for = limits_for
        self.base_url = base_url
        self.fleet = fleet
        self.config = config
        self.seed = seed
        self.request_timeout_s = request_timeout_s
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runtime: ControllerRuntime | None = None
        self.kube: KubeApi | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"netalloc-controller-{seed}", daemon=True)
        self.crashed = False

    def start(self, timeout: float = 60.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout) or self.runtime is None or not self.runtime.started.is_set():
            raise RuntimeError("the controller did not start") from self._error

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        try:
            loop.run_until_complete(self._main())
        except RuntimeError as error:
            if not self.crashed:
                self._error = error
        except BaseException as error:
            self._error = error
        finally:
            self._ready.set()
            if not self.crashed:
                loop.close()

    async def _main(self) -> None:
        configuration = k8s.Configuration()
        configuration.host = self.base_url
        configuration.api_key = {"authorization": f"Bearer {self.token}"}
        configuration.verify_ssl = self.verify_ssl
        self.kube = KubeApi.for_configuration(configuration, request_timeout_s=self.request_timeout_s)
        self.runtime = ControllerRuntime(
            config=self.config,
            ec2=self.fleet.vpc,
            limits_for=self.limits_for or Ec2InstanceLimits(self.fleet.vpc, self.fleet.catalog).get,
            kube=self.kube,
            clock=WallClock(),
            seed=self.seed,
        )
        self._stop = asyncio.Event()
        operator = asyncio.create_task(run_operator(self.runtime, configuration, stop_flag=self._stop))
        started = asyncio.create_task(self.runtime.started.wait())
        await asyncio.wait({operator, started}, return_when=asyncio.FIRST_COMPLETED)
        self._ready.set()
        await operator
        await self.kube.close()

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `fn` on the controller's loop, between two of its steps (the VPC is not thread-safe)."""
        loop = self.loop
        if loop is None or self.crashed or loop.is_closed():
            return fn()

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout)

    def run(self, coro: Callable[[], Coroutine[Any, Any, T]], timeout: float = 30.0) -> T:
        """Await `coro()` on the controller's loop (e.g. to drive a pool from a test)."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro(), self.loop).result(timeout)

    def crash(self) -> None:
        """SIGKILL: the loop stops at once and is never resumed."""
        loop = self.loop
        if loop is None or self.crashed:
            return
        self.crashed = True
        loop.set_exception_handler(lambda _loop, _context: None)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(30)
        _DEAD_LOOPS.append(loop)
        _DEAD_TASKS.extend(asyncio.all_tasks(loop))
        # Requests already written reach the server and their answers are never read, as after a real
        # SIGKILL; the dead loop's sockets stay open (the kernel would close them) until the test ends.

    def stop(self, timeout: float = 30.0) -> None:
        loop, stop = self.loop, self._stop
        if self.crashed or loop is None or stop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)


class SimCluster:
    """The API emulator (no garbage collection, as a real API server without controller-manager),
    a simulated VPC, and the controller processes run against them."""

    def __init__(
        self,
        *,
        config: ControllerConfig,
        seed: int = 1,
        latency: LatencyConfig | None = None,
        garbage_collection: bool = False,
        rbac: bool = True,
    ) -> None:
        self.config = config
        self.rbac = rbac
        self.seed = seed
        self.emulator = KubeApiEmulator(garbage_collection=garbage_collection)
        self._server = EmulatorThread(self.emulator)
        self.fleet = SimFleet(
            seed=seed, cluster_name=config.cluster_name, clock=WallClock(), latency=latency or FAST_LATENCY
        )
        self.controller: ControllerProcess | None = None
        self.limits_for: LimitsLookup | None = None  # instance limits other than the VPC's catalog
        self.instances: dict[str, str] = {}  # node name -> instance id
        self.generation = 0

    # ----- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._server.start()
        self.emulator.install_crds_from(crd_directory(), recursive=True)
        self.emulator.create(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": MANAGED_NAMESPACE, "labels": {"netalloc.dev/managed": "true"}},
            }
        )
        if self.rbac:  # the controller gets exactly the rights deploy/rbac.yaml grants its ServiceAccount
            self.emulator.enforce_rbac(shipped_rbac())

    def close(self) -> None:
        if self.controller is not None:
            self.controller.stop()
        self._server.stop()

    def __enter__(self) -> SimCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start_controller(self, config: ControllerConfig | None = None) -> ControllerProcess:
        """A new controller process (with other settings, if given: a restart after a config change)."""
        self.generation += 1
        if config is not None:
            self.config = config
        process = ControllerProcess(
            base_url=self.emulator.base_url,
            fleet=self.fleet,
            config=self.config,
            seed=self.seed * 1000 + self.generation,
            limits_for=self.limits_for,
        )
        process.start()
        self.controller = process
        return process

    def crash_controller(self) -> None:
        if self.controller is not None:
            self.controller.crash()
            self.emulator.drop_watches()  # the dead process's connections are gone
            self.controller = None

    def stop_controller(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def in_controller(self, fn: Callable[[], T]) -> T:
        """Read the VPC or the pools between the controller's steps (or at once when none runs)."""
        return self.controller.call(fn) if self.controller is not None else fn()

    # ----- the cluster's objects, as kubectl, the scheduler or the cloud would make them -----------------
    def add_node(self, name: str, instance_type: str = "c5.4xlarge") -> JsonObject:
        def launch() -> str:
            vpc = self.fleet.vpc
            instance = vpc.launch_instance(
                instance_type, self.fleet.subnet.subnet_id, security_group_ids=[vpc.default_security_group_id]
            )
            return f"aws:///{instance.availability_zone}/{instance.instance_id}"

        provider_id = self.in_controller(launch)
        self.instances[name] = provider_id.rsplit("/", 1)[1]
        return self.emulator.create(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": {"node.kubernetes.io/instance-type": instance_type}},
                "spec": {"providerID": provider_id},
            }
        )

    def delete_node(self, name: str, *, terminate: bool = True) -> None:
        """The Node object goes; with `terminate` its instance too (a scale-down or a replacement)."""
        with contextlib.suppress(Exception):
            self.emulator.delete("v1", "Node", name)
        instance_id = self.instances.pop(name, None)
        if terminate and instance_id is not None:
            self.in_controller(lambda: self.fleet.vpc.terminate_instance(instance_id))

    def add_security_group_policy(self, name: str, app: str, group_ids: list[str]) -> JsonObject:
        return self.emulator.create(policy_manifest(name, app, group_ids))

    def add_pod(
        self, name: str, node: str, *, app: str = "api", namespace: str = MANAGED_NAMESPACE
    ) -> JsonObject:
        return self.emulator.create(pod_manifest(name, node, app=app, namespace=namespace))

    def delete_pod(self, name: str, namespace: str = MANAGED_NAMESPACE) -> None:
        with contextlib.suppress(Exception):
            self.emulator.delete("v1", "Pod", name, namespace)

    # ----- observation -----------------------------------------------------------------------------------
    def pnas(self) -> list[JsonObject]:
        return self.emulator.list(POD_NETWORK_ALLOCATION.api_version, POD_NETWORK_ALLOCATION.kind)

    def pools(self) -> list[JsonObject]:
        return self.emulator.list(NODE_NETWORK_POOL.api_version, NODE_NETWORK_POOL.kind)

    def pods(self) -> list[JsonObject]:
        return self.emulator.list("v1", "Pod")

    def nodes(self) -> list[JsonObject]:
        return self.emulator.list("v1", "Node")

    def allocated(self) -> list[JsonObject]:
        return [p for p in self.pnas() if (p.get("status") or {}).get("state") == "Allocated"]


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` from this (the test's) thread; True once it holds, False after `timeout`."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
