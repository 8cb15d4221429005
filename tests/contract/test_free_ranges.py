"""The free ranges' contract, and the allocator's properties, on every implementation: the
in-memory fake the unit tests use and the rows (FreeRangeRows) production uses."""

from __future__ import annotations

import itertools

import netaddr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from driver.domain import addresses as allocator
from driver.domain.addresses import FreeRanges, Range
from tests.contract.conftest import SUBNET

# one fixture serves every example (each makes its own subnet): fresh state per example
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
BASE = SUBNET.first


def listed(free_ranges: FreeRanges) -> list[Range]:
    """Every free range, in order, read through the port alone."""
    found: list[Range] = []
    at = 0
    while (free := free_ranges.first_ending_at_or_after(at)) is not None:
        found.append(free)
        at = free[1] + 1
    return found


def addresses(ranges: list[Range]) -> set[int]:
    return {a for first, last in ranges for a in range(first, last + 1)}


def test_the_lookups_find_a_range_by_its_ends_and_by_what_it_contains(fresh_free_ranges):
    with fresh_free_ranges((BASE + 2, BASE + 4), (BASE + 8, BASE + 8)) as free_ranges:
        assert free_ranges.first_ending_at_or_after(BASE + 5) == (BASE + 8, BASE + 8)
        assert free_ranges.first_ending_at_or_after(BASE + 9) is None
        assert free_ranges.containing(BASE + 3) == (BASE + 2, BASE + 4)
        assert free_ranges.containing(BASE + 5) is None
        assert free_ranges.ending_at(BASE + 4) == (BASE + 2, BASE + 4)
        assert free_ranges.ending_at(BASE + 3) is None
        assert free_ranges.starting_at(BASE + 8) == (BASE + 8, BASE + 8)
        assert free_ranges.starting_at(BASE + 3) is None
        assert free_ranges.ending_at(-1) is None
        assert free_ranges.starting_at(1 << 128) is None


def test_replace_and_remove_change_only_the_range_named(fresh_free_ranges):
    with fresh_free_ranges((BASE + 2, BASE + 4), (BASE + 8, BASE + 9)) as free_ranges:
        free_ranges.replace((BASE + 2, BASE + 4), (BASE + 3, BASE + 4))
        free_ranges.remove((BASE + 8, BASE + 9))
        free_ranges.add((BASE + 20, BASE + 30))
        assert listed(free_ranges) == [(BASE + 3, BASE + 4), (BASE + 20, BASE + 30)]


@PROPERTY
@given(
    st.lists(
        st.tuples(st.sampled_from(["dyn", "static", "release"]), st.integers(0, 15)), max_size=40
    )
)
def test_the_free_ranges_always_agree_with_a_naive_set_of_free_addresses(fresh_free_ranges, steps):
    s = allocator.Subnet(netaddr.IPNetwork("192.0.2.0/28"))
    with fresh_free_ranges((s.first + 1, s.last - 1)) as free_ranges:
        free = set(range(s.first + 1, s.last))
        for op, offset in steps:
            address = s.first + offset
            if op == "dyn":
                got = allocator.take_lowest(free_ranges, s.first, s.last)
                assert got == (min(free) if free else None)
                free.discard(got)
            elif op == "static":
                assert allocator.take(free_ranges, address) == (address in free)
                free.discard(address)
            elif address not in free and s.reserved(address) is None:
                allocator.give_back(free_ranges, address)
                free.add(address)
            ranges = listed(free_ranges)
            assert addresses(ranges) == free
            # disjoint and never touching: the free ranges stay canonical
            assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(ranges))


@PROPERTY
@given(
    free=st.sets(st.integers(0, 40), max_size=30), first=st.integers(0, 40), span=st.integers(0, 10)
)
def test_taking_a_range_takes_exactly_its_free_addresses_and_giving_the_taken_back_restores_them(
    fresh_free_ranges, free, first, span
):
    free = {BASE + a for a in free}
    first, last = BASE + first, BASE + first + span
    everything = set(range(BASE, BASE + 41))
    start = allocator.gaps((BASE, BASE + 40), allocator.merge((a, a) for a in everything - free))
    with fresh_free_ranges(*start) as free_ranges:
        assert addresses(listed(free_ranges)) == free
        allocator.take_range(free_ranges, first, last)
        assert addresses(listed(free_ranges)) == free - set(range(first, last + 1))
        for gap in allocator.merge((a, a) for a in free & set(range(first, last + 1))):
            allocator.give_back_range(free_ranges, *gap)
        ranges = listed(free_ranges)
        assert addresses(ranges) == free
        assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(ranges))
