"""The simulated VPC: limits, trunking, idempotency, EC2's token buckets, latency and faults."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from controller.adapters.ec2_observer import CallCounter
from controller.adapters.sim_vpc import (
    BRANCH_LIMIT_EXCEEDED_CODE,
    AddressPlacement,
    ApiLimitsConfig,
    LatencyConfig,
    LatencyRange,
    PrefixExhaustionStyle,
    SimulatedVpc,
)
from controller.clock import ManualClock
from controller.core.errors import Ec2Error, ErrorClass, NotFoundError, classify
from controller.core.tags import TAG_CLIENT_TOKEN
from controller.ports.ec2 import InstanceTypeInfo, InterfaceType, NetworkInterface

CATALOG = {
    "m5.large": InstanceTypeInfo(instance_type="m5.large", max_enis=3, ipv4_per_eni=10, vcpus=2, nitro=True),
    "c5.4xlarge": InstanceTypeInfo(
        instance_type="c5.4xlarge", max_enis=8, ipv4_per_eni=30, vcpus=16, nitro=True
    ),
    "t3.nano": InstanceTypeInfo(instance_type="t3.nano", max_enis=2, ipv4_per_eni=2, vcpus=2, nitro=True),
    "t2.micro": InstanceTypeInfo(instance_type="t2.micro", max_enis=2, ipv4_per_eni=2, vcpus=1, nitro=False),
}
BRANCH_LIMITS = {"m5.large": 9, "c5.4xlarge": 54}
UNLIMITED = ApiLimitsConfig(enabled=False)


@dataclass
class World:
    vpc: SimulatedVpc
    clock: ManualClock
    calls: CallCounter
    subnet_id: str
    sg_a: str
    sg_b: str
    instance_id: str


def make_world(
    *,
    seed: int = 0,
    api_limits: ApiLimitsConfig = UNLIMITED,
    latency: LatencyConfig | None = None,
    cidr: str = "10.0.0.0/20",
    instance_type: str = "m5.large",
    prefix_exhaustion: PrefixExhaustionStyle = PrefixExhaustionStyle.INSUFFICIENT_CIDR_BLOCKS,
) -> World:
    clock = ManualClock()
    calls = CallCounter()
    vpc = SimulatedVpc(
        instance_types=CATALOG,
        branch_limits=BRANCH_LIMITS,
        clock=clock,
        seed=seed,
        api_limits=api_limits,
        latency=latency if latency is not None else LatencyConfig.none(),
        prefix_exhaustion=prefix_exhaustion,
        observer=calls,
    )
    subnet = vpc.create_subnet(cidr, availability_zone="us-west-2a")
    sg_a = vpc.create_security_group("nodes")
    sg_b = vpc.create_security_group("pods")
    instance = vpc.launch_instance(instance_type, subnet.subnet_id, security_group_ids=[sg_a])
    return World(vpc, clock, calls, subnet.subnet_id, sg_a, sg_b, instance.instance_id)


@pytest.fixture
def world() -> World:
    return make_world()


async def new_eni(
    w: World,
    token: str,
    *,
    kind: InterfaceType = InterfaceType.INTERFACE,
    ips: int = 0,
    prefixes: int = 0,
    tags: dict[str, str] | None = None,
) -> NetworkInterface:
    return await w.vpc.create_network_interface(
        subnet_id=w.subnet_id,
        security_group_ids=[w.sg_a],
        interface_type=kind,
        tags=tags if tags is not None else {"role": kind.value},
        client_token=token,
        secondary_ip_count=ips,
        prefix_count=prefixes,
    )


def current(w: World, eni_id: str) -> NetworkInterface:
    eni = w.vpc.network_interface(eni_id)
    assert eni is not None
    return eni


# -- instances and ids ---------------------------------------------------------------------------


async def test_launch_creates_the_primary_eni_at_device_zero(world: World) -> None:
    instance = await world.vpc.describe_instance(world.instance_id)
    assert re.fullmatch(r"i-[0-9a-f]{17}", instance.instance_id)
    assert re.fullmatch(r"subnet-[0-9a-f]{17}", instance.subnet_id)
    assert instance.security_group_ids == (world.sg_a,)
    primary = current(world, instance.primary_eni_id)
    assert re.fullmatch(r"eni-[0-9a-f]{17}", primary.eni_id)
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", primary.mac_address)
    assert primary.status == "in-use"
    assert primary.attachment is not None
    assert primary.attachment.device_index == 0
    assert primary.attachment.instance_id == world.instance_id
    subnet = await world.vpc.describe_subnet(world.subnet_id)
    assert subnet.available_ip_count == 4096 - 5 - 1
    with pytest.raises(NotFoundError) as caught:
        await world.vpc.describe_instance("i-00000000000000000")
    assert caught.value.code == "InvalidInstanceID.NotFound"


async def test_describe_instance_types_answers_the_catalog_and_rejects_unknown_types(world: World) -> None:
    [m5] = await world.vpc.describe_instance_types(["m5.large"])
    assert (m5.max_enis, m5.ipv4_per_eni, m5.vcpus, m5.nitro) == (3, 10, 2, True)
    with pytest.raises(Ec2Error) as caught:
        await world.vpc.describe_instance_types(["m5.large", "z9.huge"])
    assert caught.value.code == "InvalidInstanceType"
    assert "z9.huge" in caught.value.message


async def test_same_seed_same_ids_macs_and_addresses() -> None:
    async def run(seed: int) -> list[tuple[str, str, str, tuple[str, ...]]]:
        w = make_world(seed=seed)
        enis = [await new_eni(w, f"t{i}", ips=2) for i in range(5)]
        return [(e.eni_id, e.mac_address, e.private_ip, e.secondary_ips) for e in enis]

    assert await run(42) == await run(42)
    assert await run(42) != await run(43)


# -- ENIs: subnets, groups, tags -----------------------------------------------------------------


async def test_create_checks_subnet_and_security_groups(world: World) -> None:
    with pytest.raises(Ec2Error) as caught:
        await world.vpc.create_network_interface(
            subnet_id="subnet-0123456789abcdef0", security_group_ids=[], tags={}, client_token="a"
        )
    assert caught.value.code == "InvalidSubnetID.NotFound"
    assert caught.value.action == "CreateNetworkInterface"
    with pytest.raises(Ec2Error) as caught:
        await world.vpc.create_network_interface(
            subnet_id=world.subnet_id, security_group_ids=["sg-0badbadbadbadbad0"], tags={}, client_token="b"
        )
    assert caught.value.code == "InvalidSecurityGroupID.NotFound"
    assert caught.value.message == "The security group 'sg-0badbadbadbadbad0' does not exist"
    assert caught.value.error_class is ErrorClass.PERMANENT
    assert world.vpc.eni_count == 1  # only the instance's primary ENI
    defaulted = await world.vpc.create_network_interface(
        subnet_id=world.subnet_id, security_group_ids=[], tags={}, client_token="c"
    )
    assert defaulted.security_group_ids == (world.vpc.default_security_group_id,)


async def test_tags_filter_and_index_follow_create_tags(world: World) -> None:
    first = await new_eni(world, "t1", tags={"owner": "node-1", "role": "pod-ips"})
    second = await new_eni(world, "t2", tags={"owner": "node-2", "role": "pod-ips"})
    assert first.tags[TAG_CLIENT_TOKEN] == "t1"
    found = await world.vpc.describe_network_interfaces(tags={"role": "pod-ips"})
    assert [e.eni_id for e in found] == [first.eni_id, second.eni_id]
    await world.vpc.create_tags(second.eni_id, tags={"owner": "node-1"})
    found = await world.vpc.describe_network_interfaces(tags={"owner": "node-1", "role": "pod-ips"})
    assert [e.eni_id for e in found] == [first.eni_id, second.eni_id]
    assert await world.vpc.describe_network_interfaces(tags={"owner": "node-2"}) == []
    by_id = await world.vpc.describe_network_interfaces(eni_ids=[second.eni_id], tags={"owner": "node-1"})
    assert [e.eni_id for e in by_id] == [second.eni_id]
    with pytest.raises(NotFoundError):
        await world.vpc.describe_network_interfaces(eni_ids=["eni-00000000000000000"])
    with pytest.raises(NotFoundError):
        await world.vpc.create_tags("eni-00000000000000000", tags={"a": "b"})


async def test_delete_needs_detach_and_gives_addresses_back(world: World) -> None:
    free_before = world.vpc.free_addresses(world.subnet_id)
    eni = await new_eni(world, "t1", ips=3)
    assert world.vpc.free_addresses(world.subnet_id) == free_before - 4
    attachment_id = await world.vpc.attach_network_interface(
        eni.eni_id, instance_id=world.instance_id, device_index=1
    )
    with pytest.raises(Ec2Error) as caught:
        await world.vpc.delete_network_interface(eni.eni_id)
    assert caught.value.code == "InvalidNetworkInterface.InUse"
    await world.vpc.detach_network_interface(attachment_id)
    assert current(world, eni.eni_id).status == "available"
    await world.vpc.delete_network_interface(eni.eni_id)
    assert world.vpc.free_addresses(world.subnet_id) == free_before
    with pytest.raises(NotFoundError) as gone:
        await world.vpc.delete_network_interface(eni.eni_id)
    assert gone.value.code == "InvalidNetworkInterfaceID.NotFound"
    assert gone.value.message == f"The networkInterface ID '{eni.eni_id}' does not exist"
    with pytest.raises(NotFoundError):
        await world.vpc.detach_network_interface(attachment_id)


async def test_the_primary_eni_cannot_be_detached(world: World) -> None:
    primary = current(world, (await world.vpc.describe_instance(world.instance_id)).primary_eni_id)
    assert primary.attachment is not None
    with pytest.raises(Ec2Error) as caught:
        await world.vpc.detach_network_interface(primary.attachment.attachment_id)
    assert caught.value.code == "OperationNotPermitted"


async def test_permissions_are_recorded(world: World) -> None:
    eni = await new_eni(world, "t1")
    await world.vpc.create_network_interface_permission(eni.eni_id, aws_account_id="999999999999")
    assert world.vpc.permissions(eni.eni_id) == ["999999999999"]
    with pytest.raises(NotFoundError):
        await world.vpc.create_network_interface_permission("eni-00000000000000000", aws_account_id="1")


async def test_unassign_refuses_addresses_the_eni_does_not_hold(world: World) -> None:
    eni = await new_eni(world, "t1", ips=2, prefixes=1)
    other = await new_eni(world, "t2", ips=1)
    with pytest.raises(Ec2Error) as caught:
        await world.vpc.unassign_private_ips(eni.eni_id, ips=[eni.secondary_ips[0], other.secondary_ips[0]])
    assert caught.value.code == "InvalidParameterValue"
    assert current(world, eni.eni_id).secondary_ips == eni.secondary_ips  # nothing was removed
    with pytest.raises(Ec2Error):
        await world.vpc.unassign_private_ips(eni.eni_id, ips=[eni.private_ip])
    with pytest.raises(Ec2Error):
        await world.vpc.unassign_prefixes(eni.eni_id, prefixes=["10.0.0.0/28"])
    await world.vpc.unassign_prefixes(eni.eni_id, prefixes=list(eni.prefixes))
    assert current(world, eni.eni_id).prefixes == ()


async def test_modify_security_groups_only_to_known_groups(world: World) -> None:
    eni = await new_eni(world, "t1")
    await world.vpc.modify_security_groups(eni.eni_id, security_group_ids=[world.sg_b, world.sg_a])
    assert current(world, eni.eni_id).security_group_ids == (world.sg_b, world.sg_a)
    with pytest.raises(Ec2Error) as caught:
        await world.vpc.modify_security_groups(eni.eni_id, security_group_ids=["sg-00000000000000000"])
    assert caught.value.code == "InvalidSecurityGroupID.NotFound"
    assert current(world, eni.eni_id).security_group_ids == (world.sg_b, world.sg_a)


async def test_terminating_an_instance_deletes_the_primary_and_detaches_the_rest(world: World) -> None:
    primary_id = (await world.vpc.describe_instance(world.instance_id)).primary_eni_id
    extra = await new_eni(world, "t1")
    await world.vpc.attach_network_interface(extra.eni_id, instance_id=world.instance_id, device_index=1)
    world.vpc.terminate_instance(world.instance_id)
    assert world.vpc.network_interface(primary_id) is None
    assert current(world, extra.eni_id).status == "available"
    assert world.vpc.network_interfaces(instance_id=world.instance_id) == []


# -- per-instance limits -------------------------------------------------------------------------


async def test_attachment_limit_and_device_index_rules(world: World) -> None:
    enis = [await new_eni(world, f"t{i}") for i in range(3)]
    await world.vpc.attach_network_interface(enis[0].eni_id, instance_id=world.instance_id, device_index=1)
    with pytest.raises(Ec2Error) as in_use:
        await world.vpc.attach_network_interface(
            enis[1].eni_id, instance_id=world.instance_id, device_index=1
        )
    assert in_use.value.code == "InvalidParameterValue"
    assert "device index '1'" in in_use.value.message
    await world.vpc.attach_network_interface(enis[1].eni_id, instance_id=world.instance_id, device_index=2)
    with pytest.raises(Ec2Error) as full:
        await world.vpc.attach_network_interface(
            enis[2].eni_id, instance_id=world.instance_id, device_index=3
        )
    assert full.value.code == "AttachmentLimitExceeded"
    assert full.value.message == "Interface count 4 exceeds the limit for m5.large"
    assert full.value.error_class is ErrorClass.CAPACITY
    with pytest.raises(Ec2Error) as twice:
        await world.vpc.attach_network_interface(
            enis[0].eni_id, instance_id=world.instance_id, device_index=2
        )
    assert twice.value.code == "InvalidNetworkInterface.InUse"
    assert len(world.vpc.network_interfaces(instance_id=world.instance_id)) == 3


async def test_ipv4_slots_count_the_primary_and_each_prefix(world: World) -> None:
    eni = await new_eni(world, "t1")
    await world.vpc.attach_network_interface(eni.eni_id, instance_id=world.instance_id, device_index=1)
    await world.vpc.assign_private_ips(eni.eni_id, count=5)
    prefixes = await world.vpc.assign_prefixes(eni.eni_id, count=4)  # 1 + 5 + 4 = 10 slots: full
    assert len(prefixes) == 4
    for action in (world.vpc.assign_private_ips, world.vpc.assign_prefixes):
        with pytest.raises(Ec2Error) as caught:
            await action(eni.eni_id, count=1)
        assert caught.value.code == "PrivateIpAddressLimitExceeded"
        assert caught.value.message == "Number of private addresses will exceed limit."
        assert caught.value.error_class is ErrorClass.CAPACITY


async def test_an_eni_with_more_addresses_than_the_type_allows_cannot_attach(world: World) -> None:
    big = await new_eni(world, "t1", ips=12)  # fine while unattached (c5.4xlarge allows 30)
    with pytest.raises(Ec2Error) as caught:
        await world.vpc.attach_network_interface(big.eni_id, instance_id=world.instance_id, device_index=1)
    assert caught.value.code == "PrivateIpAddressLimitExceeded"


async def test_prefix_delegation_needs_nitro() -> None:
    w = make_world(instance_type="t2.micro")
    eni = await new_eni(w, "t1")
    await w.vpc.attach_network_interface(eni.eni_id, instance_id=w.instance_id, device_index=1)
    with pytest.raises(Ec2Error) as caught:
        await w.vpc.assign_prefixes(eni.eni_id, count=1)
    assert caught.value.error_class is ErrorClass.PERMANENT


# -- subnet exhaustion and fragmentation ---------------------------------------------------------


async def test_a_full_subnet_answers_insufficient_free_addresses() -> None:
    w = make_world(cidr="10.0.0.16/28")  # 11 usable, 1 taken by the instance
    await new_eni(w, "t1", ips=9)
    with pytest.raises(Ec2Error) as caught:
        await new_eni(w, "t2")
    assert caught.value.code == "InsufficientFreeAddressesInSubnet"
    assert caught.value.message == (
        "The specified subnet does not have enough free addresses to satisfy the request."
    )
    assert classify(caught.value.code, caught.value.message) is ErrorClass.CAPACITY
    assert w.vpc.eni_count == 2


async def test_fragmented_subnet_has_free_addresses_but_no_prefix() -> None:
    w = make_world(cidr="10.0.0.0/24")
    taken = w.vpc.fragment(w.subnet_id, keep_free_per_block=6, seed=1)
    assert len(taken) > 0
    usage = w.vpc.subnet_usage(w.subnet_id)
    assert usage.free_addresses > 50
    assert usage.free_aligned_prefixes == 0
    assert (await w.vpc.describe_subnet(w.subnet_id)).available_ip_count == usage.free_addresses
    eni = await new_eni(w, "t1")
    with pytest.raises(Ec2Error) as caught:
        await w.vpc.assign_prefixes(eni.eni_id, count=1)
    assert caught.value.code == "InsufficientCidrBlocks"
    assert caught.value.message == (
        "The specified subnet does not have enough free cidr blocks to satisfy the request."
    )
    assert classify(caught.value.code, caught.value.message) is ErrorClass.CAPACITY
    free_before = w.vpc.free_addresses(w.subnet_id)
    with pytest.raises(Ec2Error):
        await new_eni(w, "t2", prefixes=1)
    assert w.vpc.eni_count == 2  # primary + t1; the failed create left nothing behind
    assert w.vpc.free_addresses(w.subnet_id) == free_before
    assert len(await w.vpc.assign_private_ips(eni.eni_id, count=3)) == 3


async def test_prefix_exhaustion_can_be_answered_as_invalid_parameter_value() -> None:
    w = make_world(cidr="10.0.0.0/24", prefix_exhaustion=PrefixExhaustionStyle.INVALID_PARAMETER_VALUE)
    w.vpc.fragment(w.subnet_id, keep_free_per_block=8)
    with pytest.raises(Ec2Error) as caught:
        await new_eni(w, "t1", prefixes=1)
    assert caught.value.code == "InvalidParameterValue"
    assert caught.value.message.startswith("There aren't sufficient free Ipv4 addresses or prefixes")
    assert caught.value.error_class is ErrorClass.CAPACITY


async def test_occupy_takes_exact_addresses_out_of_the_subnet() -> None:
    vpc = SimulatedVpc(
        instance_types=CATALOG,
        branch_limits=BRANCH_LIMITS,
        clock=ManualClock(),
        api_limits=UNLIMITED,
        latency=LatencyConfig.none(),
        address_placement=AddressPlacement.PACKED,
    )
    subnet = vpc.create_subnet("10.7.0.0/28")
    vpc.occupy(subnet.subnet_id, [f"10.7.0.{i}" for i in range(4, 14)])
    eni = await vpc.create_network_interface(
        subnet_id=subnet.subnet_id, security_group_ids=[], tags={}, client_token="x"
    )
    assert eni.private_ip == "10.7.0.14"
    assert vpc.free_addresses(subnet.subnet_id) == 0


# -- idempotency ----------------------------------------------------------------------------------


async def test_same_client_token_same_eni_and_no_second_create(world: World) -> None:
    first = await new_eni(world, "token-1", ips=2)
    again = await new_eni(world, "token-1", ips=2)
    assert again.eni_id == first.eni_id
    assert again.secondary_ips == first.secondary_ips
    assert world.vpc.eni_count == 2
    assert world.vpc.calls_by_action()["CreateNetworkInterface"] == 2
    with pytest.raises(Ec2Error) as caught:
        await new_eni(world, "token-1", ips=3)
    assert caught.value.code == "IdempotentParameterMismatch"
    assert caught.value.error_class is ErrorClass.PERMANENT
    await world.vpc.delete_network_interface(first.eni_id)
    replay = await new_eni(world, "token-1", ips=2)
    assert replay.eni_id == first.eni_id  # the token still names what it made
    assert world.vpc.eni_count == 1


async def test_a_lost_answer_is_recovered_with_the_same_token(world: World) -> None:
    world.vpc.inject(
        "CreateNetworkInterface",
        "InternalError",
        "An internal error has occurred.",
        http_status=500,
        after_effect=True,
    )
    with pytest.raises(Ec2Error) as caught:
        await new_eni(world, "token-2")
    assert caught.value.error_class is ErrorClass.TRANSIENT
    [made] = world.vpc.network_interfaces(tags={TAG_CLIENT_TOKEN: "token-2"})
    retried = await new_eni(world, "token-2")
    assert retried.eni_id == made.eni_id
    assert world.vpc.eni_count == 2


# -- trunk and branch -----------------------------------------------------------------------------


@dataclass
class Trunked:
    world: World
    trunk: NetworkInterface


async def trunked(instance_type: str = "m5.large") -> Trunked:
    w = make_world(instance_type=instance_type)
    trunk = await new_eni(w, "trunk", kind=InterfaceType.TRUNK)
    await w.vpc.attach_network_interface(trunk.eni_id, instance_id=w.instance_id, device_index=1)
    return Trunked(w, trunk)


async def test_branches_take_unique_vlans_up_to_the_branch_limit() -> None:
    t = await trunked()
    vpc = t.world.vpc
    branches = [await new_eni(t.world, f"b{i}", kind=InterfaceType.BRANCH) for i in range(10)]
    for vlan, branch in enumerate(branches[:9], start=1):
        association = await vpc.associate_trunk_interface(
            branch_eni_id=branch.eni_id, trunk_eni_id=t.trunk.eni_id, vlan_id=vlan, client_token=f"a{vlan}"
        )
        assert re.fullmatch(r"trunk-assoc-[0-9a-f]{17}", association.association_id)
    assert current(t.world, branches[0].eni_id).status == "in-use"
    assert len(vpc.network_interfaces(interface_type=InterfaceType.BRANCH, subnet_id=t.world.subnet_id)) == 10
    assert [e.eni_id for e in vpc.network_interfaces(tags={"role": "trunk"})] == [t.trunk.eni_id]
    with pytest.raises(Ec2Error) as full:
        await vpc.associate_trunk_interface(
            branch_eni_id=branches[9].eni_id, trunk_eni_id=t.trunk.eni_id, vlan_id=10, client_token="a10"
        )
    assert full.value.code == BRANCH_LIMIT_EXCEEDED_CODE
    assert full.value.error_class is ErrorClass.CAPACITY
    listed = await vpc.describe_trunk_associations(t.trunk.eni_id)
    assert [a.vlan_id for a in listed] == list(range(1, 10))
    # Disassociating frees the VLAN and the slot.
    await vpc.disassociate_trunk_interface(listed[2].association_id)
    await vpc.associate_trunk_interface(
        branch_eni_id=branches[9].eni_id, trunk_eni_id=t.trunk.eni_id, vlan_id=3, client_token="again"
    )
    assert [a.vlan_id for a in await vpc.describe_trunk_associations(t.trunk.eni_id)] == list(range(1, 10))


async def test_vlan_ids_are_unique_per_trunk() -> None:
    t = await trunked()
    first, second = [await new_eni(t.world, f"b{i}", kind=InterfaceType.BRANCH) for i in range(2)]
    await t.world.vpc.associate_trunk_interface(
        branch_eni_id=first.eni_id, trunk_eni_id=t.trunk.eni_id, vlan_id=7, client_token="a"
    )
    with pytest.raises(Ec2Error) as caught:
        await t.world.vpc.associate_trunk_interface(
            branch_eni_id=second.eni_id, trunk_eni_id=t.trunk.eni_id, vlan_id=7, client_token="b"
        )
    assert caught.value.code == "InvalidParameterValue"
    with pytest.raises(Ec2Error):
        await t.world.vpc.associate_trunk_interface(
            branch_eni_id=first.eni_id, trunk_eni_id=t.trunk.eni_id, vlan_id=8, client_token="c"
        )  # already associated


async def test_associate_checks_types_and_trunk_attachment() -> None:
    t = await trunked()
    vpc = t.world.vpc
    branch = await new_eni(t.world, "b", kind=InterfaceType.BRANCH)
    plain = await new_eni(t.world, "p")
    loose_trunk = await new_eni(t.world, "t2", kind=InterfaceType.TRUNK)
    with pytest.raises(Ec2Error) as not_trunk:
        await vpc.associate_trunk_interface(
            branch_eni_id=branch.eni_id, trunk_eni_id=plain.eni_id, vlan_id=1, client_token="1"
        )
    assert not_trunk.value.code == "InvalidParameterValue"
    with pytest.raises(Ec2Error) as not_branch:
        await vpc.associate_trunk_interface(
            branch_eni_id=plain.eni_id, trunk_eni_id=t.trunk.eni_id, vlan_id=1, client_token="2"
        )
    assert not_branch.value.code == "InvalidParameterValue"
    with pytest.raises(Ec2Error) as detached:
        await vpc.associate_trunk_interface(
            branch_eni_id=branch.eni_id, trunk_eni_id=loose_trunk.eni_id, vlan_id=1, client_token="3"
        )
    assert detached.value.code == "IncorrectState"
    with pytest.raises(Ec2Error):
        await vpc.attach_network_interface(branch.eni_id, instance_id=t.world.instance_id, device_index=2)
    with pytest.raises(NotFoundError):
        await vpc.associate_trunk_interface(
            branch_eni_id="eni-00000000000000000", trunk_eni_id=t.trunk.eni_id, vlan_id=1, client_token="4"
        )
    assert vpc.trunk_associations() == []


async def test_an_associated_branch_cannot_be_deleted_until_disassociated() -> None:
    t = await trunked()
    vpc = t.world.vpc
    branch = await new_eni(t.world, "b", kind=InterfaceType.BRANCH)
    association = await vpc.associate_trunk_interface(
        branch_eni_id=branch.eni_id, trunk_eni_id=t.trunk.eni_id, vlan_id=1, client_token="a"
    )
    with pytest.raises(Ec2Error) as caught:
        await vpc.delete_network_interface(branch.eni_id)
    assert caught.value.code == "InvalidNetworkInterface.InUse"
    await vpc.disassociate_trunk_interface(association.association_id)
    await vpc.delete_network_interface(branch.eni_id)
    with pytest.raises(NotFoundError):
        await vpc.disassociate_trunk_interface(association.association_id)


async def test_deleting_a_detached_trunk_frees_its_branches() -> None:
    t = await trunked()
    vpc = t.world.vpc
    branch = await new_eni(t.world, "b", kind=InterfaceType.BRANCH)
    await vpc.associate_trunk_interface(
        branch_eni_id=branch.eni_id, trunk_eni_id=t.trunk.eni_id, vlan_id=1, client_token="a"
    )
    attachment = current(t.world, t.trunk.eni_id).attachment
    assert attachment is not None
    with pytest.raises(Ec2Error) as attached:
        await vpc.delete_network_interface(t.trunk.eni_id)
    assert attached.value.code == "InvalidNetworkInterface.InUse"
    await vpc.detach_network_interface(attachment.attachment_id)
    await vpc.delete_network_interface(t.trunk.eni_id)
    assert vpc.trunk_associations() == []
    assert current(t.world, branch.eni_id).status == "available"
    await vpc.delete_network_interface(branch.eni_id)


async def test_associate_is_idempotent_per_client_token() -> None:
    t = await trunked()
    vpc = t.world.vpc
    branch = await new_eni(t.world, "b", kind=InterfaceType.BRANCH)
    first = await vpc.associate_trunk_interface(
        branch_eni_id=branch.eni_id, trunk_eni_id=t.trunk.eni_id, vlan_id=4, client_token="same"
    )
    again = await vpc.associate_trunk_interface(
        branch_eni_id=branch.eni_id, trunk_eni_id=t.trunk.eni_id, vlan_id=4, client_token="same"
    )
    assert again == first
    with pytest.raises(Ec2Error) as caught:
        await vpc.associate_trunk_interface(
            branch_eni_id=branch.eni_id, trunk_eni_id=t.trunk.eni_id, vlan_id=5, client_token="same"
        )
    assert caught.value.code == "IdempotentParameterMismatch"


@pytest.mark.parametrize("instance_type", ["t3.nano", "t2.micro"])
async def test_trunking_needs_a_type_with_a_branch_limit(instance_type: str) -> None:
    w = make_world(instance_type=instance_type)
    trunk = await new_eni(w, "trunk", kind=InterfaceType.TRUNK)
    with pytest.raises(Ec2Error) as caught:
        await w.vpc.attach_network_interface(trunk.eni_id, instance_id=w.instance_id, device_index=1)
    assert caught.value.code == "UnsupportedOperation"


# -- EC2's token buckets ----------------------------------------------------------------------------


async def test_create_bucket_holds_100_and_refills_5_per_second() -> None:
    w = make_world(api_limits=ApiLimitsConfig())
    for i in range(100):
        await new_eni(w, f"burst-{i}")
    with pytest.raises(Ec2Error) as caught:
        await new_eni(w, "burst-100")
    assert caught.value.code == "RequestLimitExceeded"
    assert caught.value.message == "Request limit exceeded."
    assert caught.value.http_status == 503
    assert caught.value.error_class is ErrorClass.THROTTLING
    w.clock.advance(1.0)
    for i in range(5):
        await new_eni(w, f"refill-{i}")
    with pytest.raises(Ec2Error):
        await new_eni(w, "refill-5")
    assert w.vpc.calls_by_action()["CreateNetworkInterface"] == 107
    assert w.vpc.throttled_by_action() == {"CreateNetworkInterface": 2}
    assert w.calls.throttled("CreateNetworkInterface") == 2
    assert w.calls.outcome("CreateNetworkInterface", "ok") == 105
    assert w.vpc.eni_count == 1 + 105
    # Each action has its own bucket: tagging still works while creates are throttled.
    await w.vpc.create_tags(w.vpc.network_interfaces()[1].eni_id, tags={"k": "v"})


async def test_attach_has_the_smaller_default_mutating_bucket() -> None:
    w = make_world(api_limits=ApiLimitsConfig(), instance_type="c5.4xlarge")
    assert w.vpc.api_tokens("AttachNetworkInterface") == 50
    assert w.vpc.api_tokens("DescribeNetworkInterfaces") == 100
    assert w.vpc.api_tokens("DescribeNetworkInterfaces", unfiltered=True) == 50


async def test_unfiltered_describe_spends_its_own_bucket() -> None:
    w = make_world(api_limits=ApiLimitsConfig())
    for _ in range(50):
        await w.vpc.describe_network_interfaces()
    with pytest.raises(Ec2Error) as caught:
        await w.vpc.describe_network_interfaces()
    assert caught.value.code == "RequestLimitExceeded"
    assert len(await w.vpc.describe_network_interfaces(tags={"role": "x"})) == 0  # filtered bucket: fine


# -- latency --------------------------------------------------------------------------------------


async def test_calls_take_their_latency_on_the_clock() -> None:
    w = make_world(latency=LatencyConfig())
    start = w.clock.now()
    await new_eni(w, "t1")
    mutating = w.clock.now() - start
    assert 0.05 <= mutating <= 0.15
    start = w.clock.now()
    await w.vpc.describe_subnet(w.subnet_id)
    assert 0.02 <= w.clock.now() - start <= 0.06
    fixed = make_world(
        latency=LatencyConfig(per_action={"CreateNetworkInterface": LatencyRange(low_s=2.0, high_s=2.0)})
    )
    start = fixed.clock.now()
    await new_eni(fixed, "t1")
    assert fixed.clock.now() - start == 2.0


# -- faults ---------------------------------------------------------------------------------------


async def test_scripted_faults_fail_the_next_calls_then_stop(world: World) -> None:
    world.vpc.inject(
        "CreateNetworkInterface",
        "InsufficientCidrBlocks",
        "The specified subnet does not have enough free cidr blocks to satisfy the request.",
        times=2,
    )
    for _ in range(2):
        with pytest.raises(Ec2Error) as caught:
            await new_eni(world, "t1", prefixes=1)
        assert caught.value.error_class is ErrorClass.CAPACITY
        assert caught.value.action == "CreateNetworkInterface"
    assert world.vpc.eni_count == 1  # failed before any effect
    assert (await new_eni(world, "t1", prefixes=1)).prefixes != ()
    assert world.calls.errors("CreateNetworkInterface") == 2
    assert world.calls.outcome("CreateNetworkInterface", "ok") == 1


async def test_injected_throttling_is_reported_as_throttled(world: World) -> None:
    world.vpc.faults.inject_throttling("AssignPrivateIpAddresses", times=1)
    eni = await new_eni(world, "t1")
    with pytest.raises(Ec2Error) as caught:
        await world.vpc.assign_private_ips(eni.eni_id, count=1)
    assert caught.value.code == "RequestLimitExceeded"
    assert caught.value.http_status == 503
    assert world.calls.throttled("AssignPrivateIpAddresses") == 1
    assert len(await world.vpc.assign_private_ips(eni.eni_id, count=1)) == 1


async def test_random_faults_are_seeded_and_limited_to_their_actions() -> None:
    async def pattern(seed: int) -> list[bool]:
        w = make_world()
        w.vpc.faults.set_random_faults(0.5, seed=seed, actions=["DescribeSubnets"])
        outcomes = []
        for _ in range(40):
            try:
                await w.vpc.describe_subnet(w.subnet_id)
                outcomes.append(True)
            except Ec2Error as error:
                assert error.error_class is ErrorClass.TRANSIENT
                outcomes.append(False)
        await w.vpc.describe_instance(w.instance_id)  # not in `actions`: never fails
        return outcomes

    first = await pattern(1)
    assert first == await pattern(1)
    assert first != await pattern(2)
    assert 5 < first.count(False) < 35
