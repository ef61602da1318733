"""`netalloc run`: the controller process. Same runtime and operator as the sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from enum import StrEnum

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pydantic import BaseModel, ConfigDict

from controller.clock import WallClock
from controller.core.instance_limits import parse_branch_limits
from controller.instance_data import Ec2InstanceLimits, shipped_catalog
from controller.k8s.ec2_fence import LeaseFencedEc2
from controller.k8s.http_endpoints import Endpoints
from controller.k8s.kube_api import KubeApi
from controller.k8s.leader_election import LeaderElectionConfig, LeaseElector
from controller.k8s.operator import run_operator
from controller.k8s.reconcilers.context import ControllerConfig, InstanceHook, check_cluster_name
from controller.k8s.runtime import ControllerRuntime
from controller.k8s.sim_rebuild import rebuild_sim_vpc
from controller.observability import Metrics, configure_logging
from controller.ports.ec2 import Ec2Port
from controller.settings import pool_settings_from_env
from controller.sim_fleet import SimFleet

logger = logging.getLogger("netalloc.app")


class Ec2Backend(StrEnum):
    AWS = "aws"
    SIM = "sim"


class RunOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kubeconfig: str | None = None
    ec2: Ec2Backend = Ec2Backend.AWS
    cluster_name: str
    region: str = "us-east-1"
    namespace_selector: str = "netalloc.dev/managed=true"
    metrics_port: int = 8080
    health_port: int = 8081
    json_logs: bool = False
    leader_election: bool = True
    lease_namespace: str = "netalloc-system"


def kube_configuration(kubeconfig: str | None) -> k8s.Configuration:
    configuration = k8s.Configuration()
    if kubeconfig:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        k8s_config.load_incluster_config(client_configuration=configuration)
    return configuration


# botocore makes one attempt per call (the engine is the only retry layer) with these timeouts, so the
# longest EC2 call is known: the lease fence lets a write start only if the lease outlasts it.
EC2_CONNECT_TIMEOUT_S = 2.0
EC2_READ_TIMEOUT_S = 5.0
EC2_MAX_CALL_S = EC2_CONNECT_TIMEOUT_S + EC2_READ_TIMEOUT_S


def pacing_share() -> float:
    """EC2_PACING_SHARE: the share of each EC2 action's account bucket netalloc paces itself to
    (default 1: all of it; lower it when other callers share the account; 0: no pacing)."""
    text = os.environ.get("EC2_PACING_SHARE", "1")
    try:
        share = float(text)
    except ValueError:
        raise SystemExit(f"EC2_PACING_SHARE={text!r}: expected a number from 0 to 1") from None
    if not 0 <= share <= 1:
        raise SystemExit(f"EC2_PACING_SHARE={text!r}: expected a number from 0 to 1")
    return share


def kube_client_limit(environ: Mapping[str, str] | None = None) -> dict[str, float | int]:
    """KUBE_CLIENT_QPS / KUBE_CLIENT_BURST: an opt-in client-side limit on Kubernetes requests.

    Unset, or -1 as in controller-runtime, means none: the API server's Priority and Fairness decides.
    """
    env = os.environ if environ is None else environ
    limit: dict[str, float | int] = {}
    qps_text, burst_text = env.get("KUBE_CLIENT_QPS", "").strip(), env.get("KUBE_CLIENT_BURST", "").strip()
    if qps_text and qps_text != "-1":
        try:
            limit["kube_client_qps"] = float(qps_text)
        except ValueError:
            raise SystemExit(
                f"KUBE_CLIENT_QPS={qps_text!r}: expected a number above 0, or -1 for none"
            ) from None
        if not limit["kube_client_qps"] > 0:
            raise SystemExit(f"KUBE_CLIENT_QPS={qps_text!r}: expected a number above 0, or -1 for none")
    if burst_text:
        if not burst_text.isdigit() or int(burst_text) < 1:
            raise SystemExit(f"KUBE_CLIENT_BURST={burst_text!r}: expected a whole number of at least 1")
        limit["kube_client_burst"] = int(burst_text)
    return limit


def ec2_backend(
    options: RunOptions, metrics: Metrics
) -> tuple[Ec2Port, Ec2InstanceLimits, InstanceHook | None, SimFleet | None]:
    catalog = shipped_catalog(parse_branch_limits(os.environ.get("BRANCH_ENI_LIMITS", "")))
    if options.ec2 is Ec2Backend.AWS:
        from controller.adapters.ec2_boto import Boto3Ec2

        boto = Boto3Ec2.from_config(
            region=options.region,
            observer=metrics.observe_ec2,
            # The runtime paces each action under its own EC2 bucket (EC2_PACING_SHARE); a client-wide
            # FIFO limiter on top would let one action's queue hold up the others.
            qps=None if pacing_share() > 0 else 12.0,
            max_attempts=1,
            connect_timeout_s=EC2_CONNECT_TIMEOUT_S,
            read_timeout_s=EC2_READ_TIMEOUT_S,
        )
        return boto, Ec2InstanceLimits(boto, catalog), None, None
    fleet = SimFleet(
        clock=WallClock(), cluster_name=options.cluster_name, catalog=catalog, observer=metrics.observe_ec2
    )
    fleet.vpc.adopt_unknown_security_groups = True

    async def match_node(node: str, instance_id: str, instance_type: str) -> None:
        """--ec2 sim on a real cluster: give each node a simulated instance with its own id and type."""
        if all(i.instance_id != instance_id for i in fleet.vpc.instances()):
            fleet.vpc.launch_instance(
                instance_type,
                fleet.subnet.subnet_id,
                security_group_ids=[fleet.vpc.default_security_group_id],
                instance_id=instance_id,
            )
            logger.info("simulated instance %s (%s) for node %s", instance_id, instance_type, node)

    return fleet.vpc, Ec2InstanceLimits(fleet.vpc, catalog), match_node, fleet


async def run(options: RunOptions) -> None:
    configure_logging(json_logs=options.json_logs)
    check_cluster_name(options.cluster_name)
    configuration = kube_configuration(options.kubeconfig)
    metrics = Metrics()
    ec2, limits, hook, fleet = ec2_backend(options, metrics)
    kube = KubeApi.for_configuration(configuration, on_write=metrics.observe_kube_write)
    elector = (
        LeaseElector(kube, LeaderElectionConfig(namespace=options.lease_namespace))
        if options.leader_election
        else None
    )
    if elector is not None:
        ec2 = LeaseFencedEc2(ec2, elector.holds_lease_for, max_call_s=EC2_MAX_CALL_S)
    runtime = ControllerRuntime(
        config=ControllerConfig(
            cluster_name=options.cluster_name,
            namespace_selector=options.namespace_selector,
            pool=pool_settings_from_env(),
            ec2_pacing_share=pacing_share(),
            **kube_client_limit(),
            # RESYNC_INTERVAL_S: how often every watched kind is listed again (default 300 s).
            **(
                {"resync_interval_s": os.environ["RESYNC_INTERVAL_S"]}
                if "RESYNC_INTERVAL_S" in os.environ
                else {}
            ),
        ),
        ec2=ec2,
        limits_for=limits.get,
        kube=kube,
        metrics=metrics,
        clock=WallClock(),
        on_new_instance=hook,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)

    async def start_controller() -> None:
        if fleet is not None:
            await rebuild_sim_vpc(fleet.vpc, fleet.subnet.subnet_id, kube, cluster_name=options.cluster_name)
        await run_operator(runtime, configuration, stop_flag=stop)

    def ready() -> bool:
        return runtime.started.is_set() or (elector is not None and not elector.is_leader)

    endpoints = Endpoints(metrics, ready, metrics_port=options.metrics_port, health_port=options.health_port)
    await endpoints.start()
    try:
        if elector is None:
            await start_controller()
        else:

            async def lead() -> None:
                logger.info("leading: starting the controller")
                await start_controller()

            waiter = asyncio.create_task(stop.wait())
            election = asyncio.create_task(elector.run(lead))
            done, _ = await asyncio.wait({waiter, election}, return_when=asyncio.FIRST_COMPLETED)
            if election not in done:
                election.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await election  # raises LeadershipLost: the process exits and is restarted
            waiter.cancel()
    finally:
        await endpoints.stop()
        await kube.close()
