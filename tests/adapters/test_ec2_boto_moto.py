"""The boto3 adapter against moto's EC2: what moto models, end to end through botocore."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from controller.adapters.ec2_boto import Boto3Ec2
from controller.adapters.ec2_observer import CallCounter
from controller.adapters.rate_limiter import RateLimiter
from controller.clock import ManualClock
from controller.core.errors import Ec2Error, ErrorClass, NotFoundError
from controller.core.tags import TAG_CLIENT_TOKEN, TAG_OWNER, eni_tags
from controller.core.token_bucket import BucketSpec
from controller.ports.ec2 import InterfaceType
from tests.support.ec2_http_faults import Ec2HttpFaults

REGION = "us-west-2"


@dataclass(frozen=True)
class MotoVpc:
    client: Any
    subnet_id: str
    subnet_cidr: str
    availability_zone: str
    sg_ids: tuple[str, str]
    instance_id: str


@pytest.fixture
def moto_vpc(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoVpc]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",  # loading moto's AMI catalogue costs ~1 s per test
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock="10.0.32.0/19", AvailabilityZone="us-west-2a")
        subnet_id = subnet["Subnet"]["SubnetId"]
        sg_ids = tuple(
            ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc_id)["GroupId"]
            for name in ("nodes", "pods")
        )
        instance = ec2.run_instances(
            ImageId="ami-0123456789abcdef0",  # moto does not require the image to exist
            MinCount=1,
            MaxCount=1,
            InstanceType="m5.large",
            SubnetId=subnet_id,
            SecurityGroupIds=[sg_ids[0]],
        )["Instances"][0]
        yield MotoVpc(
            client=ec2,
            subnet_id=subnet_id,
            subnet_cidr="10.0.32.0/19",
            availability_zone="us-west-2a",
            sg_ids=(sg_ids[0], sg_ids[1]),
            instance_id=instance["InstanceId"],
        )


@pytest.fixture
def counter() -> CallCounter:
    return CallCounter()


@pytest.fixture
def adapter(moto_vpc: MotoVpc, counter: CallCounter) -> Boto3Ec2:
    return Boto3Ec2(moto_vpc.client, observer=counter)


def _tags(owner: str) -> dict[str, str]:
    return eni_tags(cluster="c1", instance_id="i-node", owner=owner, role="pod-ips")


async def test_create_with_tags_then_find_by_tag_filter(
    adapter: Boto3Ec2, moto_vpc: MotoVpc, counter: CallCounter
) -> None:
    created = await adapter.create_network_interface(
        subnet_id=moto_vpc.subnet_id,
        security_group_ids=[moto_vpc.sg_ids[1]],
        tags=_tags("node-a"),
        client_token="tok-a",
        secondary_ip_count=2,
    )
    other = await adapter.create_network_interface(
        subnet_id=moto_vpc.subnet_id, security_group_ids=[], tags=_tags("node-b"), client_token="tok-b"
    )

    assert created.eni_id.startswith("eni-")
    assert created.subnet_id == moto_vpc.subnet_id
    assert created.status == "available"
    assert created.interface_type is InterfaceType.INTERFACE
    assert created.security_group_ids == (moto_vpc.sg_ids[1],)
    assert len(created.secondary_ips) == 2
    assert created.private_ip not in created.secondary_ips
    assert created.tags == {**_tags("node-a"), TAG_CLIENT_TOKEN: "tok-a"}
    assert created.attachment is None

    found = await adapter.describe_network_interfaces(tags={TAG_OWNER: "node-a"})
    assert [eni.eni_id for eni in found] == [created.eni_id]
    assert found[0] == created

    by_token = await adapter.describe_network_interfaces(tags={TAG_CLIENT_TOKEN: "tok-b"})
    assert [eni.eni_id for eni in by_token] == [other.eni_id]

    # Several tags are ANDed; ids narrow further.
    assert (
        await adapter.describe_network_interfaces(tags={TAG_OWNER: "node-a", TAG_CLIENT_TOKEN: "tok-b"}) == []
    )
    both = await adapter.describe_network_interfaces(eni_ids=[created.eni_id, other.eni_id])
    assert {eni.eni_id for eni in both} == {created.eni_id, other.eni_id}

    assert counter.calls("CreateNetworkInterface") == 2
    assert counter.outcome("DescribeNetworkInterfaces", "ok") == 4
    assert counter.total() == 6


async def test_describe_network_interfaces_refuses_an_unfiltered_describe(adapter: Boto3Ec2) -> None:
    with pytest.raises(ValueError, match="never the whole account"):
        await adapter.describe_network_interfaces()
    assert await adapter.describe_network_interfaces(eni_ids=[]) == []


async def test_create_sends_token_type_tags_and_counts(adapter: Boto3Ec2, moto_vpc: MotoVpc) -> None:
    faults = Ec2HttpFaults(moto_vpc.client)  # nothing scripted: it only records what moto receives

    trunk = await adapter.create_network_interface(
        subnet_id=moto_vpc.subnet_id,
        security_group_ids=[moto_vpc.sg_ids[0]],
        interface_type=InterfaceType.TRUNK,
        tags={TAG_OWNER: "node-a"},
        client_token="trunk-token",
        prefix_count=2,
    )
    plain = await adapter.create_network_interface(
        subnet_id=moto_vpc.subnet_id, security_group_ids=[], tags={}, client_token="plain-token"
    )

    # moto reports every ENI as "interface"; the adapter reports the type that was asked for.
    assert trunk.interface_type is InterfaceType.TRUNK
    assert plain.interface_type is InterfaceType.INTERFACE
    trunk_request, plain_request = faults.requests("CreateNetworkInterface")
    assert trunk_request["ClientToken"] == "trunk-token"
    assert trunk_request["InterfaceType"] == "trunk"
    assert trunk_request["Ipv4PrefixCount"] == "2"
    assert trunk_request["SecurityGroupId.1"] == moto_vpc.sg_ids[0]
    assert trunk_request["TagSpecification.1.ResourceType"] == "network-interface"
    sent_tags = {
        trunk_request[f"TagSpecification.1.Tag.{n}.Key"]: trunk_request[f"TagSpecification.1.Tag.{n}.Value"]
        for n in (1, 2)
    }
    assert sent_tags == {TAG_OWNER: "node-a", TAG_CLIENT_TOKEN: "trunk-token"}
    assert "SecondaryPrivateIpAddressCount" not in trunk_request
    assert "InterfaceType" not in plain_request
    assert "Ipv4PrefixCount" not in plain_request
    assert not any(key.startswith("SecurityGroupId") for key in plain_request)
    assert plain.tags == {TAG_CLIENT_TOKEN: "plain-token"}


async def test_attach_then_detach(adapter: Boto3Ec2, moto_vpc: MotoVpc) -> None:
    eni = await adapter.create_network_interface(
        subnet_id=moto_vpc.subnet_id, security_group_ids=[], tags={}, client_token="t"
    )

    attachment_id = await adapter.attach_network_interface(
        eni.eni_id, instance_id=moto_vpc.instance_id, device_index=1
    )

    (attached,) = await adapter.describe_network_interfaces(eni_ids=[eni.eni_id])
    assert attachment_id.startswith("eni-attach-")
    assert attached.status == "in-use"
    assert attached.attachment is not None
    assert attached.attachment.attachment_id == attachment_id
    assert attached.attachment.instance_id == moto_vpc.instance_id
    assert attached.attachment.device_index == 1

    await adapter.detach_network_interface(attachment_id, force=True)

    (detached,) = await adapter.describe_network_interfaces(eni_ids=[eni.eni_id])
    assert detached.status == "available"
    assert detached.attachment is None


async def test_assign_and_unassign_private_ips(adapter: Boto3Ec2, moto_vpc: MotoVpc) -> None:
    eni = await adapter.create_network_interface(
        subnet_id=moto_vpc.subnet_id, security_group_ids=[], tags={}, client_token="t", secondary_ip_count=1
    )

    new_ips = await adapter.assign_private_ips(eni.eni_id, count=3)

    assert len(new_ips) == 3
    assert eni.private_ip not in new_ips
    assert not set(new_ips) & set(eni.secondary_ips)
    (after_assign,) = await adapter.describe_network_interfaces(eni_ids=[eni.eni_id])
    assert set(after_assign.secondary_ips) == set(eni.secondary_ips) | set(new_ips)

    await adapter.unassign_private_ips(eni.eni_id, ips=new_ips[:2])

    (after_unassign,) = await adapter.describe_network_interfaces(eni_ids=[eni.eni_id])
    assert set(after_unassign.secondary_ips) == set(eni.secondary_ips) | {new_ips[2]}
    assert after_unassign.private_ip == eni.private_ip


async def test_zero_counts_and_empty_lists_make_no_call(
    adapter: Boto3Ec2, moto_vpc: MotoVpc, counter: CallCounter
) -> None:
    assert await adapter.assign_private_ips("eni-unused", count=0) == []
    assert await adapter.assign_prefixes("eni-unused", count=0) == []
    await adapter.unassign_private_ips("eni-unused", ips=[])
    await adapter.unassign_prefixes("eni-unused", prefixes=[])
    await adapter.create_tags("eni-unused", tags={})
    assert await adapter.describe_instance_types([]) == []
    assert counter.total() == 0


async def test_modify_security_groups(adapter: Boto3Ec2, moto_vpc: MotoVpc) -> None:
    eni = await adapter.create_network_interface(
        subnet_id=moto_vpc.subnet_id, security_group_ids=[moto_vpc.sg_ids[0]], tags={}, client_token="t"
    )

    await adapter.modify_security_groups(eni.eni_id, security_group_ids=list(moto_vpc.sg_ids))

    (modified,) = await adapter.describe_network_interfaces(eni_ids=[eni.eni_id])
    assert set(modified.security_group_ids) == set(moto_vpc.sg_ids)


async def test_create_tags_adds_to_existing_tags(adapter: Boto3Ec2, moto_vpc: MotoVpc) -> None:
    eni = await adapter.create_network_interface(
        subnet_id=moto_vpc.subnet_id, security_group_ids=[], tags={TAG_OWNER: "node-a"}, client_token="t"
    )

    await adapter.create_tags(eni.eni_id, tags={TAG_OWNER: "node-b", "extra": "1"})

    (tagged,) = await adapter.describe_network_interfaces(tags={TAG_OWNER: "node-b"})
    assert tagged.eni_id == eni.eni_id
    assert tagged.tags == {TAG_OWNER: "node-b", "extra": "1", TAG_CLIENT_TOKEN: "t"}


async def test_delete_twice_raises_not_found(
    adapter: Boto3Ec2, moto_vpc: MotoVpc, counter: CallCounter
) -> None:
    eni = await adapter.create_network_interface(
        subnet_id=moto_vpc.subnet_id, security_group_ids=[], tags={}, client_token="t"
    )
    await adapter.delete_network_interface(eni.eni_id)

    with pytest.raises(NotFoundError) as raised:
        await adapter.delete_network_interface(eni.eni_id)

    assert raised.value.code == "InvalidNetworkInterfaceID.NotFound"
    assert eni.eni_id in raised.value.message
    assert raised.value.action == "DeleteNetworkInterface"
    assert raised.value.http_status == 400
    assert raised.value.error_class is ErrorClass.PERMANENT
    assert counter.outcome("DeleteNetworkInterface", "ok") == 1
    assert counter.errors("DeleteNetworkInterface") == 1
    with pytest.raises(NotFoundError):
        await adapter.describe_network_interfaces(eni_ids=[eni.eni_id])


async def test_describe_instance_types(adapter: Boto3Ec2) -> None:
    infos = await adapter.describe_instance_types(["m5.large", "c5.4xlarge", "t2.micro"])

    by_type = {info.instance_type: info for info in infos}
    assert set(by_type) == {"m5.large", "c5.4xlarge", "t2.micro"}
    m5 = by_type["m5.large"]
    assert (m5.max_enis, m5.ipv4_per_eni, m5.vcpus, m5.nitro) == (3, 10, 2, True)
    c5 = by_type["c5.4xlarge"]
    assert (c5.max_enis, c5.ipv4_per_eni, c5.vcpus, c5.nitro) == (8, 30, 16, True)
    assert by_type["t2.micro"].nitro is False  # Xen


async def test_describe_instance_types_unknown_type_is_permanent(adapter: Boto3Ec2) -> None:
    with pytest.raises(Ec2Error) as raised:
        await adapter.describe_instance_types(["m5.nonexistent"])
    assert raised.value.error_class is ErrorClass.PERMANENT
    assert not isinstance(raised.value, NotFoundError)


async def test_describe_instance(adapter: Boto3Ec2, moto_vpc: MotoVpc) -> None:
    info = await adapter.describe_instance(moto_vpc.instance_id)

    assert info.instance_id == moto_vpc.instance_id
    assert info.instance_type == "m5.large"
    assert info.subnet_id == moto_vpc.subnet_id
    assert info.availability_zone == moto_vpc.availability_zone
    assert info.security_group_ids == (moto_vpc.sg_ids[0],)
    (primary,) = await adapter.describe_network_interfaces(eni_ids=[info.primary_eni_id])
    assert primary.attachment is not None
    assert primary.attachment.instance_id == moto_vpc.instance_id
    assert primary.attachment.device_index == 0

    with pytest.raises(NotFoundError) as raised:
        await adapter.describe_instance("i-0123456789abcdef0")
    assert raised.value.code == "InvalidInstanceID.NotFound"


async def test_describe_subnet(adapter: Boto3Ec2, moto_vpc: MotoVpc) -> None:
    before = await adapter.describe_subnet(moto_vpc.subnet_id)
    await adapter.create_network_interface(
        subnet_id=moto_vpc.subnet_id, security_group_ids=[], tags={}, client_token="t", secondary_ip_count=4
    )
    after = await adapter.describe_subnet(moto_vpc.subnet_id)

    assert before.subnet_id == moto_vpc.subnet_id
    assert before.cidr_block == moto_vpc.subnet_cidr
    assert before.availability_zone == moto_vpc.availability_zone
    assert after.available_ip_count == before.available_ip_count - 5


async def test_every_call_waits_for_the_rate_limiter(moto_vpc: MotoVpc) -> None:
    clock = ManualClock()
    limiter = RateLimiter(BucketSpec(capacity=2, refill_per_s=4.0), clock)
    adapter = Boto3Ec2(moto_vpc.client, limiter=limiter)

    for _ in range(2):
        await adapter.describe_subnet(moto_vpc.subnet_id)
    assert clock.now() == 0.0  # the burst passes at once

    for _ in range(3):
        await adapter.describe_subnet(moto_vpc.subnet_id)
    assert clock.now() == pytest.approx(3 * 0.25)  # then one call per 1/QPS


async def test_from_config_builds_a_retrying_rate_limited_client(moto_vpc: MotoVpc) -> None:
    counter = CallCounter()
    adapter = Boto3Ec2.from_config(region=REGION, max_attempts=4, observer=counter)

    retries = adapter.client.meta.config.retries
    assert retries["mode"] == "standard"
    assert retries["total_max_attempts"] == 4
    assert adapter.client.meta.region_name == REGION
    subnet = await adapter.describe_subnet(moto_vpc.subnet_id)
    assert subnet.cidr_block == moto_vpc.subnet_cidr
    assert counter.outcome("DescribeSubnets", "ok") == 1


async def test_describe_by_subnet_and_the_subnet_s_cidr_reservations(
    adapter: Boto3Ec2, moto_vpc: MotoVpc
) -> None:
    ec2 = moto_vpc.client
    ec2.create_subnet_cidr_reservation(
        SubnetId=moto_vpc.subnet_id, Cidr="10.0.33.0/28", ReservationType="prefix"
    )
    ec2.create_subnet_cidr_reservation(
        SubnetId=moto_vpc.subnet_id, Cidr="10.0.34.0/28", ReservationType="explicit"
    )
    reservations = await adapter.describe_subnet_cidr_reservations(moto_vpc.subnet_id)
    assert sorted((r.cidr, r.reservation_type) for r in reservations) == [
        ("10.0.33.0/28", "prefix"),
        ("10.0.34.0/28", "explicit"),
    ]
    enis = await adapter.describe_network_interfaces(subnet_id=moto_vpc.subnet_id)
    assert enis and all(e.subnet_id == moto_vpc.subnet_id for e in enis)  # the instance's primary ENI
