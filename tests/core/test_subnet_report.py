"""The fragmentation report agrees with the simulated VPC's own address space, and reads reservations."""

from __future__ import annotations

from controller.adapters.sim_vpc import LatencyConfig
from controller.clock import ManualClock
from controller.core.subnet_report import subnet_report
from controller.ports.ec2 import InterfaceType, NetworkInterface, SubnetCidrReservation
from controller.sim_fleet import SimFleet


def eni(ip: str, *, secondary: tuple[str, ...] = (), prefixes: tuple[str, ...] = ()) -> NetworkInterface:
    return NetworkInterface(
        eni_id="eni-1",
        subnet_id="subnet-1",
        interface_type=InterfaceType.INTERFACE,
        status="in-use",
        private_ip=ip,
        secondary_ips=secondary,
        prefixes=prefixes,
    )


def test_an_empty_slash_24_has_251_addresses_and_15_whole_blocks() -> None:
    report = subnet_report(subnet_id="subnet-1", cidr="10.0.0.0/24", interfaces=[])
    assert report.free_addresses == 256 - 5
    assert report.free_prefix_blocks == 14  # the first and the last block hold AWS's reserved addresses
    assert not report.fragmented


def test_one_address_per_block_leaves_no_block_and_is_fragmented() -> None:
    taken = tuple(f"10.0.0.{b * 16 + 7}" for b in range(16))
    report = subnet_report(
        subnet_id="subnet-1", cidr="10.0.0.0/24", interfaces=[eni(taken[0], secondary=taken[1:])]
    )
    assert report.free_prefix_blocks == 0
    assert report.free_addresses == 256 - 5 - 16
    assert report.fragmented
    assert "create-subnet-cidr-reservation" in report.advice and "subnet-1" in report.advice


def test_prefixes_and_reservations_count_as_the_service_counts_them() -> None:
    report = subnet_report(
        subnet_id="subnet-1",
        cidr="10.0.0.0/24",
        interfaces=[eni("10.0.0.4", prefixes=("10.0.0.16/28",))],
        reservations=[
            SubnetCidrReservation(cidr="10.0.0.32/27", reservation_type="prefix"),
            SubnetCidrReservation(cidr="10.0.0.64/28", reservation_type="explicit"),
        ],
    )
    assert report.free_prefix_blocks == 14 - 1 - 1  # the delegated prefix and the explicit range
    assert report.prefix_reserved_blocks == 2
    assert report.free_addresses == 251 - 1 - 16 - 32 - 16


def test_the_report_from_ec2_s_answers_matches_the_simulated_address_space() -> None:
    fleet = SimFleet(clock=ManualClock(), latency=LatencyConfig.none(), subnet_cidr="10.9.0.0/22")
    subnet = fleet.subnet.subnet_id
    fleet.vpc.launch_instance("m5.large", subnet)
    fleet.vpc.fragment(subnet, keep_free_per_block=9, seed=4)
    interfaces = fleet.vpc.network_interfaces(subnet_id=subnet)
    others = sorted(fleet.vpc.subnet_usage(subnet).model_dump().items())
    import asyncio

    described = asyncio.run(fleet.vpc.describe_network_interfaces(subnet_id=subnet))
    report = subnet_report(subnet_id=subnet, cidr="10.9.0.0/22", interfaces=described)
    assert len(described) == len(interfaces) + 1  # the others' addresses, as one foreign ENI
    assert report.free_addresses == fleet.vpc.free_addresses(subnet), others
    assert report.free_prefix_blocks == fleet.vpc.free_aligned_prefixes(subnet) == 0
    assert report.fragmented
