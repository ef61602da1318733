"""What a pod asks for and what it was given: the payload of a PodNetworkAllocation."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class AllocationMode(StrEnum):
    BRANCH_ENI = "BranchENI"  # security groups per pod: a branch ENI on the node's trunk, with its VLAN
    PREFIX_IP = "PrefixIP"  # one address out of a /28 prefix delegated to a node ENI
    SECONDARY_IP = "SecondaryIP"  # one secondary private IP of a node ENI
    # security groups shared per node: an address on an ENI attached to the instance with exactly the
    # pod's group set, shared by the node's pods of that set (no trunk, no branch ENI per pod)
    SHARED_ENI = "SharedENI"


class AllocationRequest(BaseModel):
    """One pod's request.

    `key` is stable for the pod's life (namespace/name/uid) and makes every step idempotent.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=1)
    node_name: str = Field(min_length=1)
    mode: AllocationMode
    security_group_ids: tuple[str, ...] = ()

    @property
    def sorted_groups(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.security_group_ids)))


class AssignedResources(BaseModel):
    """The network identity handed to a pod."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: AllocationMode
    ip: str
    eni_id: str
    subnet_cidr: str
    mac_address: str = ""
    vlan_id: int | None = Field(default=None, ge=1, le=4094)
    prefix: str | None = None
    security_group_ids: tuple[str, ...] = ()
