"""How fragmented a subnet is: free addresses against free aligned /28 blocks. Pure.

EC2 shows no fragmentation: DescribeSubnets counts free addresses, and a prefix delegation then
fails with InsufficientCidrBlocks although hundreds are free, because no aligned /28 is whole (field
notes §1). This computes what EC2 would say, from what EC2 does say: every address its ENIs hold
(primary, secondary, /28 prefixes, from DescribeNetworkInterfaces by subnet), the subnet's CIDR
reservations, and the 5 addresses AWS reserves in every subnet (the first four and the last).

- `explicit` reservations keep their range from EC2's automatic assignment: neither free addresses
  nor free blocks.
- `prefix` reservations keep their range for /28 prefixes: their whole blocks count as free blocks,
  not as free single addresses. Such a reservation is the fix the VPC CNI's maintainers give.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

from controller.ports.ec2 import NetworkInterface, SubnetCidrReservation

BLOCK = 16
RESERVED_AT_START = 4
RESERVED_AT_END = 1


class SubnetReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    subnet_id: str
    cidr: str
    free_addresses: int = Field(ge=0, description="single addresses EC2 can still assign")
    free_prefix_blocks: int = Field(ge=0, description="aligned /28 blocks with all 16 addresses free")
    prefix_reserved_blocks: int = Field(ge=0, description="free blocks inside prefix reservations")
    threshold: int = Field(ge=1)

    @property
    def blocks_the_addresses_would_hold(self) -> int:
        return self.free_addresses // BLOCK

    @property
    def fragmented(self) -> bool:
        """Fewer free /28 blocks than the threshold, while the free addresses would hold that many."""
        return self.free_prefix_blocks < self.threshold <= self.blocks_the_addresses_would_hold

    @property
    def summary(self) -> str:
        return (
            f"subnet {self.subnet_id} ({self.cidr}) has {self.free_addresses} free addresses, enough for "
            f"{self.blocks_the_addresses_would_hold} /28 prefixes, and {self.free_prefix_blocks} free "
            f"aligned /28 blocks"
        )

    @property
    def advice(self) -> str:
        if self.fragmented:
            return (
                f"{self.summary}: add a prefix CIDR reservation (aws ec2 create-subnet-cidr-reservation "
                f"--subnet-id {self.subnet_id} --reservation-type prefix --cidr <a free aligned range>) "
                "or another subnet; with PREFIX_FALLBACK_TO_SECONDARY_IP pods get secondary IPs meanwhile"
            )
        if self.free_prefix_blocks == 0 and self.free_addresses < BLOCK:
            return f"{self.summary}: the subnet is full; add a subnet (or a larger one) to the node group"
        return f"{self.summary}: prefixes can still be delegated"


def subnet_report(
    *,
    subnet_id: str,
    cidr: str,
    interfaces: Iterable[NetworkInterface],
    reservations: Iterable[SubnetCidrReservation] = (),
    threshold: int = 2,
) -> SubnetReport:
    network = ipaddress.IPv4Network(cidr, strict=True)
    base, size = int(network.network_address), network.num_addresses
    used = bytearray(size)  # 1: taken; 2: kept for prefixes (free for blocks, not for singles)
    for offset in (*range(RESERVED_AT_START), *range(size - RESERVED_AT_END, size)):
        used[offset] = 1

    def mark(first: int, count: int, value: int) -> None:
        for offset in range(max(0, first - base), min(size, first - base + count)):
            if used[offset] != 1:
                used[offset] = value

    for reservation in reservations:
        reserved = ipaddress.IPv4Network(reservation.cidr, strict=False)
        kind = 2 if reservation.reservation_type == "prefix" else 1
        mark(int(reserved.network_address), reserved.num_addresses, kind)
    for eni in interfaces:
        for ip in (eni.private_ip, *eni.secondary_ips):
            if ip:
                offset = int(ipaddress.IPv4Address(ip)) - base
                if 0 <= offset < size:
                    used[offset] = 1
        for prefix in eni.prefixes:
            block = ipaddress.IPv4Network(prefix, strict=False)
            for offset in range(int(block.network_address) - base, int(block.network_address) - base + BLOCK):
                if 0 <= offset < size:
                    used[offset] = 1
    free_blocks = 0
    reserved_blocks = 0
    for start in range(0, size - size % BLOCK, BLOCK):
        cells = used[start : start + BLOCK]
        if 1 not in cells:
            free_blocks += 1
            reserved_blocks += 2 in cells
    return SubnetReport(
        subnet_id=subnet_id,
        cidr=str(network),
        free_addresses=used.count(0),
        free_prefix_blocks=free_blocks,
        prefix_reserved_blocks=reserved_blocks,
        threshold=threshold,
    )
