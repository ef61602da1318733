"""The EC2 port: the calls netalloc makes, as typed models. Both adapters implement `Ec2Port`.

Every method raises `controller.core.errors.Ec2Error` (or its subclass `NotFoundError`) with the
AWS error code and message; the core classifies it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InterfaceType(StrEnum):
    INTERFACE = "interface"
    TRUNK = "trunk"
    BRANCH = "branch"


class InstanceTypeInfo(_Model):
    """What DescribeInstanceTypes says about a type (branch limits are not there; see the catalog)."""

    instance_type: str
    max_enis: int = Field(ge=1)
    ipv4_per_eni: int = Field(ge=1)
    vcpus: int = Field(ge=1)
    nitro: bool


class InstanceInfo(_Model):
    instance_id: str
    instance_type: str
    subnet_id: str
    availability_zone: str
    primary_eni_id: str
    security_group_ids: tuple[str, ...] = ()


class SubnetInfo(_Model):
    subnet_id: str
    cidr_block: str
    availability_zone: str
    available_ip_count: int


class Attachment(_Model):
    attachment_id: str
    instance_id: str
    device_index: int


class NetworkInterface(_Model):
    eni_id: str
    subnet_id: str
    interface_type: InterfaceType
    status: str  # "available" | "in-use"
    mac_address: str = ""
    private_ip: str
    secondary_ips: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    tags: dict[str, str] = Field(default_factory=dict)
    attachment: Attachment | None = None


class SubnetCidrReservation(_Model):
    """A subnet CIDR reservation: `prefix` keeps a range for /28 prefix assignment, `explicit` keeps
    it from EC2's automatic assignment (field notes §1: the reliable fix for prefix exhaustion)."""

    cidr: str
    reservation_type: str  # "prefix" | "explicit"


class TrunkAssociation(_Model):
    association_id: str
    branch_eni_id: str
    trunk_eni_id: str
    vlan_id: int = Field(ge=1, le=4094)


class Ec2Port(Protocol):
    """The EC2 actions netalloc uses. All are async; all are safe to repeat where noted."""

    async def describe_instance_types(self, instance_types: list[str]) -> list[InstanceTypeInfo]: ...

    async def describe_instance(self, instance_id: str) -> InstanceInfo: ...

    async def describe_subnet(self, subnet_id: str) -> SubnetInfo: ...

    async def create_network_interface(
        self,
        *,
        subnet_id: str,
        security_group_ids: list[str],
        interface_type: InterfaceType = InterfaceType.INTERFACE,
        tags: dict[str, str],
        client_token: str,
        secondary_ip_count: int = 0,
        prefix_count: int = 0,
    ) -> NetworkInterface:
        """CreateNetworkInterface. Repeating it with the same client token returns the same ENI."""
        ...

    async def create_network_interface_permission(self, eni_id: str, *, aws_account_id: str) -> None: ...

    async def attach_network_interface(self, eni_id: str, *, instance_id: str, device_index: int) -> str:
        """AttachNetworkInterface; returns the attachment id."""
        ...

    async def detach_network_interface(self, attachment_id: str, *, force: bool = False) -> None: ...

    async def delete_network_interface(self, eni_id: str) -> None:
        """DeleteNetworkInterface; raises NotFoundError when it is already gone."""
        ...

    async def associate_trunk_interface(
        self, *, branch_eni_id: str, trunk_eni_id: str, vlan_id: int, client_token: str
    ) -> TrunkAssociation: ...

    async def disassociate_trunk_interface(self, association_id: str) -> None: ...

    async def describe_trunk_associations(self, trunk_eni_id: str) -> list[TrunkAssociation]: ...

    async def assign_private_ips(self, eni_id: str, *, count: int) -> list[str]: ...

    async def unassign_private_ips(self, eni_id: str, *, ips: list[str]) -> None: ...

    async def assign_prefixes(self, eni_id: str, *, count: int) -> list[str]: ...

    async def unassign_prefixes(self, eni_id: str, *, prefixes: list[str]) -> None: ...

    async def modify_security_groups(self, eni_id: str, *, security_group_ids: list[str]) -> None:
        """ModifyNetworkInterfaceAttribute (Groups)."""
        ...

    async def describe_network_interfaces(
        self,
        *,
        tags: dict[str, str] | None = None,
        eni_ids: list[str] | None = None,
        subnet_id: str | None = None,
    ) -> list[NetworkInterface]:
        """DescribeNetworkInterfaces filtered by tag values, ids and/or subnet (never the whole account)."""
        ...

    async def describe_subnet_cidr_reservations(self, subnet_id: str) -> list[SubnetCidrReservation]:
        """The subnet's CIDR reservations (IPv4); EC2's action is GetSubnetCidrReservations."""
        ...

    async def create_tags(self, resource_id: str, *, tags: dict[str, str]) -> None: ...
