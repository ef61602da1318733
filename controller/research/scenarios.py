"""The scenarios `netalloc compare` runs, each with documented parameters and defaults sized to run
in seconds. `--scale` multiplies nodes and pods (and subnet room where the scenario needs it)."""

from __future__ import annotations

import math
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

from controller.k8s.reconcilers.context import ControllerConfig
from controller.ports.ec2 import InstanceTypeInfo


class ScenarioName(StrEnum):
    BATCH_SCALE_UP = "batch-scale-up"
    ADMISSION_CONFLICT = "admission-conflict"
    PREFIX_EXHAUSTION = "prefix-exhaustion"
    ROLLOUT_CHURN = "rollout-churn"
    CONTROLLER_RESTART = "controller-restart"
    SHARED_ENI_FALLBACK = "shared-eni-fallback"


# Where the crd side may run with SharedENI (`--shared-eni`): the branch-ENI scenarios whose pods have
# security groups. Prefix delegation has no SGP pods; the restart scenario is about recovery.
SHARED_ENI_SCENARIOS: tuple[ScenarioName, ...] = (
    ScenarioName.BATCH_SCALE_UP,
    ScenarioName.ADMISSION_CONFLICT,
    ScenarioName.ROLLOUT_CHURN,
    ScenarioName.SHARED_ENI_FALLBACK,
)


SCENARIO_DESCRIPTIONS: dict[ScenarioName, str] = {
    ScenarioName.BATCH_SCALE_UP: (
        "N nodes register at once, then each gets K pods with security groups (SGP pods)."
    ),
    ScenarioName.ADMISSION_CONFLICT: (
        "As batch-scale-up, plus a Kyverno-like policy that adds a preStop hook on pod UPDATE to a "
        "fraction of the pods."
    ),
    ScenarioName.PREFIX_EXHAUSTION: (
        "Prefix delegation on a subnet that is nearly full and fragmented (many free addresses, few "
        "free aligned /28s); pods keep arriving; later, other tenants' deletions free space."
    ),
    ScenarioName.ROLLOUT_CHURN: (
        "A Deployment of SGP pods is running; a rolling update replaces every pod (max surge 25%, "
        "max unavailable 0). Measured from the start of the rollout."
    ),
    ScenarioName.CONTROLLER_RESTART: (
        "As batch-scale-up; the allocator's controller dies mid-burst and restarts after a delay."
    ),
    ScenarioName.SHARED_ENI_FALLBACK: (
        "m5.large nodes (3 ENIs: primary, trunk, one free slot), each with pods of 3 security-group sets "
        "(3 SecurityGroupPolicies); the crd side shares an ENI per set (SharedENI), so the sets beyond "
        "the free slot fall back to branch ENIs."
    ),
}

# DescribeInstanceTypes facts for the types the scenarios use (field notes §3).
INSTANCE_TYPES: dict[str, InstanceTypeInfo] = {
    "m5.large": InstanceTypeInfo(instance_type="m5.large", max_enis=3, ipv4_per_eni=10, vcpus=2, nitro=True),
    "c5.4xlarge": InstanceTypeInfo(
        instance_type="c5.4xlarge", max_enis=8, ipv4_per_eni=30, vcpus=16, nitro=True
    ),
}


class ScenarioParams(BaseModel):
    """Every knob of a scenario. Fields that a scenario does not use keep their defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ScenarioName
    scale: float = Field(default=1.0, gt=0)
    nodes: int = Field(default=50, ge=1, description="nodes that register at t=0")
    pods_per_node: int = Field(default=20, ge=0, description="pods created per node at t=0")
    instance_type: str = Field(default="c5.4xlarge", description="c5.4xlarge: 54 branch ENIs")
    subnet_cidr: str = "10.0.0.0/16"
    namespace: str = "apps"
    watch_delay_s: float = Field(default=0.05, ge=0, description="watch event delivery delay")
    horizon_s: float = Field(default=14_400.0, gt=0, description="virtual time limit of one run")
    # Node start-up (field notes §7). Nodes register at t=0 (the Node object exists, not Ready); aws-node
    # marks them and they turn Ready `node_ready_gap_s` later. The scheduler binds pods to Ready nodes
    # only; RC starts its trunk only once the node is marked; a controller may start at registration.
    # Default 10 s: a short, conservative head start for a controller that starts at registration
    # (field notes give up to 35 s for aws-node's readiness probe alone); `benchmarks/rc_baseline.py`
    # sweeps 0, 10 and 30 s so no figure rests on this choice.
    node_ready_gap_s: float = Field(default=10.0, ge=0, description="Node registration → Ready and marked")
    kubelet_status_report_s: float = Field(
        default=300.0,
        gt=0,
        description="ASSUMPTION kubelet nodeStatusReportFrequency: a Node event every 5 min",
    )
    # ASSUMPTION (field notes §3 "ENI create + attach can take up to 10 s"): an attachment turns
    # `attached` after a uniform draw in this range.
    attach_delay_min_s: float = Field(default=1.0, ge=0)
    attach_delay_max_s: float = Field(default=5.0, ge=0)
    # Pod lifecycle (ASSUMPTIONS, the same for both approaches): after its network is ready the
    # container starts, then the readiness probe passes; a deleted pod terminates for its grace period.
    container_start_s: float = Field(default=2.0, ge=0, description="network-ready → container running")
    readiness_s: float = Field(default=5.0, ge=0, description="container running → pod Ready")
    termination_s: float = Field(
        default=30.0, ge=0, description="pod deletion → gone (terminationGracePeriodSeconds, used in full)"
    )
    # admission-conflict
    prestop_fraction: float = Field(default=0.0, ge=0, le=1, description="pods the preStop policy selects")
    # prefix-exhaustion
    prefix_delegation: bool = False
    pod_interval_s: float = Field(default=0.0, ge=0, description="time between pod arrivals (0: all at once)")
    fragment_keep_free_per_block: int = Field(default=8, ge=0, le=16)
    initial_free_prefixes: int = Field(default=4, ge=0, description="aligned /28s left free at the start")
    free_at_s: float = Field(default=300.0, ge=0, description="when other tenants free space")
    free_block_fraction: float = Field(default=0.5, ge=0, le=1, description="share of blocks they free")
    # rollout-churn
    replicas: int = Field(default=0, ge=0)
    max_surge_fraction: float = Field(default=0.25, gt=0, le=1)
    # controller-restart
    crash_at_s: float | None = None
    restart_delay_s: float = Field(default=30.0, ge=0)
    # group sets (1: one policy "web-sgp" selecting app=web, as every other scenario has)
    group_sets: int = Field(
        default=1,
        ge=1,
        description="SecurityGroupPolicies, each with a security group of its own and selecting pods by "
        "a label; a node's pods take them in turn",
    )
    # crd side
    crd_shared_eni: bool = Field(
        default=False,
        description="crd runs with SharedENI: PoolSettings(shared_eni_for_pod_sg=True, enable_pod_eni="
        "crd_shared_eni_branch_fallback). Without the fallback there is no trunk: every SGP pod is served "
        "from its group set's shared ENI on its node. A branch-ENI crd run is added for comparison",
    )
    crd_shared_eni_branch_fallback: bool = Field(
        default=False,
        description="with crd_shared_eni, ENABLE_POD_ENI too (a trunk per node): a group set that finds no "
        "free ENI slot on its node falls back to branch ENIs",
    )
    crd_warm_branch_eni_target: int = Field(
        default=4, ge=0, description="PoolSettings.warm_branch_eni_target (netalloc's default)"
    )
    # Each approach runs with its own shipped Kubernetes client. RC's is 20 QPS / burst 30 (field notes
    # §2, BaselineParams). netalloc's has no client-side limit (ControllerConfig.kube_client_qps), as
    # controller-runtime ships since kubernetes-sigs/controller-runtime#3119: APF is the server's guard.
    # `--crd-k8s-client-qps 20` gives crd RC's limit, through the runtime's own limiter.
    crd_k8s_client_qps: float | None = Field(
        default=ControllerConfig.model_fields["kube_client_qps"].default,
        gt=0,
        description="netalloc's KUBE_CLIENT_QPS (its shipped default: none)",
    )
    crd_k8s_client_burst: int = Field(
        default=ControllerConfig.model_fields["kube_client_burst"].default, ge=1
    )
    crd_prefix_fallback: bool = Field(
        default=True, description="PREFIX_FALLBACK_TO_SECONDARY_IP (netalloc's default: on)"
    )

    @model_validator(mode="after")
    def _shared_eni_where_it_applies(self) -> ScenarioParams:
        if self.crd_shared_eni and self.name not in SHARED_ENI_SCENARIOS:
            raise ValueError(shared_eni_refusal(self.name))
        return self

    @property
    def total_pods(self) -> int:
        if self.name is ScenarioName.ROLLOUT_CHURN:
            return self.replicas
        return self.nodes * self.pods_per_node


def default_params(name: ScenarioName) -> ScenarioParams:
    if name is ScenarioName.BATCH_SCALE_UP:
        return ScenarioParams(name=name)
    if name is ScenarioName.ADMISSION_CONFLICT:
        return ScenarioParams(name=name, prestop_fraction=0.2)
    if name is ScenarioName.PREFIX_EXHAUSTION:
        return ScenarioParams(
            name=name,
            nodes=10,
            pods_per_node=12,
            instance_type="m5.large",
            subnet_cidr="10.0.0.0/22",
            prefix_delegation=True,
            pod_interval_s=0.5,
        )
    if name is ScenarioName.ROLLOUT_CHURN:
        return ScenarioParams(name=name, nodes=50, pods_per_node=0, replicas=1000)
    if name is ScenarioName.SHARED_ENI_FALLBACK:
        return ScenarioParams(
            name=name,
            nodes=10,
            pods_per_node=12,
            instance_type="m5.large",
            group_sets=3,
            crd_shared_eni=True,
            crd_shared_eni_branch_fallback=True,
        )
    return ScenarioParams(name=name, crash_at_s=20.0, restart_delay_s=30.0)


def shared_eni_refusal(name: ScenarioName) -> str:
    """The one message for `--shared-eni` where it does not apply (CLI and parameters alike)."""
    allowed = ", ".join(s.value for s in SHARED_ENI_SCENARIOS)
    return f"--shared-eni applies to the scenarios {allowed}; not to {name.value}"


def scenario_params(name: ScenarioName | str, *, scale: float = 1.0, **overrides: object) -> ScenarioParams:
    """The defaults of `name`, with `overrides`, then scaled (nodes, pods, replicas, subnet room)."""
    base = default_params(ScenarioName(name))
    merged = base.model_copy(update=overrides) if overrides else base
    params = ScenarioParams.model_validate(merged.model_dump())
    if scale == 1.0:
        return params
    update: dict[str, object] = {
        "scale": scale,
        "nodes": max(1, round(params.nodes * scale)),
        "replicas": round(params.replicas * scale),
    }
    if params.name is ScenarioName.PREFIX_EXHAUSTION:
        network, length = params.subnet_cidr.split("/")
        grow = max(0, math.ceil(math.log2(scale))) if scale > 1 else 0
        update["subnet_cidr"] = f"{network}/{max(16, int(length) - grow)}"
        update["initial_free_prefixes"] = max(1, round(params.initial_free_prefixes * scale))
    return ScenarioParams.model_validate({**params.model_dump(), **update})


def parameter_rows(params: ScenarioParams) -> list[tuple[str, str]]:
    """The parameters that matter for this scenario, for the report."""
    rows = [
        ("scenario", params.name.value),
        ("scale", f"{params.scale:g}"),
        ("nodes", str(params.nodes)),
        ("instance type", params.instance_type),
        ("subnet", params.subnet_cidr),
        ("watch delivery delay", f"{params.watch_delay_s:g} s"),
        ("Node registration → Ready (and aws-node mark)", f"{params.node_ready_gap_s:g} s"),
        ("ENI attachment completes after", f"{params.attach_delay_min_s:g}–{params.attach_delay_max_s:g} s"),
        (
            "pod lifecycle",
            f"container start {params.container_start_s:g} s, readiness {params.readiness_s:g} s, "
            f"termination {params.termination_s:g} s",
        ),
        ("virtual time limit", f"{params.horizon_s:g} s"),
    ]
    if params.name is ScenarioName.ROLLOUT_CHURN:
        rows += [
            ("replicas", str(params.replicas)),
            ("max surge", f"{params.max_surge_fraction:.0%}"),
            ("max unavailable", "0"),
        ]
    else:
        rows.append(("pods per node", str(params.pods_per_node)))
    if params.prestop_fraction:
        rows.append(("pods selected by the preStop policy", f"{params.prestop_fraction:.0%}"))
    if params.prefix_delegation:
        rows += [
            ("pod arrival interval", f"{params.pod_interval_s:g} s"),
            ("free addresses kept per /28 by other tenants", str(params.fragment_keep_free_per_block)),
            ("free aligned /28s at the start", str(params.initial_free_prefixes)),
            ("other tenants free space at", f"{params.free_at_s:g} s"),
            ("share of their blocks freed", f"{params.free_block_fraction:.0%}"),
        ]
    if params.group_sets > 1:
        rows.append(("security-group sets (one SecurityGroupPolicy each)", str(params.group_sets)))
    if params.crash_at_s is not None:
        rows += [
            ("controller dies at", f"{params.crash_at_s:g} s"),
            ("restarts after", f"{params.restart_delay_s:g} s"),
        ]
    if params.crd_shared_eni:
        rows.append(
            (
                "crd: SharedENI (SHARED_ENI_FOR_POD_SG)",
                "on, branch ENI fallback (ENABLE_POD_ENI)"
                if params.crd_shared_eni_branch_fallback
                else "on, no trunk (ENABLE_POD_ENI off); crd-branch: the branch-ENI crd run beside it",
            )
        )
    rows += [
        ("crd: warm branch ENI target", str(params.crd_warm_branch_eni_target)),
        (
            "crd: Kubernetes client limit",
            "none (netalloc's default: APF on the server decides)"
            if params.crd_k8s_client_qps is None
            else f"{params.crd_k8s_client_qps:g} QPS / burst {params.crd_k8s_client_burst}",
        ),
    ]
    return rows
