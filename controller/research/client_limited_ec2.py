"""The crd side's EC2 client stack in the simulation: one client-side token bucket and SDK retries in
front of the simulated VPC. Without it the crd side would hammer EC2 with no client limit.

It is NOT the same as netalloc's boto3 adapter (`Boto3Ec2.from_config`): the adapter takes one token
per logical call (botocore's retries inside it take none) and the controller builds it with
`max_attempts=1`, while this takes a token per attempt and makes 3 attempts with `SdkRetryingClient`'s
backoff. TODO (integrator, crd side): replace this with the runtime's own EC2 client, and report it
through `controller.research.approach.ReportsEc2Client` (set `same_as_boto3_adapter` only from a check);
the report makes no claim until then."""

from __future__ import annotations

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
from controller.research.sdk_client import SdkRetryingClient


class ClientLimitedEc2:
    """An `Ec2Port` that sends every call through `SdkRetryingClient` (limiter + SDK retries)."""

    def __init__(self, port: Ec2Port, client: SdkRetryingClient) -> None:
        self._port = port
        self.client = client

    async def describe_instance_types(self, instance_types: list[str]) -> list[InstanceTypeInfo]:
        return await self.client.call(lambda: self._port.describe_instance_types(instance_types))

    async def describe_instance(self, instance_id: str) -> InstanceInfo:
        return await self.client.call(lambda: self._port.describe_instance(instance_id))

    async def describe_subnet(self, subnet_id: str) -> SubnetInfo:
        return await self.client.call(lambda: self._port.describe_subnet(subnet_id))

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
        return await self.client.call(
            lambda: self._port.create_network_interface(
                subnet_id=subnet_id,
                security_group_ids=security_group_ids,
                interface_type=interface_type,
                tags=tags,
                client_token=client_token,
                secondary_ip_count=secondary_ip_count,
                prefix_count=prefix_count,
            )
        )

    async def create_network_interface_permission(self, eni_id: str, *, aws_account_id: str) -> None:
        await self.client.call(
            lambda: self._port.create_network_interface_permission(eni_id, aws_account_id=aws_account_id)
        )

    async def attach_network_interface(self, eni_id: str, *, instance_id: str, device_index: int) -> str:
        return await self.client.call(
            lambda: self._port.attach_network_interface(
                eni_id, instance_id=instance_id, device_index=device_index
            )
        )

    async def detach_network_interface(self, attachment_id: str, *, force: bool = False) -> None:
        await self.client.call(lambda: self._port.detach_network_interface(attachment_id, force=force))

    async def delete_network_interface(self, eni_id: str) -> None:
        await self.client.call(lambda: self._port.delete_network_interface(eni_id))

    async def associate_trunk_interface(
        self, *, branch_eni_id: str, trunk_eni_id: str, vlan_id: int, client_token: str
    ) -> TrunkAssociation:
        return await self.client.call(
            lambda: self._port.associate_trunk_interface(
                branch_eni_id=branch_eni_id,
                trunk_eni_id=trunk_eni_id,
                vlan_id=vlan_id,
                client_token=client_token,
            )
        )

    async def disassociate_trunk_interface(self, association_id: str) -> None:
        await self.client.call(lambda: self._port.disassociate_trunk_interface(association_id))

    async def describe_trunk_associations(self, trunk_eni_id: str) -> list[TrunkAssociation]:
        return await self.client.call(lambda: self._port.describe_trunk_associations(trunk_eni_id))

    async def assign_private_ips(self, eni_id: str, *, count: int) -> list[str]:
        return await self.client.call(lambda: self._port.assign_private_ips(eni_id, count=count))

    async def unassign_private_ips(self, eni_id: str, *, ips: list[str]) -> None:
        await self.client.call(lambda: self._port.unassign_private_ips(eni_id, ips=ips))

    async def assign_prefixes(self, eni_id: str, *, count: int) -> list[str]:
        return await self.client.call(lambda: self._port.assign_prefixes(eni_id, count=count))

    async def unassign_prefixes(self, eni_id: str, *, prefixes: list[str]) -> None:
        await self.client.call(lambda: self._port.unassign_prefixes(eni_id, prefixes=prefixes))

    async def modify_security_groups(self, eni_id: str, *, security_group_ids: list[str]) -> None:
        await self.client.call(
            lambda: self._port.modify_security_groups(eni_id, security_group_ids=security_group_ids)
        )

    async def describe_network_interfaces(
        self,
        *,
        tags: dict[str, str] | None = None,
        eni_ids: list[str] | None = None,
        subnet_id: str | None = None,
    ) -> list[NetworkInterface]:
        return await self.client.call(
            lambda: self._port.describe_network_interfaces(tags=tags, eni_ids=eni_ids, subnet_id=subnet_id)
        )

    async def describe_subnet_cidr_reservations(self, subnet_id: str) -> list[SubnetCidrReservation]:
        return await self.client.call(lambda: self._port.describe_subnet_cidr_reservations(subnet_id))

    async def create_tags(self, resource_id: str, *, tags: dict[str, str]) -> None:
        await self.client.call(lambda: self._port.create_tags(resource_id, tags=tags))
