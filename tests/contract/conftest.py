"""One EC2 contract, two implementations: the simulated VPC and the boto3 adapter over moto.

`ec2` builds the same topology (a /19 subnet in us-west-2a, two security groups, one m5.large
launched with the first group) in whichever backend the test is parametrized with, so every
contract test is written once and must pass on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from controller.adapters.sim_vpc import SimulatedVpc
from controller.adapters.sim_vpc.api_limits import LatencyConfig
from controller.clock import ManualClock
from controller.ports.ec2 import Ec2Port, InstanceTypeInfo

REGION = "us-west-2"
AVAILABILITY_ZONE = "us-west-2a"
SUBNET_CIDR = "10.0.32.0/19"
INSTANCE_TYPE = "m5.large"
# What DescribeInstanceTypes says about m5.large (moto ships the real data).
# moto's example AMI: accepted without listing images (that listing costs ~1 s per test).
MOTO_EXAMPLE_AMI = "ami-12c6146b"
M5_LARGE = InstanceTypeInfo(instance_type=INSTANCE_TYPE, max_enis=3, ipv4_per_eni=10, vcpus=2, nitro=True)


@dataclass(frozen=True)
class Topology:
    backend: str
    port: Ec2Port
    subnet_id: str
    subnet_cidr: str
    availability_zone: str
    sg_ids: tuple[str, str]
    instance_id: str
    instance_type: str


def sim_topology() -> Topology:
    vpc = SimulatedVpc(
        instance_types={INSTANCE_TYPE: M5_LARGE},
        branch_limits={INSTANCE_TYPE: 9},
        clock=ManualClock(),
        latency=LatencyConfig.none(),
    )
    subnet = vpc.create_subnet(SUBNET_CIDR, availability_zone=AVAILABILITY_ZONE)
    sg_ids = (vpc.create_security_group("nodes"), vpc.create_security_group("pods"))
    instance = vpc.launch_instance(INSTANCE_TYPE, subnet.subnet_id, security_group_ids=[sg_ids[0]])
    return Topology(
        "sim",
        vpc,
        subnet.subnet_id,
        SUBNET_CIDR,
        AVAILABILITY_ZONE,
        sg_ids,
        instance.instance_id,
        INSTANCE_TYPE,
    )


def boto_topology(monkeypatch: pytest.MonkeyPatch) -> Iterator[Topology]:
    try:
        from controller.adapters.ec2_boto import Boto3Ec2
    except ImportError as error:
        pytest.skip(
            f"controller.adapters.ec2_boto cannot be imported yet ({error}); contract runs on sim only"
        )

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("ec2", region_name=REGION)
        vpc_id = client.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet_id = client.create_subnet(
            VpcId=vpc_id, CidrBlock=SUBNET_CIDR, AvailabilityZone=AVAILABILITY_ZONE
        )["Subnet"]["SubnetId"]
        nodes, pods = (
            client.create_security_group(GroupName=name, Description=name, VpcId=vpc_id)["GroupId"]
            for name in ("nodes", "pods")
        )
        instance_id = client.run_instances(
            ImageId=MOTO_EXAMPLE_AMI,
            MinCount=1,
            MaxCount=1,
            InstanceType=INSTANCE_TYPE,
            SubnetId=subnet_id,
            SecurityGroupIds=[nodes],
        )["Instances"][0]["InstanceId"]
        yield Topology(
            "boto",
            Boto3Ec2(client),
            subnet_id,
            SUBNET_CIDR,
            AVAILABILITY_ZONE,
            (nodes, pods),
            instance_id,
            INSTANCE_TYPE,
        )


@pytest.fixture(params=["sim", "boto"])
def ec2(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Topology]:
    if request.param == "sim":
        yield sim_topology()
    else:
        yield from boto_topology(monkeypatch)
