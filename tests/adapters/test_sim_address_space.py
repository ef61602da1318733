"""The subnet address allocator: EC2's reserved addresses, aligned /28 prefixes, fragmentation."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.adapters.sim_vpc.address_space import (
    BLOCK_SIZE,
    AddressPlacement,
    NoFreeAddresses,
    NoFreePrefixes,
    SubnetAddressSpace,
    format_ipv4,
    format_prefix,
    parse_ipv4,
    parse_prefix,
)

PLACEMENTS = list(AddressPlacement)


def test_ec2_reserves_the_first_four_and_the_last_address() -> None:
    space = SubnetAddressSpace("10.0.1.0/24")
    assert space.free_addresses == 256 - 5
    for reserved in ("10.0.1.0", "10.0.1.1", "10.0.1.2", "10.0.1.3", "10.0.1.255"):
        assert not space.is_free(parse_ipv4(reserved))
    assert space.is_free(parse_ipv4("10.0.1.4"))
    assert space.is_free(parse_ipv4("10.0.1.254"))
    # The first and the last /28 hold reserved addresses, so only 14 of the 16 blocks are whole.
    assert space.free_aligned_prefixes == 14


def test_a_28_subnet_has_eleven_addresses_and_no_prefix() -> None:
    space = SubnetAddressSpace("10.0.0.16/28")
    assert space.free_addresses == 11
    assert space.free_aligned_prefixes == 0
    with pytest.raises(NoFreePrefixes):
        space.allocate_prefixes(1)


@pytest.mark.parametrize("cidr", ["10.0.0.0/15", "10.0.0.0/29", "10.0.0.1/24"])
def test_rejects_cidrs_ec2_would_not_accept(cidr: str) -> None:
    with pytest.raises(ValueError):
        SubnetAddressSpace(cidr)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_prefixes_are_aligned_distinct_and_never_touch_reserved_blocks(placement: AddressPlacement) -> None:
    space = SubnetAddressSpace("10.0.2.0/24", placement=placement, seed=3)
    starts = space.allocate_prefixes(14)
    network = ipaddress.IPv4Network("10.0.2.0/24")
    assert len(set(starts)) == 14
    for start in starts:
        prefix = ipaddress.IPv4Network(format_prefix(start), strict=True)  # strict: aligned
        assert prefix.subnet_of(network)
        assert format_prefix(start) not in ("10.0.2.0/28", "10.0.2.240/28")
    assert space.free_aligned_prefixes == 0
    assert space.free_addresses == 251 - 14 * BLOCK_SIZE
    with pytest.raises(NoFreePrefixes):
        space.allocate_prefixes(1)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_every_usable_address_is_handed_out_once_then_exhaustion(placement: AddressPlacement) -> None:
    space = SubnetAddressSpace("10.0.3.0/26", placement=placement, seed=1)
    addresses = space.allocate_addresses(space.free_addresses)
    assert len(addresses) == 64 - 5
    assert {format_ipv4(a) for a in addresses} == {
        str(ip) for ip in list(ipaddress.IPv4Network("10.0.3.0/26"))[4:63]
    }
    assert space.free_addresses == 0
    with pytest.raises(NoFreeAddresses):
        space.allocate_addresses(1)


def test_an_allocation_that_cannot_be_met_takes_nothing() -> None:
    space = SubnetAddressSpace("10.0.0.16/28")
    with pytest.raises(NoFreeAddresses):
        space.allocate_addresses(12)
    assert space.free_addresses == 11


def test_packed_placement_fills_partly_used_blocks_before_breaking_whole_ones() -> None:
    space = SubnetAddressSpace("10.0.4.0/24", placement=AddressPlacement.PACKED)
    first = space.allocate_addresses(12)  # block 0 has exactly 12 usable addresses
    assert [format_ipv4(a) for a in first[:2]] == ["10.0.4.4", "10.0.4.5"]
    assert space.free_aligned_prefixes == 14
    # The last block is partly used too (broadcast reserved): its 15 addresses go before any whole block.
    last_block = space.allocate_addresses(15)
    assert [format_ipv4(a) for a in (last_block[0], last_block[-1])] == ["10.0.4.240", "10.0.4.254"]
    assert space.free_aligned_prefixes == 14
    assert format_ipv4(space.allocate_addresses(1)[0]) == "10.0.4.16"
    assert space.free_aligned_prefixes == 13
    # A released address in a partly used block is reused before another whole block is broken.
    space.release_address(parse_ipv4("10.0.4.7"))
    assert format_ipv4(space.allocate_addresses(1)[0]) == "10.0.4.7"
    assert space.free_aligned_prefixes == 13


def test_scatter_placement_breaks_blocks_the_way_ec2_does() -> None:
    space = SubnetAddressSpace("10.1.0.0/20", placement=AddressPlacement.SCATTER, seed=7)
    space.allocate_addresses(64)
    # 64 addresses spread over 256 blocks: far more than 4 blocks are no longer whole.
    assert space.free_aligned_prefixes < 254 - 20


def test_same_seed_same_choices_other_seed_other_choices() -> None:
    def draw(seed: int) -> list[int]:
        space = SubnetAddressSpace("10.2.0.0/22", seed=seed)
        return space.allocate_addresses(20) + space.allocate_prefixes(5)

    assert draw(11) == draw(11)
    assert draw(11) != draw(12)


def test_fragment_leaves_free_addresses_but_no_aligned_prefix() -> None:
    space = SubnetAddressSpace("10.3.0.0/22")
    taken = space.fragment(keep_free_per_block=4, seed=5)
    assert space.free_aligned_prefixes == 0
    assert space.free_addresses == 64 * 4  # 64 blocks, each left with 4 free (reserved ones included)
    assert len(taken) == 1019 - 64 * 4
    assert len(space.occupied_by_others) == len(taken)
    with pytest.raises(NoFreePrefixes):
        space.allocate_prefixes(1)
    assert len(space.allocate_addresses(10)) == 10
    assert taken == SubnetAddressSpace("10.3.0.0/22").fragment(keep_free_per_block=4, seed=5)


def test_vacating_what_fragment_took_restores_the_prefixes() -> None:
    space = SubnetAddressSpace("10.3.0.0/24")
    taken = space.fragment(keep_free_per_block=15, seed=1)
    assert space.free_aligned_prefixes == 0
    space.vacate(taken)
    assert space.free_aligned_prefixes == 14
    assert space.free_addresses == 251


def test_occupy_refuses_addresses_that_are_not_free() -> None:
    space = SubnetAddressSpace("10.3.0.0/24")
    with pytest.raises(ValueError):
        space.occupy([parse_ipv4("10.3.0.1")])  # reserved
    space.occupy([parse_ipv4("10.3.0.20")])
    with pytest.raises(ValueError):
        space.occupy([parse_ipv4("10.3.0.20")])
    with pytest.raises(ValueError):
        space.vacate([parse_ipv4("10.3.0.21")])  # never occupied
    assert space.free_aligned_prefixes == 13


def test_release_guards() -> None:
    space = SubnetAddressSpace("10.4.0.0/24", placement=AddressPlacement.PACKED)
    [address] = space.allocate_addresses(1)
    [start] = space.allocate_prefixes(1)
    space.release_address(address)
    with pytest.raises(ValueError):
        space.release_address(address)  # double free
    with pytest.raises(ValueError):
        space.release_address(parse_ipv4("10.4.0.0"))  # reserved
    with pytest.raises(ValueError):
        space.release_address(parse_ipv4("10.5.0.9"))  # outside
    with pytest.raises(ValueError):
        space.release_prefix(start + 1)  # not aligned
    space.release_prefix(start)
    with pytest.raises(ValueError):
        space.release_prefix(start)  # not allocated as a prefix any more
    assert space.free_addresses == 251
    assert space.free_aligned_prefixes == 14


def test_prefix_text_round_trip() -> None:
    assert format_prefix(parse_prefix("10.0.0.48/28")) == "10.0.0.48/28"
    with pytest.raises(ValueError):
        parse_prefix("10.0.0.49/28")
    with pytest.raises(ValueError):
        parse_prefix("10.0.0.48/27")


_operation = st.one_of(
    st.tuples(st.just("ip"), st.integers(1, 5)),
    st.tuples(st.just("prefix"), st.integers(1, 2)),
    st.tuples(st.just("release"), st.integers(0, 1000)),
)


@settings(max_examples=60, deadline=None)
@given(
    placement=st.sampled_from(PLACEMENTS),
    seed=st.integers(0, 1000),
    operations=st.lists(_operation, max_size=60),
)
def test_free_counts_always_match_a_reference_model(
    placement: AddressPlacement, seed: int, operations: list[tuple[str, int]]
) -> None:
    cidr = "10.9.0.0/25"
    space = SubnetAddressSpace(cidr, placement=placement, seed=seed)
    base = parse_ipv4("10.9.0.0")
    free = {base + offset for offset in range(4, 127)}
    held_ips: list[int] = []
    held_prefixes: list[int] = []
    for kind, amount in operations:
        if kind == "ip":
            try:
                got = space.allocate_addresses(amount)
            except NoFreeAddresses:
                assert len(free) < amount
                continue
            assert set(got) <= free and len(set(got)) == amount
            free -= set(got)
            held_ips += got
        elif kind == "prefix":
            try:
                got = space.allocate_prefixes(amount)
            except NoFreePrefixes:
                continue
            for start in got:
                block = set(range(start, start + BLOCK_SIZE))
                assert start % BLOCK_SIZE == 0 and block <= free
                free -= block
            held_prefixes += got
        elif held_ips or held_prefixes:
            pool: list[int] = held_ips + held_prefixes
            chosen = pool[amount % len(pool)]
            if chosen in held_ips:
                held_ips.remove(chosen)
                space.release_address(chosen)
                free.add(chosen)
            else:
                held_prefixes.remove(chosen)
                space.release_prefix(chosen)
                free |= set(range(chosen, chosen + BLOCK_SIZE))
        whole_blocks = sum(
            1 for b in range(8) if set(range(base + b * BLOCK_SIZE, base + (b + 1) * BLOCK_SIZE)) <= free
        )
        assert space.free_addresses == len(free)
        assert space.free_aligned_prefixes == whole_blocks
