"""The `netalloc` command."""

from __future__ import annotations

import asyncio
import json
import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from controller.core.instance_limits import InstanceLimits, UnknownInstanceTypeError
from controller.core.node_pool import NodePool, PoolEni
from controller.core.pool_planner import AttachEni, PoolPlan, describe_action, plan_pool
from controller.settings import PoolSettings

app = typer.Typer(
    name="netalloc",
    help="Allocate AWS VPC networking for pods, recorded in PodNetworkAllocation objects.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()


@app.callback()
def root() -> None:
    """netalloc: pod networking recorded in PodNetworkAllocation objects, never in pod annotations."""


errors = Console(stderr=True)


class Output(StrEnum):
    TABLE = "table"
    JSON = "json"


class LimitsSource(StrEnum):
    SHIPPED = "shipped"
    AWS = "aws"


def fail(message: str, code: int = 2) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def _limits(instance_type: str, source: LimitsSource, region: str) -> InstanceLimits:
    from controller.instance_data import Ec2InstanceLimits, shipped_catalog

    catalog = shipped_catalog()
    if source is LimitsSource.SHIPPED:
        return catalog.get(instance_type)
    from controller.adapters.ec2_boto import Boto3Ec2

    ec2 = Boto3Ec2.from_config(region=region)
    catalog = type(catalog)({}, catalog.branch_limits)  # ask EC2, not the shipped data
    return asyncio.run(Ec2InstanceLimits(ec2, catalog).get(instance_type))


def plan_new_node(limits: InstanceLimits, settings: PoolSettings) -> PoolPlan:
    """The pre-allocation plan for a node of this type that has just registered."""
    pool = NodePool(
        node_name="new-node",
        instance_id="i-00000000000000000",
        subnet_id="subnet-00000000000000000",
        subnet_cidr="10.0.0.0/16",
        limits=limits,
        settings=settings,
    )
    pool.add_eni(PoolEni(eni_id="primary", device_index=0, primary=True))
    return plan_pool(pool, now=0.0)


def shared_eni_sets(limits: InstanceLimits, settings: PoolSettings, plan: PoolPlan) -> int:
    """Group sets a new node of this type can give shared ENIs (SharedENI): its ENI attachments less
    the primary, the trunk (with ENABLE_POD_ENI) and the ENIs the warm plan attaches."""
    cap = limits.max_enis if settings.max_eni is None else min(limits.max_enis, settings.max_eni)
    trunk = 1 if settings.enable_pod_eni and limits.trunking else 0
    attached = sum(1 for action in plan.actions if isinstance(action, AttachEni))
    return max(0, cap - 1 - trunk - attached)


def plan_document(limits: InstanceLimits, settings: PoolSettings, plan: PoolPlan) -> dict[str, Any]:
    return {
        "instance_type": limits.instance_type,
        "max_pods": plan.max_pods,
        "branch_enis": limits.branch_enis,
        "max_enis": limits.max_enis,
        "ipv4_per_eni": limits.ipv4_per_eni,
        "vcpus": limits.vcpus,
        "nitro": limits.nitro,
        "trunking": limits.trunking,
        "mode": "PrefixDelegation" if settings.enable_prefix_delegation else "SecondaryIP",
        "settings": settings.model_dump(mode="json"),
        "target_addresses": plan.target_addresses,
        "shared_eni_sets": shared_eni_sets(limits, settings, plan),
        "plan": [action.model_dump(mode="json") for action in plan.actions],
        "plan_text": [describe_action(action) for action in plan.actions],
        "notes": list(plan.notes),
    }


@app.command()
def plan(
    instance_type: Annotated[str, typer.Option("--instance-type", help="EC2 instance type, e.g. m5.large")],
    prefix_delegation: Annotated[
        bool, typer.Option("--prefix-delegation", help="ENABLE_PREFIX_DELEGATION: /28 prefixes")
    ] = False,
    warm_eni_target: Annotated[int | None, typer.Option(help="WARM_ENI_TARGET")] = None,
    warm_ip_target: Annotated[int | None, typer.Option(help="WARM_IP_TARGET")] = None,
    minimum_ip_target: Annotated[int | None, typer.Option(help="MINIMUM_IP_TARGET")] = None,
    warm_prefix_target: Annotated[int | None, typer.Option(help="WARM_PREFIX_TARGET")] = None,
    max_eni: Annotated[int | None, typer.Option(help="MAX_ENI")] = None,
    pod_eni: Annotated[bool, typer.Option("--pod-eni", help="ENABLE_POD_ENI: trunk + branch ENIs")] = False,
    warm_branch_eni_target: Annotated[int | None, typer.Option(help="warm branch ENIs to keep")] = None,
    output: Annotated[Output, typer.Option(help="table or json")] = Output.TABLE,
    ec2: Annotated[
        LimitsSource, typer.Option("--ec2", help="shipped: the dataset in the package; aws: ask EC2")
    ] = LimitsSource.SHIPPED,
    region: Annotated[str, typer.Option(help="AWS region for --ec2 aws")] = "us-east-1",
) -> None:
    """Print an instance type's limits, max pods, branch-ENI limit and a new node's pre-allocation plan."""
    given = {
        "enable_prefix_delegation": prefix_delegation,
        "warm_eni_target": warm_eni_target,
        "warm_ip_target": warm_ip_target,
        "minimum_ip_target": minimum_ip_target,
        "warm_prefix_target": warm_prefix_target,
        "max_eni": max_eni,
        "enable_pod_eni": pod_eni,
        "warm_branch_eni_target": warm_branch_eni_target,
    }
    try:
        settings = PoolSettings.model_validate({k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        raise fail(problems) from None
    try:
        limits = _limits(instance_type, ec2, region)
    except UnknownInstanceTypeError as exc:
        raise fail(str(exc)) from None
    if settings.max_eni is not None and settings.max_eni > limits.max_enis:
        raise fail(f"--max-eni {settings.max_eni} is above {instance_type}'s limit of {limits.max_enis} ENIs")
    new_plan = plan_new_node(limits, settings)
    document = plan_document(limits, settings, new_plan)
    if output is Output.JSON:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    table = Table(title=f"{instance_type} ({document['mode']})", show_header=False)
    for label, key in [
        ("max pods (EKS formula)", "max_pods"),
        ("branch ENIs (security groups per pod)", "branch_enis"),
        ("ENIs", "max_enis"),
        ("IPv4 addresses per ENI", "ipv4_per_eni"),
        ("vCPUs", "vcpus"),
        ("Nitro / can trunk", None),
        ("addresses kept ready", "target_addresses"),
        ("shared ENI group sets (SharedENI)", "shared_eni_sets"),
    ]:
        value = f"{limits.nitro} / {limits.trunking}" if key is None else str(document[key])
        table.add_row(label, value)
    console.print(table)
    console.print("[bold]Pre-allocation plan for a new node:[/]")
    for step, line in enumerate(document["plan_text"], 1):
        console.print(f"  {step}. {line}")
    if not document["plan_text"]:
        console.print("  (nothing to do)")
    for note in document["notes"]:
        console.print(f"  note: {note}")


@app.command()
def sandbox(
    nodes: Annotated[int, typer.Option(min=1, max=50, help="nodes to register")] = 3,
    pods: Annotated[
        int, typer.Option(min=1, max=2000, help="pods to create, a third matched by a SecurityGroupPolicy")
    ] = 24,
    output: Annotated[Output, typer.Option(help="table or json")] = Output.TABLE,
    wide: Annotated[bool, typer.Option("--wide", help="show the -o wide columns")] = False,
) -> None:
    """The real controller against an in-process Kubernetes API and a simulated VPC."""
    from controller.k8s.sandbox_run import sandbox_main

    summary = sandbox_main(nodes=nodes, pods=pods, output=output.value, wide=wide)
    if summary.pod_writes or summary.leaked_enis or summary.allocated != pods:
        raise typer.Exit(1)


@app.command()
def run(
    kubeconfig: Annotated[
        str | None, typer.Option(help="kubeconfig file; default: in-cluster config")
    ] = None,
    ec2: Annotated[
        str, typer.Option("--ec2", help="aws: real EC2; sim: the simulated VPC, no AWS account")
    ] = "aws",
    cluster_name: Annotated[
        str,
        typer.Option(
            envvar="CLUSTER_NAME",
            help="this cluster's own name: the tag value on every ENI (no default: a shared name would "
            "let two clusters delete each other's ENIs)",
        ),
    ] = "",
    region: Annotated[str, typer.Option(envvar="AWS_REGION", help="AWS region (--ec2 aws)")] = "us-east-1",
    namespace_selector: Annotated[
        str, typer.Option(envvar="MANAGED_NAMESPACE_SELECTOR", help="namespaces whose pods are managed")
    ] = "netalloc.dev/managed=true",
    metrics_port: Annotated[int, typer.Option(help="Prometheus /metrics port")] = 8080,
    health_port: Annotated[int, typer.Option(help="/healthz and /readyz port")] = 8081,
    log_format: Annotated[str, typer.Option(help="text or json")] = "text",
    leader_election: Annotated[bool, typer.Option("--leader-election/--no-leader-election")] = True,
    lease_namespace: Annotated[str, typer.Option(envvar="POD_NAMESPACE")] = "netalloc-system",
) -> None:
    """Run the controller (in-cluster config by default); pool settings from the VPC-CNI-named env vars."""
    from controller.k8s.app import Ec2Backend, RunOptions
    from controller.k8s.app import run as run_controller
    from controller.k8s.reconcilers.context import ClusterNameError, check_cluster_name

    try:
        check_cluster_name(cluster_name)
    except ClusterNameError as error:
        raise fail(str(error)) from None
    if ec2 not in ("aws", "sim"):
        raise fail(f"--ec2 {ec2!r}: use aws or sim")
    if log_format not in ("text", "json"):
        raise fail(f"--log-format {log_format!r}: use text or json")
    options = RunOptions(
        kubeconfig=kubeconfig,
        ec2=Ec2Backend(ec2),
        cluster_name=cluster_name,
        region=region,
        namespace_selector=namespace_selector,
        metrics_port=metrics_port,
        health_port=health_port,
        json_logs=log_format == "json",
        leader_election=leader_election,
        lease_namespace=lease_namespace,
    )
    asyncio.run(run_controller(options))


def _compare() -> None:
    from controller.research.cli import compare_command

    app.command("compare")(compare_command)


_compare()


doctor_app = typer.Typer(
    help="Why a pod, node or subnet is (not) networked, and what to do. Also: kubectl netalloc doctor ...",
    no_args_is_help=True,
)
app.add_typer(doctor_app, name="doctor")
DoctorKubeconfig = Annotated[
    str | None, typer.Option(help="kubeconfig file; default: $KUBECONFIG or ~/.kube/config")
]
DoctorEc2 = Annotated[
    str, typer.Option("--ec2", help="aws: ask EC2 for the subnet; sim or none: use what the pools publish")
]
DoctorOutput = Annotated[Output, typer.Option(help="table (text) or json")]


def _doctor(what: str, target: str, kubeconfig: str | None, ec2: str, region: str, output: Output) -> None:
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    from controller import doctor as doctors
    from controller.k8s.kube_api import KubeApi, KubeError

    if ec2 not in ("aws", "sim", "none"):
        raise fail(f"--ec2 {ec2!r}: use aws, sim or none")
    configuration = k8s_config.kube_config.Configuration()
    try:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except (ConfigException, OSError) as error:
        raise fail(f"cannot load the kubeconfig ({kubeconfig or 'default'}): {error}") from None

    async def diagnose() -> doctors.Diagnosis:
        kube = KubeApi.for_configuration(configuration)
        port = None
        if ec2 == "aws":
            from controller.adapters.ec2_boto import Boto3Ec2

            port = Boto3Ec2.from_config(region=region, max_attempts=3)
        try:
            if what == "pod":
                namespace, _, name = target.rpartition("/")
                return await doctors.doctor_pod(kube, namespace or "default", name, port)
            if what == "node":
                return await doctors.doctor_node(kube, target, port)
            return await doctors.doctor_subnet(kube, target, port)
        finally:
            await kube.close()

    try:
        diagnosis = asyncio.run(diagnose())
    except KubeError as error:
        raise fail(f"the API server refused: {error}") from None
    if output is Output.JSON:
        sys.stdout.write(json.dumps(diagnosis.model_dump(mode="json"), indent=2) + "\n")
    else:
        console.print(doctors.render(diagnosis), highlight=False, markup=False)


@doctor_app.command("pod")
def doctor_pod(
    target: Annotated[str, typer.Argument(metavar="NAMESPACE/NAME")],
    kubeconfig: DoctorKubeconfig = None,
    ec2: DoctorEc2 = "none",
    region: Annotated[str, typer.Option(envvar="AWS_REGION")] = "us-east-1",
    output: DoctorOutput = Output.TABLE,
) -> None:
    """Why this pod is or is not networked."""
    _doctor("pod", target, kubeconfig, ec2, region, output)


@doctor_app.command("node")
def doctor_node(
    name: str,
    kubeconfig: DoctorKubeconfig = None,
    ec2: DoctorEc2 = "none",
    region: Annotated[str, typer.Option(envvar="AWS_REGION")] = "us-east-1",
    output: DoctorOutput = Output.TABLE,
) -> None:
    """A node's pool: its state, limits, free addresses and its subnet."""
    _doctor("node", name, kubeconfig, ec2, region, output)


@doctor_app.command("subnet")
def doctor_subnet(
    subnet_id: str,
    kubeconfig: DoctorKubeconfig = None,
    ec2: DoctorEc2 = "none",
    region: Annotated[str, typer.Option(envvar="AWS_REGION")] = "us-east-1",
    output: DoctorOutput = Output.TABLE,
) -> None:
    """A subnet's free addresses against its free aligned /28 blocks, and what to do."""
    _doctor("subnet", subnet_id, kubeconfig, ec2, region, output)


@app.command()
def demo() -> None:
    """Run the embedded default: no cluster, no AWS account."""
    from controller.demo import run_demo

    run_demo()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
