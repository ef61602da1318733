"""The boto3 adapter of the EC2 port.

Every call takes a token from the client-side `RateLimiter` (if it has one: `netalloc run` paces
each EC2 action itself instead), then runs the synchronous boto3 call in a worker thread. botocore's
own retry mode (standard, 3 attempts by default) runs inside that call; what escapes it is converted
to `Ec2Error` (or `NotFoundError`) with the AWS code, message, action and HTTP status, and reported
once to the `Ec2CallObserver`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import boto3
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from controller.adapters.ec2_observer import CallOutcome, Ec2CallObserver
from controller.adapters.rate_limiter import RateLimiter
from controller.clock import LoopClock
from controller.core.errors import Ec2Error, ErrorClass, NotFoundError
from controller.core.tags import TAG_CLIENT_TOKEN
from controller.core.token_bucket import BucketSpec
from controller.ports.ec2 import (
    Attachment,
    InstanceInfo,
    InstanceTypeInfo,
    InterfaceType,
    NetworkInterface,
    SubnetCidrReservation,
    SubnetInfo,
    TrunkAssociation,
)

# Codes that mean "the named resource does not exist"; for idempotent deletes that counts as done.
NOT_FOUND_CODES: Final = frozenset(
    {
        "InvalidNetworkInterfaceID.NotFound",
        "InvalidAttachmentID.NotFound",
        "InvalidAssociationID.NotFound",
        "InvalidNetworkInterface.NotFound",
        "InvalidInstanceID.NotFound",
    }
)
# The filter AWS's own VPC resource controller uses; DescribeTrunkInterfaceAssociations accepts it
# although the API reference only documents gre-key and interface-protocol.
TRUNK_ID_FILTER: Final = "trunk-interface-association.trunk-interface-id"
# Page sizes: the API maxima. DescribeNetworkInterfaces refuses MaxResults together with ids.
DESCRIBE_ENIS_PAGE: Final = 1000
DESCRIBE_TRUNK_ASSOCIATIONS_PAGE: Final = 255
# Connection-pool size: one per default to_thread worker, so concurrent calls do not queue in urllib3.
MAX_POOL_CONNECTIONS: Final = 32


class Boto3Ec2:
    """`Ec2Port` over a boto3 EC2 client."""

    def __init__(
        self, client: Any, *, limiter: RateLimiter | None = None, observer: Ec2CallObserver | None = None
    ) -> None:
        self._client = client
        self._limiter = limiter
        self._observer = observer

    @property
    def client(self) -> Any:
        """The boto3 client (tests hook botocore events on it)."""
        return self._client

    @classmethod
    def from_config(
        cls,
        *,
        region: str,
        qps: float | None = 12.0,
        burst: int = 18,
        max_attempts: int = 3,
        retry_mode: str = "standard",
        endpoint_url: str | None = None,
        observer: Ec2CallObserver | None = None,
        connect_timeout_s: float = 60.0,
        read_timeout_s: float = 60.0,
    ) -> Boto3Ec2:
        """A client with botocore retries (`max_attempts` in total) behind a `qps`/`burst` limiter
        (`qps=None`: none; the controller paces each action itself, `controller.engine.ec2_pacing`).

        The controller passes `max_attempts=1`: its engine is the one retry layer, and with short
        timeouts the longest call is bounded (the lease fence relies on it)."""
        config = Config(
            retries={"total_max_attempts": max_attempts, "mode": retry_mode},
            max_pool_connections=MAX_POOL_CONNECTIONS,
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
        )
        client = boto3.client("ec2", region_name=region, endpoint_url=endpoint_url, config=config)
        limiter = RateLimiter(BucketSpec(capacity=burst, refill_per_s=qps), LoopClock()) if qps else None
        return cls(client, limiter=limiter, observer=observer)

    # -- the call path --------------------------------------------------------------------------

    async def _call(self, action: str, **params: Any) -> dict[str, Any]:
        if self._limiter is not None:
            await self._limiter.acquire()
        method = getattr(self._client, xform_name(action))
        try:
            response: dict[str, Any] = await asyncio.to_thread(method, **params)
        except ClientError as exc:
            error = _from_client_error(action, exc)
            self._observe(action, "throttled" if error.error_class is ErrorClass.THROTTLING else "error")
            raise error from exc
        except (HTTPClientError, BotoConnectionError) as exc:
            # No answer from EC2 (connection refused or reset, timeouts): retried like a 5xx.
            error = Ec2Error(
                "RequestTimeout" if "timeout" in type(exc).__name__.lower() else "ServiceUnavailable",
                f"{type(exc).__name__}: {exc}",
                action=action,
            )
            self._observe(action, "error")
            raise error from exc
        except BotoCoreError as exc:
            # Client-side problems (bad parameters, no credentials): permanent, named by their class.
            self._observe(action, "error")
            raise Ec2Error(type(exc).__name__, str(exc), action=action) from exc
        self._observe(action, "ok")
        return response

    async def _pages(self, action: str, **params: Any) -> list[dict[str, Any]]:
        """Every page of a paginated action; each page is one rate-limited call."""
        pages: list[dict[str, Any]] = []
        while True:
            page = await self._call(action, **params)
            pages.append(page)
            next_token = page.get("NextToken")
            if not next_token:
                return pages
            params = {**params, "NextToken": next_token}

    def _observe(self, action: str, outcome: CallOutcome) -> None:
        if self._observer is not None:
            self._observer(action, outcome)

    # -- instances and subnets ------------------------------------------------------------------

    async def describe_instance_types(self, instance_types: list[str]) -> list[InstanceTypeInfo]:
        if not instance_types:
            return []
        pages = await self._pages("DescribeInstanceTypes", InstanceTypes=list(instance_types))
        return [_instance_type_info(raw) for page in pages for raw in page.get("InstanceTypes", [])]

    async def describe_instance(self, instance_id: str) -> InstanceInfo:
        response = await self._call("DescribeInstances", InstanceIds=[instance_id])
        instances = [i for r in response.get("Reservations", []) for i in r.get("Instances", [])]
        if not instances:
            raise NotFoundError(
                "InvalidInstanceID.NotFound",
                f"The instance ID '{instance_id}' does not exist",
                action="DescribeInstances",
            )
        return _instance_info(instances[0])

    async def describe_subnet(self, subnet_id: str) -> SubnetInfo:
        response = await self._call("DescribeSubnets", SubnetIds=[subnet_id])
        subnets = response.get("Subnets", [])
        if not subnets:
            raise Ec2Error(
                "InvalidSubnetID.NotFound",
                f"The subnet ID '{subnet_id}' does not exist",
                action="DescribeSubnets",
            )
        raw = subnets[0]
        return SubnetInfo(
            subnet_id=raw["SubnetId"],
            cidr_block=raw["CidrBlock"],
            availability_zone=raw["AvailabilityZone"],
            available_ip_count=int(raw["AvailableIpAddressCount"]),
        )

    # -- network interfaces ---------------------------------------------------------------------

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
        all_tags = {**tags, TAG_CLIENT_TOKEN: client_token}
        params: dict[str, Any] = {
            "SubnetId": subnet_id,
            "ClientToken": client_token,
            "TagSpecifications": [{"ResourceType": "network-interface", "Tags": _tag_list(all_tags)}],
        }
        if security_group_ids:
            params["Groups"] = list(security_group_ids)
        if interface_type is not InterfaceType.INTERFACE:
            params["InterfaceType"] = interface_type.value
        if secondary_ip_count > 0:
            params["SecondaryPrivateIpAddressCount"] = secondary_ip_count
        if prefix_count > 0:
            params["Ipv4PrefixCount"] = prefix_count
        response = await self._call("CreateNetworkInterface", **params)
        created = _network_interface(response["NetworkInterface"])
        if (
            interface_type is not InterfaceType.INTERFACE
            and created.interface_type is InterfaceType.INTERFACE
        ):
            # moto gap: moto ignores InterfaceType and always answers "interface". EC2 itself
            # either creates what was asked or fails, so report what we asked for.
            created = created.model_copy(update={"interface_type": interface_type})
        return created

    async def create_network_interface_permission(self, eni_id: str, *, aws_account_id: str) -> None:
        await self._call(
            "CreateNetworkInterfacePermission",
            NetworkInterfaceId=eni_id,
            AwsAccountId=aws_account_id,
            Permission="INSTANCE-ATTACH",
        )

    async def attach_network_interface(self, eni_id: str, *, instance_id: str, device_index: int) -> str:
        response = await self._call(
            "AttachNetworkInterface",
            NetworkInterfaceId=eni_id,
            InstanceId=instance_id,
            DeviceIndex=device_index,
        )
        return str(response["AttachmentId"])

    async def detach_network_interface(self, attachment_id: str, *, force: bool = False) -> None:
        await self._call("DetachNetworkInterface", AttachmentId=attachment_id, Force=force)

    async def delete_network_interface(self, eni_id: str) -> None:
        await self._call("DeleteNetworkInterface", NetworkInterfaceId=eni_id)

    async def describe_network_interfaces(
        self,
        *,
        tags: dict[str, str] | None = None,
        eni_ids: list[str] | None = None,
        subnet_id: str | None = None,
    ) -> list[NetworkInterface]:
        if tags is None and eni_ids is None and subnet_id is None:
            raise ValueError(
                "describe_network_interfaces needs tags, eni_ids or a subnet, never the whole account"
            )
        if eni_ids is not None and not eni_ids:
            return []
        params: dict[str, Any] = {}
        filters = [{"Name": f"tag:{key}", "Values": [value]} for key, value in (tags or {}).items()]
        if subnet_id:
            filters.append({"Name": "subnet-id", "Values": [subnet_id]})
        if filters:
            params["Filters"] = filters
        if eni_ids:
            params["NetworkInterfaceIds"] = list(eni_ids)
        else:
            params["MaxResults"] = DESCRIBE_ENIS_PAGE
        pages = await self._pages("DescribeNetworkInterfaces", **params)
        return [_network_interface(raw) for page in pages for raw in page.get("NetworkInterfaces", [])]

    async def describe_subnet_cidr_reservations(self, subnet_id: str) -> list[SubnetCidrReservation]:
        """EC2's action for this is GetSubnetCidrReservations."""
        response = await self._call("GetSubnetCidrReservations", SubnetId=subnet_id)
        return [
            SubnetCidrReservation(cidr=raw["Cidr"], reservation_type=raw.get("ReservationType", "explicit"))
            for raw in response.get("SubnetIpv4CidrReservations", [])
        ]

    async def modify_security_groups(self, eni_id: str, *, security_group_ids: list[str]) -> None:
        await self._call(
            "ModifyNetworkInterfaceAttribute", NetworkInterfaceId=eni_id, Groups=list(security_group_ids)
        )

    async def create_tags(self, resource_id: str, *, tags: dict[str, str]) -> None:
        if tags:
            await self._call("CreateTags", Resources=[resource_id], Tags=_tag_list(tags))

    # -- secondary IPs and prefixes -------------------------------------------------------------

    async def assign_private_ips(self, eni_id: str, *, count: int) -> list[str]:
        if count <= 0:
            return []
        response = await self._call(
            "AssignPrivateIpAddresses", NetworkInterfaceId=eni_id, SecondaryPrivateIpAddressCount=count
        )
        assigned = [str(a["PrivateIpAddress"]) for a in response.get("AssignedPrivateIpAddresses", [])]
        if len(assigned) > count:
            # moto gap: moto lists every address of the ENI (primary first, new ones appended);
            # EC2 lists exactly the `count` new ones.
            assigned = assigned[-count:]
        return assigned

    async def unassign_private_ips(self, eni_id: str, *, ips: list[str]) -> None:
        if ips:
            await self._call("UnassignPrivateIpAddresses", NetworkInterfaceId=eni_id, PrivateIpAddresses=ips)

    async def assign_prefixes(self, eni_id: str, *, count: int) -> list[str]:
        """/28 prefixes. moto accepts the request and assigns nothing, so under moto this is []."""
        if count <= 0:
            return []
        response = await self._call(
            "AssignPrivateIpAddresses", NetworkInterfaceId=eni_id, Ipv4PrefixCount=count
        )
        return [str(p["Ipv4Prefix"]) for p in response.get("AssignedIpv4Prefixes", [])]

    async def unassign_prefixes(self, eni_id: str, *, prefixes: list[str]) -> None:
        if prefixes:
            await self._call("UnassignPrivateIpAddresses", NetworkInterfaceId=eni_id, Ipv4Prefixes=prefixes)

    # -- trunking (not modelled by moto) --------------------------------------------------------

    async def associate_trunk_interface(
        self, *, branch_eni_id: str, trunk_eni_id: str, vlan_id: int, client_token: str
    ) -> TrunkAssociation:
        response = await self._call(
            "AssociateTrunkInterface",
            BranchInterfaceId=branch_eni_id,
            TrunkInterfaceId=trunk_eni_id,
            VlanId=vlan_id,
            ClientToken=client_token,
        )
        raw = response["InterfaceAssociation"]
        return TrunkAssociation(
            association_id=raw["AssociationId"],
            branch_eni_id=raw.get("BranchInterfaceId", branch_eni_id),
            trunk_eni_id=raw.get("TrunkInterfaceId", trunk_eni_id),
            vlan_id=int(raw.get("VlanId", vlan_id)),
        )

    async def disassociate_trunk_interface(self, association_id: str) -> None:
        # botocore fills the idempotency ClientToken itself; its retries reuse it.
        await self._call("DisassociateTrunkInterface", AssociationId=association_id)

    async def describe_trunk_associations(self, trunk_eni_id: str) -> list[TrunkAssociation]:
        pages = await self._pages(
            "DescribeTrunkInterfaceAssociations",
            Filters=[{"Name": TRUNK_ID_FILTER, "Values": [trunk_eni_id]}],
            MaxResults=DESCRIBE_TRUNK_ASSOCIATIONS_PAGE,
        )
        return [
            TrunkAssociation(
                association_id=raw["AssociationId"],
                branch_eni_id=raw["BranchInterfaceId"],
                trunk_eni_id=raw["TrunkInterfaceId"],
                vlan_id=int(raw["VlanId"]),
            )
            for page in pages
            for raw in page.get("InterfaceAssociations", [])
            if "VlanId" in raw  # GRE associations (no VLAN) are not ours
        ]


# -- conversions ------------------------------------------------------------------------------


def _from_client_error(action: str, exc: ClientError) -> Ec2Error:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    message = str(error.get("Message", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    http_status = int(status) if status is not None else None
    error_type = NotFoundError if code in NOT_FOUND_CODES else Ec2Error
    return error_type(code, message, action=action, http_status=http_status)


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def _interface_type(raw: str | None) -> InterfaceType:
    # EC2 has many other types (efa, natGateway, lambda, ...); to netalloc they are plain interfaces.
    try:
        return InterfaceType(raw or InterfaceType.INTERFACE.value)
    except ValueError:
        return InterfaceType.INTERFACE


def _network_interface(raw: Mapping[str, Any]) -> NetworkInterface:
    raw_attachment = raw.get("Attachment") or {}
    attachment = None
    if raw_attachment.get("AttachmentId") and raw_attachment.get("Status") != "detached":
        attachment = Attachment(
            attachment_id=raw_attachment["AttachmentId"],
            instance_id=raw_attachment.get("InstanceId", ""),
            device_index=int(raw_attachment.get("DeviceIndex", 0)),
        )
    private_ips = raw.get("PrivateIpAddresses", [])
    return NetworkInterface(
        eni_id=raw["NetworkInterfaceId"],
        subnet_id=raw["SubnetId"],
        interface_type=_interface_type(raw.get("InterfaceType")),
        status=raw.get("Status", ""),
        mac_address=raw.get("MacAddress", ""),
        private_ip=raw["PrivateIpAddress"],
        secondary_ips=tuple(ip["PrivateIpAddress"] for ip in private_ips if not ip.get("Primary", False)),
        prefixes=tuple(p["Ipv4Prefix"] for p in raw.get("Ipv4Prefixes", [])),
        security_group_ids=tuple(g["GroupId"] for g in raw.get("Groups", [])),
        tags={t["Key"]: t.get("Value", "") for t in raw.get("TagSet", [])},
        attachment=attachment,
    )


def _instance_type_info(raw: Mapping[str, Any]) -> InstanceTypeInfo:
    network = raw["NetworkInfo"]
    return InstanceTypeInfo(
        instance_type=raw["InstanceType"],
        max_enis=int(network["MaximumNetworkInterfaces"]),
        ipv4_per_eni=int(network["Ipv4AddressesPerInterface"]),
        vcpus=int(raw["VCpuInfo"]["DefaultVCpus"]),
        nitro=raw.get("Hypervisor") == "nitro" or bool(raw.get("BareMetal", False)),
    )


def _instance_info(raw: Mapping[str, Any]) -> InstanceInfo:
    interfaces = raw.get("NetworkInterfaces", [])
    primary = next(
        (
            eni
            for eni in interfaces
            if (eni.get("Attachment") or {}).get("DeviceIndex") == 0
            and (eni.get("Attachment") or {}).get("NetworkCardIndex", 0) == 0
        ),
        None,
    )
    return InstanceInfo(
        instance_id=raw["InstanceId"],
        instance_type=raw["InstanceType"],
        subnet_id=raw.get("SubnetId", ""),
        availability_zone=raw.get("Placement", {}).get("AvailabilityZone", ""),
        primary_eni_id=primary["NetworkInterfaceId"] if primary is not None else "",
        security_group_ids=tuple(g["GroupId"] for g in raw.get("SecurityGroups", [])),
    )
