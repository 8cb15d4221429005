"""Address math: which addresses a subnet offers, and how free ranges are split and merged.

Pure logic over netaddr and the standard library; no Flask, no SQLAlchemy. Addresses are plain
ints here. The free addresses of a subnet are kept as disjoint, non-adjacent ``(first, last)``
ranges behind the :class:`FreeRanges` protocol, so that finding the lowest free address, taking
a static one or giving one back costs a few index lookups whatever the size of the subnet or the
number of leases. The storage layer implements them with database rows; the unit tests with
a sorted list.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import netaddr

from driver.domain.errors import InvalidRequest

Range = tuple[int, int]


@dataclass(frozen=True)
class Subnet:
    """A masked CIDR and the bounds of the addresses it can hand out."""

    network: netaddr.IPNetwork

    @property
    def version(self) -> int:
        return int(self.network.version)

    @property
    def prefixlen(self) -> int:
        return int(self.network.prefixlen)

    @property
    def first(self) -> int:
        return int(self.network.first)

    @property
    def last(self) -> int:
        return int(self.network.last)

    @property
    def cidr(self) -> str:
        return str(self.network.cidr)

    def reserved(self, address: int) -> str | None:
        """Why ``address`` is never handed out, or None when it may be.

        As the built-in IPAM: IPv4 reserves the network and broadcast addresses except in /31
        and /32 (RFC 3021); IPv6 reserves the first address (the subnet-router anycast address).
        """
        if self.version == 4:
            if self.prefixlen >= 31:
                return None
            if address == self.first:
                return "the network address"
            if address == self.last:
                return "the broadcast address"
            return None
        if address == self.first:
            return "the subnet-router anycast address"
        return None

    def allocatable(self) -> Range | None:
        """The one range of addresses that starts out free, or None when there is none."""
        first, last = self.first, self.last
        if self.reserved(first):
            first += 1
        if self.reserved(last):
            last -= 1
        return (first, last) if first <= last else None

    def contains(self, address: int) -> bool:
        return self.first <= address <= self.last

    def format(self, address: int) -> str:
        """The address in CIDR form with this subnet's prefix length, as Docker wants it."""
        return f"{netaddr.IPAddress(address, self.version)}/{self.prefixlen}"


@dataclass(frozen=True)
class SubPool:
    """The part of a subnet a pool hands out: Docker's ip-range (a CIDR) or a CNI range."""

    text: str
    first: int
    last: int

    @classmethod
    def of_cidr(cls, network: netaddr.IPNetwork) -> SubPool:
        return cls(str(network.cidr), int(network.first), int(network.last))

    def inside(self, subnet: Subnet) -> bool:
        return subnet.contains(self.first) and subnet.contains(self.last)


def parse_cidr(text: object, what: str) -> netaddr.IPNetwork:
    """A CIDR such as ``192.0.2.0/24``, masked; host bits are dropped as Docker's own IPAM does."""
    if not isinstance(text, str) or "/" not in text:
        raise InvalidRequest(f"invalid {what} {text!r}: expected a CIDR such as 192.0.2.0/24")
    address, _, length = text.partition("/")
    ip = parse_address(address, what)
    bits = 32 if ip.version == 4 else 128
    if not (length.isascii() and length.isdigit()) or len(length) > 3 or int(length) > bits:
        raise InvalidRequest(f"invalid {what} {text!r}: bad prefix length {length!r}")
    return netaddr.IPNetwork(f"{ip}/{int(length)}").cidr


def parse_address(text: object, what: str = "address") -> netaddr.IPAddress:
    """A plain IPv4 or IPv6 address: no mask, no zone, no shorthand such as ``10.1``."""
    if not isinstance(text, str) or not text or len(text) > 45 or text != text.strip():
        raise InvalidRequest(f"invalid {what} {text!r}: expected a plain IP address")
    if "%" in text or "/" in text:
        raise InvalidRequest(
            f"invalid {what} {text!r}: expected a plain IP address, "
            "without a zone or a prefix length"
        )
    try:
        return netaddr.IPAddress(text, flags=netaddr.INET_PTON)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise InvalidRequest(f"invalid {what} {text!r}: expected a plain IP address") from None


def is_size_only(pool: str) -> bool:
    """Docker 29's "any subnet of this size" form: ``0.0.0.0/24``, ``::/56``, or ``::/0`` for
    a subnet of the default size. Docker reads the address as given, before masking it: only an
    all-zero one asks for a size, so ``f656::/0`` is the whole IPv6 space (``pool`` is a CIDR
    that ``parse_cidr`` accepted)."""
    return int(parse_address(pool.partition("/")[0], "pool")) == 0


class FreeRanges(Protocol):
    """The free ranges of one subnet: disjoint, never adjacent, ordered by address."""

    def first_ending_at_or_after(self, address: int) -> Range | None:
        """The lowest range whose last address is ``>= address``."""

    def containing(self, address: int) -> Range | None: ...

    def ending_at(self, address: int) -> Range | None: ...

    def starting_at(self, address: int) -> Range | None: ...

    def add(self, free: Range) -> None: ...

    def remove(self, free: Range) -> None: ...

    def replace(self, old: Range, new: Range) -> None:
        """Turn range ``old`` into ``new`` (one row update, where the ranges are rows)."""


def take_lowest(free_ranges: FreeRanges, lo: int, hi: int) -> int | None:
    """Take the lowest free address in ``[lo, hi]``; None when there is none."""
    free = free_ranges.first_ending_at_or_after(lo)
    if free is None:
        return None
    address = max(free[0], lo)
    if address > hi:
        return None
    _split(free_ranges, free, address)
    return address


def take_next(free_ranges: FreeRanges, lo: int, hi: int, cursor: int) -> int | None:
    """Next-fit: the lowest free address at or after ``cursor``, wrapping round to ``lo``."""
    if lo <= cursor <= hi:
        address = take_lowest(free_ranges, cursor, hi)
        if address is not None:
            return address
    return take_lowest(free_ranges, lo, hi)


def take(free_ranges: FreeRanges, address: int) -> bool:
    """Take one given address; False when it is not free."""
    free = free_ranges.containing(address)
    if free is None:
        return False
    _split(free_ranges, free, address)
    return True


def take_range(free_ranges: FreeRanges, first: int, last: int) -> int:
    """Take every free address in ``[first, last]``; returns how many free ranges it touched."""
    touched = 0
    while (free := free_ranges.first_ending_at_or_after(first)) is not None and free[0] <= last:
        touched += 1
        lo, hi = free
        if first <= lo and hi <= last:
            free_ranges.remove(free)
        elif lo < first and last < hi:
            free_ranges.replace(free, (lo, first - 1))
            free_ranges.add((last + 1, hi))
        elif lo < first:
            free_ranges.replace(free, (lo, first - 1))
        else:
            free_ranges.replace(free, (last + 1, hi))
        if hi >= last:
            break
        first = hi + 1
    return touched


def give_back(free_ranges: FreeRanges, address: int) -> None:
    """Make a taken address free again, merging it with the free ranges on either side."""
    give_back_range(free_ranges, address, address)


def give_back_range(free_ranges: FreeRanges, first: int, last: int) -> None:
    """Make ``[first, last]``, none of it free now, free again, merged with its neighbours."""
    before = free_ranges.ending_at(first - 1)
    after = free_ranges.starting_at(last + 1)
    if before is not None and after is not None:
        free_ranges.remove(after)
        free_ranges.replace(before, (before[0], after[1]))
    elif before is not None:
        free_ranges.replace(before, (before[0], last))
    elif after is not None:
        free_ranges.replace(after, (first, after[1]))
    else:
        free_ranges.add((first, last))


def gaps(bounds: Range, taken: Iterable[Range]) -> list[Range]:
    """The parts of ``bounds`` that no range of ``taken`` (sorted by first) covers."""
    lo, hi = bounds
    free: list[Range] = []
    cursor = lo
    for first, last in taken:
        if last < cursor:
            continue
        if first > hi:
            break
        if first > cursor:
            free.append((cursor, first - 1))
        cursor = max(cursor, last + 1)
        if cursor > hi:
            break
    if cursor <= hi:
        free.append((cursor, hi))
    return free


def merge(ranges: Iterable[Range]) -> list[Range]:
    """Sorted ranges with overlapping or adjacent ones joined."""
    merged: list[Range] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def parse_range(text: str, what: str = "range") -> tuple[netaddr.IPAddress, netaddr.IPAddress]:
    """``ADDRESS``, ``FIRST-LAST`` or a CIDR, as its first and last address."""
    if "/" in text:
        network = parse_cidr(text, what)
        return network[0], network[-1]
    first_text, sep, last_text = text.partition("-")
    first = parse_address(first_text.strip(), what)
    last = parse_address(last_text.strip(), what) if sep else first
    if first.version != last.version or int(last) < int(first):
        raise InvalidRequest(
            f"invalid {what} {text!r}: the last address must follow the first, in the same family"
        )
    return first, last


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, what: str) -> int:
    """Seconds from ``90``, ``90s``, ``15m``, ``2h`` or ``7d``."""
    value = text.strip().lower()
    unit = 1
    if value[-1:] in _DURATION_UNITS:
        value, unit = value[:-1], _DURATION_UNITS[value[-1]]
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise InvalidRequest(
            f"invalid {what} {text!r}: expected a duration such as 60s, 15m, 2h or 7d"
        )
    return int(value) * unit


def parse_age(text: str, what: str) -> int:
    """Seconds from an operator's age with its unit (``90d``, ``12h``, ``30m``, ``45s``; ``0``
    alone). A bare number is refused: ``90`` could mean days as much as seconds."""
    value = text.strip()
    if value.isascii() and value.isdigit() and int(value) != 0:
        raise InvalidRequest(
            f"{what} {text!r} needs a unit: {value}d (days), {value}h, {value}m or {value}s"
        )
    return parse_duration(text, what)


def _split(free_ranges: FreeRanges, free: Range, address: int) -> None:
    first, last = free
    if first == address == last:
        free_ranges.remove(free)
    elif address == first:
        free_ranges.replace(free, (address + 1, last))
    elif address == last:
        free_ranges.replace(free, (first, address - 1))
    else:
        free_ranges.replace(free, (first, address - 1))
        free_ranges.add((address + 1, last))


@dataclass(frozen=True)
class DefaultPool:
    """One entry of ``default-address-pools``: carve subnets of ``size`` out of ``base``."""

    base: netaddr.IPNetwork
    size: int

    @property
    def version(self) -> int:
        return int(self.base.version)


class HeldSubnets(Protocol):
    """The subnets already held in one address space and family."""

    def first_overlapping(self, first: int, last: int) -> Range | None:
        """The lowest held subnet that overlaps ``[first, last]``, as its address range."""


def pick_default_subnet(
    defaults: Iterable[DefaultPool], version: int, size: int | None, held: HeldSubnets
) -> netaddr.IPNetwork | None:
    """The lowest subnet of the default pools that overlaps nothing held.

    ``size`` None means each default pool's own size. Each step skips a whole held subnet, so the
    cost grows with the number of pools held, never with the size of the address space.
    """
    bits = 32 if version == 4 else 128
    for default in defaults:
        if default.version != version:
            continue
        length = default.size if size is None else size
        if length < default.base.prefixlen or length > bits:
            continue
        block = 1 << (bits - length)
        candidate, end = int(default.base.first), int(default.base.last)
        while candidate + block - 1 <= end:
            blocker = held.first_overlapping(candidate, candidate + block - 1)
            if blocker is None:
                return netaddr.IPNetwork(f"{netaddr.IPAddress(candidate, version)}/{length}")
            candidate = -(-(blocker[1] + 1) // block) * block
    return None
