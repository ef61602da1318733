"""One subnet's IPv4 address space, as EC2 hands it out: single addresses and aligned /28 prefixes.

The subnet is cut into aligned blocks of 16 addresses. Each block keeps a 16-bit mask of its free
addresses, and two indexes hold the blocks that are entirely free (candidates for a /28 prefix) and
the blocks that are partly free (candidates for single addresses only). Every allocation and
release is O(1) (O(log n) with lowest-first placement), so a /16 subnet with tens of thousands of
allocations costs nothing per call.

EC2 reserves the first four addresses of a subnet and the last one; they are never free, so the
first and last blocks can never become prefixes. A subnet can have many free addresses and no free
aligned /28 at all: that is fragmentation, and EC2 never reports it. `free_aligned_prefixes` does.
"""

from __future__ import annotations

import heapq
import ipaddress
import random
from collections.abc import Iterable
from enum import StrEnum
from typing import Final

BLOCK_SIZE: Final = 16  # addresses in a /28
PREFIX_LENGTH: Final = 28
FULL_BLOCK: Final = (1 << BLOCK_SIZE) - 1
RESERVED_AT_START: Final = 4  # network address, VPC router, DNS, future use
RESERVED_AT_END: Final = 1  # broadcast
MIN_SUBNET_PREFIX: Final = 16  # EC2 subnets are /16 to /28
MAX_SUBNET_PREFIX: Final = 28
_SCATTER_TRIES: Final = 4


class AddressPlacement(StrEnum):
    """Where single addresses land."""

    SCATTER = "scatter"  # EC2-like: anywhere in the subnet (seeded), so /28 blocks break up over time
    PACKED = "packed"  # lowest free address of a partly used block first; whole blocks last


class AddressSpaceExhausted(Exception):
    """Base of the two exhaustion cases; the VPC turns them into EC2's error codes."""


class NoFreeAddresses(AddressSpaceExhausted):
    """Fewer free single addresses than asked for."""


class NoFreePrefixes(AddressSpaceExhausted):
    """Fewer free, aligned, entirely free /28 blocks than asked for."""


def format_ipv4(address: int) -> str:
    return f"{address >> 24}.{(address >> 16) & 255}.{(address >> 8) & 255}.{address & 255}"


def parse_ipv4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def format_prefix(start: int) -> str:
    return f"{format_ipv4(start)}/{PREFIX_LENGTH}"


def parse_prefix(text: str) -> int:
    """The first address of an aligned /28 written as "a.b.c.d/28"; ValueError otherwise."""
    network = ipaddress.IPv4Network(text, strict=True)
    if network.prefixlen != PREFIX_LENGTH:
        raise ValueError(f"{text} is not a /{PREFIX_LENGTH}")
    return int(network.network_address)


class _BlockSet:
    """A set of block numbers with O(1) add, discard and random pick, and optionally lowest-first pick.

    The lowest-first heap is lazy: stale entries are dropped when they reach the top, and a block is
    pushed at most once while an entry for it is still in the heap, so the heap never outgrows the
    number of blocks.
    """

    __slots__ = ("_heap", "_in_heap", "_items", "_position", "_track_lowest")

    def __init__(self, *, track_lowest: bool) -> None:
        self._items: list[int] = []
        self._position: dict[int, int] = {}
        self._track_lowest = track_lowest
        self._heap: list[int] = []
        self._in_heap: set[int] = set()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, block: int) -> bool:
        return block in self._position

    def add(self, block: int) -> None:
        if block in self._position:
            return
        self._position[block] = len(self._items)
        self._items.append(block)
        if self._track_lowest and block not in self._in_heap:
            heapq.heappush(self._heap, block)
            self._in_heap.add(block)

    def discard(self, block: int) -> None:
        index = self._position.pop(block, None)
        if index is None:
            return
        last = self._items.pop()
        if last != block:
            self._items[index] = last
            self._position[last] = index

    def at(self, index: int) -> int:
        return self._items[index]

    def lowest(self) -> int:
        heap = self._heap
        while heap[0] not in self._position:
            self._in_heap.discard(heapq.heappop(heap))
        return heap[0]


def _lowest_bit(mask: int) -> int:
    return (mask & -mask).bit_length() - 1


def _nth_set_bit(mask: int, n: int) -> int:
    for _ in range(n):
        mask &= mask - 1
    return _lowest_bit(mask)


class SubnetAddressSpace:
    """Free/used state of every address of one subnet CIDR."""

    def __init__(
        self,
        cidr: str,
        *,
        placement: AddressPlacement = AddressPlacement.SCATTER,
        seed: int | str = 0,
    ) -> None:
        network = ipaddress.IPv4Network(cidr, strict=True)
        if not MIN_SUBNET_PREFIX <= network.prefixlen <= MAX_SUBNET_PREFIX:
            raise ValueError(f"EC2 subnets are /{MIN_SUBNET_PREFIX} to /{MAX_SUBNET_PREFIX}, not {cidr}")
        self.cidr = str(network)
        self.base = int(network.network_address)
        self.size = network.num_addresses
        self.placement = placement
        self._rng = random.Random(f"address-space:{self.cidr}:{seed}")
        block_count = self.size // BLOCK_SIZE
        self._masks = [FULL_BLOCK] * block_count
        packed = placement is AddressPlacement.PACKED
        self._whole = _BlockSet(track_lowest=packed)
        self._partial = _BlockSet(track_lowest=packed)
        self._reserved = frozenset(
            [*range(RESERVED_AT_START), *range(self.size - RESERVED_AT_END, self.size)]
        )
        for offset in self._reserved:
            self._masks[offset >> 4] &= ~(1 << (offset & 15))
        for block, mask in enumerate(self._masks):
            self._index(block, mask)
        self._free = self.size - len(self._reserved)
        self.usable_addresses = self._free
        self._foreign: set[int] = set()

    # -- what is free --------------------------------------------------------------------------

    @property
    def free_addresses(self) -> int:
        """Free single addresses (what DescribeSubnets calls AvailableIpAddressCount)."""
        return self._free

    @property
    def free_aligned_prefixes(self) -> int:
        """Aligned /28 blocks with all 16 addresses free: how many prefixes EC2 could still hand out."""
        return len(self._whole)

    def contains(self, address: int) -> bool:
        return 0 <= address - self.base < self.size

    def is_free(self, address: int) -> bool:
        offset = self._offset(address)
        return bool(self._masks[offset >> 4] >> (offset & 15) & 1)

    # -- allocation ----------------------------------------------------------------------------

    def allocate_addresses(self, count: int) -> list[int]:
        """`count` single addresses, all or none; NoFreeAddresses when there are too few."""
        if count > self._free:
            raise NoFreeAddresses(f"{count} addresses asked, {self._free} free in {self.cidr}")
        return [self._allocate_one() for _ in range(count)]

    def allocate_prefixes(self, count: int) -> list[int]:
        """`count` aligned /28 blocks (their first addresses), all or none; NoFreePrefixes otherwise."""
        if count > len(self._whole):
            raise NoFreePrefixes(
                f"{count} /28 prefixes asked, {len(self._whole)} aligned blocks free in {self.cidr}"
                f" ({self._free} free addresses)"
            )
        starts: list[int] = []
        for _ in range(count):
            if self.placement is AddressPlacement.PACKED:
                block = self._whole.lowest()
            else:
                block = self._whole.at(self._rng.randrange(len(self._whole)))
            self._set_mask(block, 0)
            self._free -= BLOCK_SIZE
            starts.append(self.base + block * BLOCK_SIZE)
        return starts

    def release_address(self, address: int) -> None:
        offset = self._offset(address)
        if offset in self._reserved:
            raise ValueError(f"{format_ipv4(address)} is reserved by EC2")
        block, bit = offset >> 4, 1 << (offset & 15)
        mask = self._masks[block]
        if mask & bit:
            raise ValueError(f"{format_ipv4(address)} is already free")
        self._set_mask(block, mask | bit)
        self._free += 1

    def release_prefix(self, start: int) -> None:
        offset = self._offset(start)
        if offset % BLOCK_SIZE:
            raise ValueError(f"{format_ipv4(start)} is not the start of an aligned /28")
        block = offset >> 4
        if self._masks[block] != 0:
            raise ValueError(f"{format_prefix(start)} is not allocated as a whole prefix")
        self._set_mask(block, FULL_BLOCK)
        self._free += BLOCK_SIZE

    def claim_address(self, address: int) -> None:
        """Allocate this very address (rebuilding a VPC from records); ValueError if it is not free."""
        if not self.is_free(address):
            raise ValueError(f"{format_ipv4(address)} is not free")
        self._take(self._offset(address))

    def claim_prefix(self, start: int) -> None:
        """Allocate this very aligned /28; ValueError unless all 16 addresses are free."""
        offset = self._offset(start)
        if offset % BLOCK_SIZE or self._masks[offset >> 4] != FULL_BLOCK:
            raise ValueError(f"{format_prefix(start)} is not a free aligned /28")
        self._set_mask(offset >> 4, 0)
        self._free -= BLOCK_SIZE

    # -- addresses used by others (fragmentation set-ups) --------------------------------------

    def occupy(self, addresses: Iterable[int]) -> None:
        """Mark these free addresses used by someone else (other tenants of the subnet)."""
        wanted = list(addresses)
        for address in wanted:
            if not self.is_free(address):
                raise ValueError(f"{format_ipv4(address)} is not free")
        for address in wanted:
            self._take(self._offset(address))
            self._foreign.add(address)

    def vacate(self, addresses: Iterable[int]) -> None:
        """Give back addresses taken by `occupy` or `fragment`."""
        for address in list(addresses):
            if address not in self._foreign:
                raise ValueError(f"{format_ipv4(address)} was not occupied by occupy/fragment")
            self._foreign.discard(address)
            self.release_address(address)

    @property
    def occupied_by_others(self) -> frozenset[int]:
        return frozenset(self._foreign)

    def fragment(self, *, keep_free_per_block: int, seed: int | str = 0) -> list[int]:
        """Occupy addresses so that at most `keep_free_per_block` stay free in every /28 block.

        With `keep_free_per_block` < 16 no aligned prefix is left while free addresses remain:
        the state in which EC2 answers InsufficientCidrBlocks. Deterministic for a given seed.
        Returns the addresses it occupied (in address order).
        """
        if not 0 <= keep_free_per_block <= BLOCK_SIZE:
            raise ValueError(f"keep_free_per_block must be 0..{BLOCK_SIZE}")
        rng = random.Random(f"fragment:{self.cidr}:{seed}")
        taken: list[int] = []
        for block, mask in enumerate(self._masks):
            free_bits = [bit for bit in range(BLOCK_SIZE) if mask >> bit & 1]
            excess = len(free_bits) - keep_free_per_block
            if excess <= 0:
                continue
            for bit in sorted(rng.sample(free_bits, excess)):
                taken.append(self.base + block * BLOCK_SIZE + bit)
        self.occupy(taken)
        return taken

    # -- internals -----------------------------------------------------------------------------

    def _offset(self, address: int) -> int:
        offset = address - self.base
        if not 0 <= offset < self.size:
            raise ValueError(f"{format_ipv4(address)} is outside {self.cidr}")
        return offset

    def _allocate_one(self) -> int:
        masks = self._masks
        if self.placement is AddressPlacement.PACKED:
            block = self._partial.lowest() if len(self._partial) else self._whole.lowest()
            offset = block * BLOCK_SIZE + _lowest_bit(masks[block])
        else:
            offset = self._scatter_pick()
        self._take(offset)
        return self.base + offset

    def _scatter_pick(self) -> int:
        """A free offset drawn roughly uniformly over the subnet's free addresses."""
        rng = self._rng
        masks = self._masks
        for _ in range(_SCATTER_TRIES):
            offset = rng.randrange(self.size)
            if masks[offset >> 4] >> (offset & 15) & 1:
                return offset
        partial_count = len(self._partial)
        pick = rng.randrange(partial_count + len(self._whole))
        block = self._partial.at(pick) if pick < partial_count else self._whole.at(pick - partial_count)
        mask = masks[block]
        return block * BLOCK_SIZE + _nth_set_bit(mask, rng.randrange(mask.bit_count()))

    def _take(self, offset: int) -> None:
        block = offset >> 4
        self._set_mask(block, self._masks[block] & ~(1 << (offset & 15)))
        self._free -= 1

    def _set_mask(self, block: int, mask: int) -> None:
        self._masks[block] = mask
        self._index(block, mask)

    def _index(self, block: int, mask: int) -> None:
        if mask == FULL_BLOCK:
            self._partial.discard(block)
            self._whole.add(block)
        elif mask:
            self._whole.discard(block)
            self._partial.add(block)
        else:
            self._whole.discard(block)
            self._partial.discard(block)
