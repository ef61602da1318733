"""The behaviour both EC2 implementations share (see conftest: each test runs on sim and on boto/moto)."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from controller.core.errors import NotFoundError
from controller.ports.ec2 import InterfaceType, NetworkInterface
from tests.contract.conftest import Topology

_tokens = itertools.count()


async def create(ec2: Topology, *, tags: dict[str, str], secondary_ips: int = 0) -> NetworkInterface:
    return await ec2.port.create_network_interface(
        subnet_id=ec2.subnet_id,
        security_group_ids=[ec2.sg_ids[0]],
        tags=tags,
        client_token=f"contract-{next(_tokens)}",
        secondary_ip_count=secondary_ips,
    )


async def describe(ec2: Topology, eni_id: str) -> NetworkInterface:
    [eni] = await ec2.port.describe_network_interfaces(eni_ids=[eni_id])
    return eni


def in_subnet(ec2: Topology, ip: str) -> bool:
    return ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(ec2.subnet_cidr)


async def test_create_with_tags_then_find_by_tag_filter(ec2: Topology) -> None:
    mine = await create(ec2, tags={"netalloc.dev/owner": "node-a", "netalloc.dev/role": "pod-ips"})
    other = await create(ec2, tags={"netalloc.dev/owner": "node-b", "netalloc.dev/role": "pod-ips"})
    assert mine.eni_id.startswith("eni-")
    assert mine.subnet_id == ec2.subnet_id
    assert mine.interface_type is InterfaceType.INTERFACE
    assert mine.status == "available"
    assert mine.attachment is None
    assert in_subnet(ec2, mine.private_ip)
    assert mine.security_group_ids == (ec2.sg_ids[0],)
    assert mine.tags.items() >= {"netalloc.dev/owner": "node-a"}.items()

    found = await ec2.port.describe_network_interfaces(tags={"netalloc.dev/owner": "node-a"})
    assert [e.eni_id for e in found] == [mine.eni_id]
    both = await ec2.port.describe_network_interfaces(tags={"netalloc.dev/role": "pod-ips"})
    assert {e.eni_id for e in both} == {mine.eni_id, other.eni_id}
    none = await ec2.port.describe_network_interfaces(
        tags={"netalloc.dev/owner": "node-a", "netalloc.dev/role": "trunk"}
    )
    assert none == []

    await ec2.port.create_tags(other.eni_id, tags={"netalloc.dev/owner": "node-a"})
    found = await ec2.port.describe_network_interfaces(tags={"netalloc.dev/owner": "node-a"})
    assert {e.eni_id for e in found} == {mine.eni_id, other.eni_id}


async def test_attach_then_detach(ec2: Topology) -> None:
    eni = await create(ec2, tags={"t": "attach"})
    attachment_id = await ec2.port.attach_network_interface(
        eni.eni_id, instance_id=ec2.instance_id, device_index=1
    )
    attached = await describe(ec2, eni.eni_id)
    assert attached.status == "in-use"
    assert attached.attachment is not None
    assert attached.attachment.attachment_id == attachment_id
    assert attached.attachment.instance_id == ec2.instance_id
    assert attached.attachment.device_index == 1

    await ec2.port.detach_network_interface(attachment_id)
    detached = await describe(ec2, eni.eni_id)
    assert detached.status == "available"
    assert detached.attachment is None


async def test_assign_then_unassign_secondary_ips(ec2: Topology) -> None:
    eni = await create(ec2, tags={"t": "ips"})
    assigned = await ec2.port.assign_private_ips(eni.eni_id, count=3)
    assert len(assigned) == len(set(assigned)) == 3
    assert all(in_subnet(ec2, ip) for ip in assigned)
    assert eni.private_ip not in assigned
    assert set((await describe(ec2, eni.eni_id)).secondary_ips) == set(assigned)

    await ec2.port.unassign_private_ips(eni.eni_id, ips=assigned[:2])
    after = await describe(ec2, eni.eni_id)
    assert after.secondary_ips == (assigned[2],)
    assert after.private_ip == eni.private_ip


async def test_modify_security_groups(ec2: Topology) -> None:
    eni = await create(ec2, tags={"t": "groups"})
    await ec2.port.modify_security_groups(eni.eni_id, security_group_ids=[ec2.sg_ids[1]])
    assert (await describe(ec2, eni.eni_id)).security_group_ids == (ec2.sg_ids[1],)
    await ec2.port.modify_security_groups(eni.eni_id, security_group_ids=list(ec2.sg_ids))
    assert set((await describe(ec2, eni.eni_id)).security_group_ids) == set(ec2.sg_ids)


async def test_delete_then_not_found(ec2: Topology) -> None:
    eni = await create(ec2, tags={"t": "delete"})
    await ec2.port.delete_network_interface(eni.eni_id)
    assert await ec2.port.describe_network_interfaces(tags={"t": "delete"}) == []
    with pytest.raises(NotFoundError) as again:
        await ec2.port.delete_network_interface(eni.eni_id)
    assert again.value.code == "InvalidNetworkInterfaceID.NotFound"
    assert again.value.action == "DeleteNetworkInterface"
    with pytest.raises(NotFoundError):
        await ec2.port.describe_network_interfaces(eni_ids=[eni.eni_id])


async def test_describe_instance(ec2: Topology) -> None:
    instance = await ec2.port.describe_instance(ec2.instance_id)
    assert instance.instance_id == ec2.instance_id
    assert instance.instance_type == ec2.instance_type
    assert instance.subnet_id == ec2.subnet_id
    assert instance.availability_zone == ec2.availability_zone
    assert instance.security_group_ids == (ec2.sg_ids[0],)
    primary = await describe(ec2, instance.primary_eni_id)
    assert primary.attachment is not None
    assert primary.attachment.instance_id == ec2.instance_id
    assert primary.attachment.device_index == 0
    assert in_subnet(ec2, primary.private_ip)


async def test_describe_instance_types(ec2: Topology) -> None:
    [info] = await ec2.port.describe_instance_types([ec2.instance_type])
    assert info.instance_type == "m5.large"
    assert (info.max_enis, info.ipv4_per_eni, info.vcpus, info.nitro) == (3, 10, 2, True)


async def test_describe_subnet_counts_the_addresses_enis_take(ec2: Topology) -> None:
    before = await ec2.port.describe_subnet(ec2.subnet_id)
    assert before.subnet_id == ec2.subnet_id
    assert before.cidr_block == ec2.subnet_cidr
    assert before.availability_zone == ec2.availability_zone
    assert 0 < before.available_ip_count <= ipaddress.IPv4Network(ec2.subnet_cidr).num_addresses - 5
    eni = await create(ec2, tags={"t": "subnet"}, secondary_ips=2)
    assert (await ec2.port.describe_subnet(ec2.subnet_id)).available_ip_count == before.available_ip_count - 3
    await ec2.port.delete_network_interface(eni.eni_id)
    assert (await ec2.port.describe_subnet(ec2.subnet_id)).available_ip_count == before.available_ip_count
