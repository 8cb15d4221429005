import netaddr
import pytest

from driver.domain import addresses as allocator
from driver.domain.addresses import DefaultPool, Subnet
from driver.domain.errors import InvalidRequest
from tests.memory_ranges import MemoryFreeRanges, MemoryHeld


def subnet(cidr: str) -> Subnet:
    return Subnet(netaddr.IPNetwork(cidr))


def ip(text: str) -> int:
    return int(netaddr.IPAddress(text))


def free_ranges_for(cidr: str) -> MemoryFreeRanges:
    bounds = subnet(cidr).allocatable()
    return MemoryFreeRanges(bounds) if bounds else MemoryFreeRanges()


@pytest.mark.parametrize(
    ("cidr", "first", "last"),
    [
        ("192.0.2.0/24", "192.0.2.1", "192.0.2.254"),
        ("192.0.2.0/30", "192.0.2.1", "192.0.2.2"),
        ("192.0.2.0/31", "192.0.2.0", "192.0.2.1"),
        ("192.0.2.7/32", "192.0.2.7", "192.0.2.7"),
        ("2001:db8::/64", "2001:db8::1", "2001:db8::ffff:ffff:ffff:ffff"),
        ("2001:db8::/127", "2001:db8::1", "2001:db8::1"),
        ("2001:db8::/32", "2001:db8::1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
    ],
)
def test_a_subnet_offers_everything_but_its_reserved_addresses(cidr, first, last):
    assert subnet(cidr).allocatable() == (ip(first), ip(last))


def test_an_ipv6_slash_128_offers_nothing():
    assert subnet("2001:db8::5/128").allocatable() is None


@pytest.mark.parametrize(
    ("cidr", "address", "reason"),
    [
        ("192.0.2.0/24", "192.0.2.0", "the network address"),
        ("192.0.2.0/24", "192.0.2.255", "the broadcast address"),
        ("2001:db8::/64", "2001:db8::", "the subnet-router anycast address"),
        ("192.0.2.0/31", "192.0.2.0", None),
        ("192.0.2.0/24", "192.0.2.1", None),
    ],
)
def test_reserved_addresses_follow_the_builtin_ipam(cidr, address, reason):
    assert subnet(cidr).reserved(ip(address)) == reason


@pytest.mark.parametrize(
    "cidr", ["192.0.2.0/24", "2001:db8::/64", "2001:db8::/32", "2001:db8::/48"]
)
def test_dynamic_allocation_hands_out_the_lowest_free_address_in_any_pool_size(cidr):
    s = subnet(cidr)
    free_ranges = free_ranges_for(cidr)
    got = [allocator.take_lowest(free_ranges, s.first, s.last) for _ in range(3)]
    assert got == [s.first + 1, s.first + 2, s.first + 3]
    allocator.give_back(free_ranges, s.first + 2)
    assert allocator.take_lowest(free_ranges, s.first, s.last) == s.first + 2
    # the free set is still one hole-free range after the head
    assert len(free_ranges.ranges) == 1


def test_dynamic_allocation_stays_inside_the_sub_range():
    free_ranges = free_ranges_for("192.0.2.0/24")
    lo, hi = ip("192.0.2.128"), ip("192.0.2.129")
    assert allocator.take_lowest(free_ranges, lo, hi) == lo
    assert allocator.take_lowest(free_ranges, lo, hi) == hi
    assert allocator.take_lowest(free_ranges, lo, hi) is None
    assert allocator.take_lowest(free_ranges, ip("192.0.2.0"), ip("192.0.2.255")) == ip("192.0.2.1")


def test_a_taken_static_address_cannot_be_taken_again_until_given_back():
    free_ranges = free_ranges_for("192.0.2.0/29")
    assert allocator.take(free_ranges, ip("192.0.2.3"))
    assert not allocator.take(free_ranges, ip("192.0.2.3"))
    assert free_ranges.ranges == [
        (ip("192.0.2.1"), ip("192.0.2.2")),
        (ip("192.0.2.4"), ip("192.0.2.6")),
    ]
    allocator.give_back(free_ranges, ip("192.0.2.3"))
    assert free_ranges.ranges == [(ip("192.0.2.1"), ip("192.0.2.6"))]


def test_reserved_addresses_are_never_in_the_free_ranges():
    free_ranges = free_ranges_for("192.0.2.0/24")
    assert not allocator.take(free_ranges, ip("192.0.2.0"))
    assert not allocator.take(free_ranges, ip("192.0.2.255"))


def test_exhaustion_of_a_slash_30_and_recovery_after_a_release():
    s = subnet("192.0.2.0/30")
    free_ranges = free_ranges_for("192.0.2.0/30")
    assert allocator.take_lowest(free_ranges, s.first, s.last) == ip("192.0.2.1")
    assert allocator.take_lowest(free_ranges, s.first, s.last) == ip("192.0.2.2")
    assert allocator.take_lowest(free_ranges, s.first, s.last) is None
    allocator.give_back(free_ranges, ip("192.0.2.1"))
    assert allocator.take_lowest(free_ranges, s.first, s.last) == ip("192.0.2.1")


def test_serial_allocation_moves_on_from_the_cursor_and_wraps_round():
    s = subnet("192.0.2.0/29")
    free_ranges = free_ranges_for("192.0.2.0/29")
    lo, hi = s.first, s.last
    assert allocator.take_next(free_ranges, lo, hi, lo) == ip("192.0.2.1")
    assert allocator.take_next(free_ranges, lo, hi, ip("192.0.2.2")) == ip("192.0.2.2")
    allocator.give_back(free_ranges, ip("192.0.2.1"))
    # next-fit: the freed .1 waits until the cursor comes round again
    for address in ("192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"):
        assert allocator.take_next(free_ranges, lo, hi, ip(address)) == ip(address)
    assert allocator.take_next(free_ranges, lo, hi, ip("192.0.2.7")) == ip("192.0.2.1")
    assert allocator.take_next(free_ranges, lo, hi, ip("192.0.2.2")) is None


def test_the_default_subnet_is_the_lowest_one_that_overlaps_nothing_held():
    defaults = [DefaultPool(netaddr.IPNetwork("10.128.0.0/9"), 24)]
    held = MemoryHeld(
        (ip("10.128.0.0"), ip("10.128.0.255")), (ip("10.128.2.0"), ip("10.128.3.255"))
    )
    assert str(allocator.pick_default_subnet(defaults, 4, None, held)) == "10.128.1.0/24"
    held.held.insert(1, (ip("10.128.1.0"), ip("10.128.1.255")))
    assert str(allocator.pick_default_subnet(defaults, 4, None, held)) == "10.128.4.0/24"


def test_a_size_only_request_carves_a_subnet_of_that_size():
    defaults = [DefaultPool(netaddr.IPNetwork("fd42:1edb::/32"), 64)]
    held = MemoryHeld((ip("fd42:1edb::"), ip("fd42:1edb::ffff:ffff:ffff:ffff")))
    assert str(allocator.pick_default_subnet(defaults, 6, 56, held)) == "fd42:1edb:0:100::/56"


def test_default_pools_run_out_cleanly():
    defaults = [DefaultPool(netaddr.IPNetwork("192.0.2.0/23"), 24)]
    held = MemoryHeld((ip("192.0.2.0"), ip("192.0.3.255")))
    assert allocator.pick_default_subnet(defaults, 4, None, held) is None
    assert allocator.pick_default_subnet(defaults, 6, None, MemoryHeld()) is None


@pytest.mark.parametrize(
    "text",
    ["10.1", "192.0.2.1/24", "fe80::1%eth0", " 192.0.2.1", "", "192.0.2.256", "x" * 100, 5, None],
)
def test_only_plain_addresses_parse(text):
    with pytest.raises(InvalidRequest):
        allocator.parse_address(text)


def test_cidrs_are_masked_like_the_builtin_ipam_does():
    assert str(allocator.parse_cidr("192.0.2.77/24", "pool")) == "192.0.2.0/24"
    assert str(allocator.parse_cidr("2001:db8::1/64", "pool")) == "2001:db8::/64"


@pytest.mark.parametrize(
    "text", ["192.0.2.0", "192.0.2.0/33", "192.0.2.0/", "2001:db8::/129", "192.0.2.0/-1", "/24"]
)
def test_malformed_cidrs_are_refused(text):
    with pytest.raises(InvalidRequest):
        allocator.parse_cidr(text, "pool")


def test_addresses_format_with_the_pools_prefix_length():
    assert subnet("2001:db8::/64").format(ip("2001:db8::2")) == "2001:db8::2/64"


def test_prefix_lengths_must_be_ascii_digits():
    with pytest.raises(InvalidRequest, match="bad prefix length"):
        allocator.parse_cidr("192.0.2.0/\u0662\u0664", "pool")


def test_gaps_are_what_the_taken_ranges_leave_of_the_bounds():
    assert allocator.gaps((1, 10), [(1, 2), (5, 5), (9, 12)]) == [(3, 4), (6, 8)]
    assert allocator.gaps((1, 10), []) == [(1, 10)]
    assert allocator.merge([(5, 6), (1, 2), (3, 3), (9, 9)]) == [(1, 3), (5, 6), (9, 9)]


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("60s", 60), ("15m", 900), ("2h", 7200), ("7d", 604800)]
)
def test_durations_read_as_seconds(text, seconds):
    assert allocator.parse_duration(text, "x") == seconds


@pytest.mark.parametrize(
    ("text", "bounds"),
    [
        ("198.51.100.7", ("198.51.100.7", "198.51.100.7")),
        ("198.51.100.7-198.51.100.9", ("198.51.100.7", "198.51.100.9")),
        ("198.51.100.8/30", ("198.51.100.8", "198.51.100.11")),
    ],
)
def test_a_range_is_an_address_a_first_last_pair_or_a_cidr(text, bounds):
    first, last = allocator.parse_range(text)
    assert (str(first), str(last)) == bounds
