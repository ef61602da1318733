"""Every EC2 write is checked against the leader lease first.

A replica that lost its lease (a stalled process, a partition) must not go on changing EC2 while a
standby has taken over: the two would hand out the same addresses. So each mutating call asks
`may_write(max_call_s)` first: does this replica hold the lease for at least as long as the call can
take? `max_call_s` is the adapter's worst case (botocore's connect + read timeouts, one attempt), so a
call that starts in time also ends before any standby may take the lease. Reads are not fenced.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.core.errors import Ec2Error
from controller.ports.ec2 import (
    Ec2Port,
    InstanceInfo,
    InstanceTypeInfo,
    InterfaceType,
    NetworkInterface,
    SubnetCidrReservation,
    SubnetInfo,
    TrunkAssociation,
)

LEASE_NOT_HELD = "LeaseNotHeld"


class LeaseFencedEc2:
    """`Ec2Port` that refuses writes unless the lease is held for the call's whole duration."""

    def __init__(self, inner: Ec2Port, may_write: Callable[[float], bool], *, max_call_s: float) -> None:
        self.inner = inner
        self.may_write = may_write
        self.max_call_s = max_call_s
        self.refused = 0

    def _fence(self, action: str) -> None:
        if not self.may_write(self.max_call_s):
            self.refused += 1
            raise Ec2Error(
                LEASE_NOT_HELD,
                f"this replica does not hold the leader lease for the next {self.max_call_s:.0f} s; "
                "EC2 writes wait for it (or for the process to step down)",
                action=action,
                http_status=503,
            )

    # ----- reads --------------------------------------------------------------------------------------
    async def describe_instance_types(self, instance_types: list[str]) -> list[InstanceTypeInfo]:
        return await self.inner.describe_instance_types(instance_types)

    async def describe_instance(self, instance_id: str) -> InstanceInfo:
        return await self.inner.describe_instance(instance_id)

    async def describe_subnet(self, subnet_id: str) -> SubnetInfo:
        return await self.inner.describe_subnet(subnet_id)

    async def describe_trunk_associations(self, trunk_eni_id: str) -> list[TrunkAssociation]:
        return await self.inner.describe_trunk_associations(trunk_eni_id)

    async def describe_network_interfaces(
        self,
        *,
        tags: dict[str, str] | None = None,
        eni_ids: list[str] | None = None,
        subnet_id: str | None = None,
    ) -> list[NetworkInterface]:
        return await self.inner.describe_network_interfaces(tags=tags, eni_ids=eni_ids, subnet_id=subnet_id)

    async def describe_subnet_cidr_reservations(self, subnet_id: str) -> list[SubnetCidrReservation]:
        return await self.inner.describe_subnet_cidr_reservations(subnet_id)

    # ----- writes -------------------------------------------------------------------------------------
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
        self._fence("CreateNetworkInterface")
        return await self.inner.create_network_interface(
            subnet_id=subnet_id,
            security_group_ids=security_group_ids,
            interface_type=interface_type,
            tags=tags,
            client_token=client_token,
            secondary_ip_count=secondary_ip_count,
            prefix_count=prefix_count,
        )

    async def create_network_interface_permission(self, eni_id: str, *, aws_account_id: str) -> None:
        self._fence("CreateNetworkInterfacePermission")
        await self.inner.create_network_interface_permission(eni_id, aws_account_id=aws_account_id)

    async def attach_network_interface(self, eni_id: str, *, instance_id: str, device_index: int) -> str:
        self._fence("AttachNetworkInterface")
        return await self.inner.attach_network_interface(
            eni_id, instance_id=instance_id, device_index=device_index
        )

    async def detach_network_interface(self, attachment_id: str, *, force: bool = False) -> None:
        self._fence("DetachNetworkInterface")
        await self.inner.detach_network_interface(attachment_id, force=force)

    async def delete_network_interface(self, eni_id: str) -> None:
        self._fence("DeleteNetworkInterface")
        await self.inner.delete_network_interface(eni_id)

    async def associate_trunk_interface(
        self, *, branch_eni_id: str, trunk_eni_id: str, vlan_id: int, client_token: str
    ) -> TrunkAssociation:
        self._fence("AssociateTrunkInterface")
        return await self.inner.associate_trunk_interface(
            branch_eni_id=branch_eni_id, trunk_eni_id=trunk_eni_id, vlan_id=vlan_id, client_token=client_token
        )

    async def disassociate_trunk_interface(self, association_id: str) -> None:
        self._fence("DisassociateTrunkInterface")
        await self.inner.disassociate_trunk_interface(association_id)

    async def assign_private_ips(self, eni_id: str, *, count: int) -> list[str]:
        self._fence("AssignPrivateIpAddresses")
        return await self.inner.assign_private_ips(eni_id, count=count)

    async def unassign_private_ips(self, eni_id: str, *, ips: list[str]) -> None:
        self._fence("UnassignPrivateIpAddresses")
        await self.inner.unassign_private_ips(eni_id, ips=ips)

    async def assign_prefixes(self, eni_id: str, *, count: int) -> list[str]:
        self._fence("AssignPrivateIpAddresses")
        return await self.inner.assign_prefixes(eni_id, count=count)

    async def unassign_prefixes(self, eni_id: str, *, prefixes: list[str]) -> None:
        self._fence("UnassignPrivateIpAddresses")
        await self.inner.unassign_prefixes(eni_id, prefixes=prefixes)

    async def modify_security_groups(self, eni_id: str, *, security_group_ids: list[str]) -> None:
        self._fence("ModifyNetworkInterfaceAttribute")
        await self.inner.modify_security_groups(eni_id, security_group_ids=security_group_ids)

    async def create_tags(self, resource_id: str, *, tags: dict[str, str]) -> None:
        self._fence("CreateTags")
        await self.inner.create_tags(resource_id, tags=tags)
