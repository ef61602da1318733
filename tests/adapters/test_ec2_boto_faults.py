"""The boto3 adapter under EC2 faults injected at the HTTP layer, with moto answering the rest.

The faults sit below botocore's retry handler, so these tests exercise botocore's real standard
retry mode (its backoff sleep is set to zero) and the adapter's error conversion on what escapes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest
from moto import mock_aws

from controller.adapters.ec2_boto import TRUNK_ID_FILTER, Boto3Ec2
from controller.adapters.ec2_observer import CallCounter
from controller.core.errors import Ec2Error, ErrorClass, NotFoundError
from controller.ports.ec2 import TrunkAssociation
from tests.support.ec2_http_faults import (
    Ec2HttpFaults,
    assign_private_ip_addresses_body,
    associate_trunk_interface_body,
    create_network_interface_permission_body,
    describe_trunk_interface_associations_body,
    disable_retry_backoff,
    disassociate_trunk_interface_body,
)

REGION = "us-west-2"
MAX_ATTEMPTS = 3
TRUNK = "eni-0a1b2c3d4e5f60718"
BRANCH = "eni-0f1e2d3c4b5a69788"


@dataclass(frozen=True)
class Harness:
    adapter: Boto3Ec2
    faults: Ec2HttpFaults
    counter: CallCounter
    subnet_id: str


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    }.items():
        monkeypatch.setenv(name, value)
    disable_retry_backoff(monkeypatch)
    with mock_aws():
        setup = boto3.client("ec2", region_name=REGION)
        vpc_id = setup.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"]
        subnet_id = setup.create_subnet(VpcId=vpc_id, CidrBlock="10.1.0.0/24")["Subnet"]["SubnetId"]
        counter = CallCounter()
        adapter = Boto3Ec2.from_config(
            region=REGION, max_attempts=MAX_ATTEMPTS, qps=1000, burst=1000, observer=counter
        )
        faults = Ec2HttpFaults(adapter.client)
        yield Harness(adapter=adapter, faults=faults, counter=counter, subnet_id=subnet_id)
        faults.uninstall()


async def _create(h: Harness, token: str = "tok", prefix_count: int = 0) -> str:
    eni = await h.adapter.create_network_interface(
        subnet_id=h.subnet_id, security_group_ids=[], tags={}, client_token=token, prefix_count=prefix_count
    )
    return eni.eni_id


# -- throttling and retries ---------------------------------------------------------------------


async def test_throttled_twice_then_succeeds_through_botocore_retries(harness: Harness) -> None:
    harness.faults.throttle_next("CreateNetworkInterface", 2)

    eni_id = await _create(harness)

    assert harness.faults.attempts("CreateNetworkInterface") == 3
    (described,) = await harness.adapter.describe_network_interfaces(eni_ids=[eni_id])
    assert described.eni_id == eni_id
    # The three attempts were one request: botocore resent the same client token each time.
    assert {r["ClientToken"] for r in harness.faults.requests("CreateNetworkInterface")} == {"tok"}
    assert harness.counter.outcome("CreateNetworkInterface", "ok") == 1
    assert harness.counter.throttled("CreateNetworkInterface") == 0


async def test_throttled_beyond_max_attempts_raises_throttling(harness: Harness) -> None:
    harness.faults.throttle_next("CreateNetworkInterface", MAX_ATTEMPTS + 2)

    with pytest.raises(Ec2Error) as raised:
        await _create(harness)

    error = raised.value
    assert error.error_class is ErrorClass.THROTTLING
    assert (error.code, error.message) == ("RequestLimitExceeded", "Request limit exceeded.")
    assert error.http_status == 503
    assert error.action == "CreateNetworkInterface"
    assert harness.faults.attempts("CreateNetworkInterface") == MAX_ATTEMPTS
    assert harness.counter.throttled("CreateNetworkInterface") == 1
    assert harness.counter.calls("CreateNetworkInterface") == 1
    # Nothing was created behind the failures.
    assert await harness.adapter.describe_network_interfaces(tags={"netalloc.dev/client-token": "tok"}) == []


async def test_internal_error_is_retried_and_then_transient(harness: Harness) -> None:
    harness.faults.fail_next(
        "DescribeSubnets",
        MAX_ATTEMPTS,
        status=500,
        code="InternalError",
        message="An internal error has occurred",
    )

    with pytest.raises(Ec2Error) as raised:
        await harness.adapter.describe_subnet(harness.subnet_id)

    assert raised.value.error_class is ErrorClass.TRANSIENT
    assert raised.value.code == "InternalError"
    assert raised.value.http_status == 500
    assert harness.faults.attempts("DescribeSubnets") == MAX_ATTEMPTS
    assert harness.counter.errors("DescribeSubnets") == 1

    harness.faults.fail_next(
        "DescribeSubnets", 1, status=500, code="InternalError", message="An internal error has occurred"
    )
    subnet = await harness.adapter.describe_subnet(harness.subnet_id)
    assert subnet.subnet_id == harness.subnet_id
    assert harness.faults.attempts("DescribeSubnets") == MAX_ATTEMPTS + 2


async def test_unreachable_endpoint_is_retried_and_then_transient(harness: Harness) -> None:
    harness.faults.drop_connection_next("DescribeSubnets", MAX_ATTEMPTS)

    with pytest.raises(Ec2Error) as raised:
        await harness.adapter.describe_subnet(harness.subnet_id)

    assert raised.value.error_class is ErrorClass.TRANSIENT
    assert "EndpointConnectionError" in raised.value.message
    assert harness.faults.attempts("DescribeSubnets") == MAX_ATTEMPTS


# -- errors EC2 does not retry --------------------------------------------------------------------

CAPACITY_FAULTS = [
    pytest.param(
        "CreateNetworkInterface",
        "InsufficientCidrBlocks",
        "The specified subnet does not have enough free cidr blocks to satisfy the request.",
        id="InsufficientCidrBlocks",
    ),
    pytest.param(
        "AssignPrivateIpAddresses",
        "InsufficientFreeAddressesInSubnet",
        "The specified subnet does not have enough free addresses to satisfy the request.",
        id="InsufficientFreeAddressesInSubnet",
    ),
    pytest.param(
        "AssignPrivateIpAddresses",
        "InvalidParameterValue",
        "There aren't sufficient free Ipv4 addresses or prefixes in the subnet to satisfy the request.",
        id="InvalidParameterValue-no-free-prefixes",
    ),
]


@pytest.mark.parametrize(("action", "code", "message"), CAPACITY_FAULTS)
async def test_subnet_exhaustion_is_capacity(harness: Harness, action: str, code: str, message: str) -> None:
    eni_id = await _create(harness) if action != "CreateNetworkInterface" else ""
    harness.faults.fail_next(action, 1, status=400, code=code, message=message)

    with pytest.raises(Ec2Error) as raised:
        if action == "CreateNetworkInterface":
            await _create(harness, token="second", prefix_count=1)
        else:
            await harness.adapter.assign_prefixes(eni_id, count=1)

    assert raised.value.error_class is ErrorClass.CAPACITY
    assert (raised.value.code, raised.value.message, raised.value.action) == (code, message, action)
    assert raised.value.http_status == 400
    assert harness.faults.attempts(action) == 1  # EC2 4xx: botocore does not retry
    assert harness.counter.errors(action) == 1


async def test_invalid_parameter_value_about_something_else_is_permanent(harness: Harness) -> None:
    eni_id = await _create(harness)
    harness.faults.fail_next(
        "AssignPrivateIpAddresses",
        1,
        status=400,
        code="InvalidParameterValue",
        message="Invalid value for count",
    )

    with pytest.raises(Ec2Error) as raised:
        await harness.adapter.assign_private_ips(eni_id, count=1)

    assert raised.value.error_class is ErrorClass.PERMANENT


async def test_missing_security_group_is_permanent_with_code_and_message(harness: Harness) -> None:
    eni_id = await _create(harness)
    message = "The security group 'sg-0123456789abcdef0' does not exist"
    harness.faults.fail_next(
        "ModifyNetworkInterfaceAttribute",
        1,
        status=400,
        code="InvalidSecurityGroupID.NotFound",
        message=message,
    )

    with pytest.raises(Ec2Error) as raised:
        await harness.adapter.modify_security_groups(eni_id, security_group_ids=["sg-0123456789abcdef0"])

    error = raised.value
    assert error.error_class is ErrorClass.PERMANENT
    assert not error.retryable
    assert not isinstance(error, NotFoundError)  # a missing SG is a configuration error, not "done"
    assert (error.code, error.message, error.http_status) == ("InvalidSecurityGroupID.NotFound", message, 400)
    assert str(error) == f"ModifyNetworkInterfaceAttribute: InvalidSecurityGroupID.NotFound: {message}"
    assert harness.faults.attempts("ModifyNetworkInterfaceAttribute") == 1


async def test_unknown_association_is_not_found(harness: Harness) -> None:
    harness.faults.fail_next(
        "DisassociateTrunkInterface",
        1,
        status=400,
        code="InvalidAssociationID.NotFound",
        message="The association ID 'trunk-assoc-0123456789abcdef0' does not exist",
    )

    with pytest.raises(NotFoundError) as raised:
        await harness.adapter.disassociate_trunk_interface("trunk-assoc-0123456789abcdef0")

    assert raised.value.code == "InvalidAssociationID.NotFound"


# -- actions moto lacks, answered with AWS's own XML ---------------------------------------------


async def test_associate_trunk_interface_parses_the_association(harness: Harness) -> None:
    harness.faults.throttle_next("AssociateTrunkInterface", 1)
    harness.faults.answer(
        "AssociateTrunkInterface",
        associate_trunk_interface_body(
            association_id="trunk-assoc-0d1e2f3a4b5c69788",
            branch_eni_id=BRANCH,
            trunk_eni_id=TRUNK,
            vlan_id=7,
            client_token="assoc-token",
        ),
    )

    association = await harness.adapter.associate_trunk_interface(
        branch_eni_id=BRANCH, trunk_eni_id=TRUNK, vlan_id=7, client_token="assoc-token"
    )

    assert association == TrunkAssociation(
        association_id="trunk-assoc-0d1e2f3a4b5c69788", branch_eni_id=BRANCH, trunk_eni_id=TRUNK, vlan_id=7
    )
    assert harness.faults.attempts("AssociateTrunkInterface") == 2
    request = harness.faults.requests("AssociateTrunkInterface")[-1]
    assert request["BranchInterfaceId"] == BRANCH
    assert request["TrunkInterfaceId"] == TRUNK
    assert request["VlanId"] == "7"
    assert request["ClientToken"] == "assoc-token"


async def test_disassociate_trunk_interface_sends_the_association_and_a_token(harness: Harness) -> None:
    harness.faults.answer("DisassociateTrunkInterface", disassociate_trunk_interface_body(client_token="x"))

    await harness.adapter.disassociate_trunk_interface("trunk-assoc-0d1e2f3a4b5c69788")

    (request,) = harness.faults.requests("DisassociateTrunkInterface")
    assert request["AssociationId"] == "trunk-assoc-0d1e2f3a4b5c69788"
    assert request["ClientToken"]  # botocore's idempotency token
    assert harness.counter.outcome("DisassociateTrunkInterface", "ok") == 1


async def test_describe_trunk_associations_follows_pages(harness: Harness) -> None:
    first = [
        {
            "association_id": f"trunk-assoc-{n:017x}",
            "branch_eni_id": f"eni-{n:017x}",
            "trunk_eni_id": TRUNK,
            "vlan_id": n,
        }
        for n in (1, 2)
    ]
    second = [
        {"association_id": "trunk-assoc-3", "branch_eni_id": BRANCH, "trunk_eni_id": TRUNK, "vlan_id": 120}
    ]
    harness.faults.answer(
        "DescribeTrunkInterfaceAssociations",
        describe_trunk_interface_associations_body(first, next_token="page-2"),
        times=1,
    )
    harness.faults.answer(
        "DescribeTrunkInterfaceAssociations", describe_trunk_interface_associations_body(second), times=1
    )

    associations = await harness.adapter.describe_trunk_associations(TRUNK)

    assert [(a.association_id, a.branch_eni_id, a.trunk_eni_id, a.vlan_id) for a in associations] == [
        (a["association_id"], a["branch_eni_id"], a["trunk_eni_id"], a["vlan_id"]) for a in first + second
    ]
    page_1, page_2 = harness.faults.requests("DescribeTrunkInterfaceAssociations")
    for request in (page_1, page_2):
        assert request["Filter.1.Name"] == TRUNK_ID_FILTER
        assert request["Filter.1.Value.1"] == TRUNK
    assert "NextToken" not in page_1
    assert page_2["NextToken"] == "page-2"
    assert harness.counter.outcome("DescribeTrunkInterfaceAssociations", "ok") == 2


async def test_create_network_interface_permission(harness: Harness) -> None:
    harness.faults.answer(
        "CreateNetworkInterfacePermission",
        create_network_interface_permission_body(eni_id=TRUNK, aws_account_id="123456789012"),
    )

    await harness.adapter.create_network_interface_permission(TRUNK, aws_account_id="123456789012")

    (request,) = harness.faults.requests("CreateNetworkInterfacePermission")
    assert request["NetworkInterfaceId"] == TRUNK
    assert request["AwsAccountId"] == "123456789012"
    assert request["Permission"] == "INSTANCE-ATTACH"


async def test_assign_prefixes_returns_the_prefixes_ec2_assigned(harness: Harness) -> None:
    eni_id = await _create(harness)
    harness.faults.answer(
        "AssignPrivateIpAddresses",
        assign_private_ip_addresses_body(eni_id=eni_id, prefixes=["10.1.0.32/28", "10.1.0.48/28"]),
    )

    prefixes = await harness.adapter.assign_prefixes(eni_id, count=2)

    assert prefixes == ["10.1.0.32/28", "10.1.0.48/28"]
    (request,) = harness.faults.requests("AssignPrivateIpAddresses")
    assert request["Ipv4PrefixCount"] == "2"
    assert "SecondaryPrivateIpAddressCount" not in request


async def test_assign_private_ips_returns_only_what_ec2_lists_as_assigned(harness: Harness) -> None:
    eni_id = await _create(harness)
    harness.faults.answer(
        "AssignPrivateIpAddresses",
        assign_private_ip_addresses_body(eni_id=eni_id, ips=["10.1.0.77", "10.1.0.78"]),
    )

    assert await harness.adapter.assign_private_ips(eni_id, count=2) == ["10.1.0.77", "10.1.0.78"]
