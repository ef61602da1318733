"""Pool settings with the AWS VPC CNI's names and meanings (field notes, section 3), plus netalloc's own."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class SettingsError(ValueError):
    """A setting has a bad value; the message names the setting and how to fix it."""


class PoolSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    warm_eni_target: int = Field(default=1, ge=0, description="WARM_ENI_TARGET: whole free ENIs to keep")
    warm_ip_target: int | None = Field(default=None, ge=0, description="WARM_IP_TARGET: free IPs to keep")
    minimum_ip_target: int | None = Field(default=None, ge=0, description="MINIMUM_IP_TARGET: floor on IPs")
    warm_prefix_target: int = Field(default=1, ge=0, description="WARM_PREFIX_TARGET: free /28s to keep")
    enable_prefix_delegation: bool = Field(default=False, description="ENABLE_PREFIX_DELEGATION")
    max_eni: int | None = Field(default=None, ge=1, description="MAX_ENI: cap on attached ENIs")
    enable_pod_eni: bool = Field(default=False, description="ENABLE_POD_ENI: trunk + branch ENIs")
    warm_branch_eni_target: int = Field(
        default=4, ge=0, description="netalloc: branch ENIs kept created and associated, ready for pods"
    )
    prefix_fallback_to_secondary_ip: bool = Field(
        default=True,
        description="PREFIX_FALLBACK_TO_SECONDARY_IP: in prefix mode, serve pods from secondary IPs when no "
        "aligned /28 is left but single addresses are (as Cilium does)",
    )
    subnet_fragmentation_threshold: int = Field(
        default=2,
        ge=1,
        description="SUBNET_FRAGMENTATION_THRESHOLD: fewer free /28 blocks than this (or than the nodes on "
        "the subnet, each of which may need one more), while the free addresses would hold as many, sets "
        "SubnetFragmented",
    )
    ip_cooldown_s: float = Field(
        default=30.0, ge=0, description="a freed pod IP waits this long before reuse"
    )
    branch_cooldown_s: float = Field(
        default=30.0, ge=0, description="a freed branch ENI waits this long before it is reused"
    )
    excess_release_delay_s: float = Field(
        default=30.0,
        ge=0,
        description="capacity above target is released only after it has been excess this long",
    )
    shared_eni_for_pod_sg: bool = Field(
        default=False,
        description="SHARED_ENI_FOR_POD_SG: pods with security groups share, per node and group set, an "
        "ENI attached to the instance with exactly those groups (opt-in per SecurityGroupPolicy with the "
        "annotation netalloc.dev/eni-sharing: node). Pods on one shared ENI are not filtered from each "
        "other by the groups",
    )
    branch_demand_quiet_s: float = Field(
        default=300.0,
        ge=0,
        description="BRANCH_DEMAND_QUIET_S: warm branch ENIs up to the high-water mark of assigned + "
        "cooling ones are kept until that mark has not been reached for this long (hysteresis: a "
        "rollout's freed branches serve the next rollout instead of being deleted and made again)",
    )
    branch_create_estimate_s: float = Field(
        default=2.0,
        gt=0,
        description="how long a branch ENI create and association is expected to take before one has "
        "been timed; a pod waits for a cooling branch only when it comes back sooner than that",
    )

    @property
    def ip_targets_set(self) -> bool:
        return self.warm_ip_target is not None or self.minimum_ip_target is not None


ENV_NAMES: Mapping[str, str] = {
    "WARM_ENI_TARGET": "warm_eni_target",
    "WARM_IP_TARGET": "warm_ip_target",
    "MINIMUM_IP_TARGET": "minimum_ip_target",
    "WARM_PREFIX_TARGET": "warm_prefix_target",
    "ENABLE_PREFIX_DELEGATION": "enable_prefix_delegation",
    "MAX_ENI": "max_eni",
    "ENABLE_POD_ENI": "enable_pod_eni",
    "WARM_BRANCH_ENI_TARGET": "warm_branch_eni_target",
    "PREFIX_FALLBACK_TO_SECONDARY_IP": "prefix_fallback_to_secondary_ip",
    "SUBNET_FRAGMENTATION_THRESHOLD": "subnet_fragmentation_threshold",
    "BRANCH_DEMAND_QUIET_S": "branch_demand_quiet_s",
    "SHARED_ENI_FOR_POD_SG": "shared_eni_for_pod_sg",
}


def pool_settings_from_env(environ: Mapping[str, str] | None = None) -> PoolSettings:
    """Read the VPC-CNI-named variables; a bad value is an error naming the variable."""
    env = os.environ if environ is None else environ
    values: dict[str, str] = {
        field: env[name] for name, field in ENV_NAMES.items() if env.get(name, "") != ""
    }
    try:
        return PoolSettings.model_validate(values)
    except ValidationError as exc:
        field_to_env = {field: name for name, field in ENV_NAMES.items()}
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            problems.append(f"{field_to_env.get(field, field)}={values.get(field)!r}: {err['msg']}")
        raise SettingsError("invalid pool setting: " + "; ".join(problems)) from None
