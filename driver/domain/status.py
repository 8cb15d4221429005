"""What the status page shows, as rules: how full is too full, what state an address is in, and
how a pool of any size is drawn in one screen."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from driver.domain.pools import LeaseKind

# As the example alert IpledgerPoolAlmostFull (plugin/prometheus/ipledger.rules.yml): a pool with
# less than this share of its addresses free is almost full; one with none free is exhausted.
ALMOST_FULL_FREE_RATIO = 0.10
# At most this many cells in a pool's map: one per address up to a /20, else one per block.
MAX_CELLS = 4096


class FillLevel(StrEnum):
    OK = "ok"
    ALMOST_FULL = "almost-full"
    EXHAUSTED = "exhausted"


def fill_level(size: int, free: int) -> FillLevel:
    """How full a pool is, by the thresholds of the example alerts."""
    if size > 0 and free == 0:
        return FillLevel.EXHAUSTED
    if size > 0 and free / size < ALMOST_FULL_FREE_RATIO:
        return FillLevel.ALMOST_FULL
    return FillLevel.OK


class CellState(StrEnum):
    """What an address is, on the map: a lease's kind, reserved, parked, or free."""

    GATEWAY = LeaseKind.GATEWAY.value
    ENDPOINT = LeaseKind.ENDPOINT.value
    AUX = LeaseKind.AUX.value
    CNI = LeaseKind.CNI.value
    OTHER = LeaseKind.OTHER.value
    RESERVED = "reserved"
    PARKED = "parked"
    FREE = "free"


@dataclass(frozen=True)
class MapLayout:
    """How a range of addresses is drawn: blocks of ``2 ** block_bits`` addresses, aligned on
    their size (whole bytes of the address, so that the database can group by a prefix)."""

    first: int
    last: int
    block_bits: int

    @property
    def per_address(self) -> bool:
        return self.block_bits == 0

    @property
    def first_block(self) -> int:
        return self.first >> self.block_bits

    @property
    def cells(self) -> int:
        return (self.last >> self.block_bits) - self.first_block + 1

    def block_bounds(self, index: int) -> tuple[int, int]:
        """The addresses of the range in the ``index``-th cell."""
        block = self.first_block + index
        lo, hi = block << self.block_bits, ((block + 1) << self.block_bits) - 1
        return max(lo, self.first), min(hi, self.last)


def map_layout(first: int, last: int) -> MapLayout:
    """One cell per address when the range has at most MAX_CELLS; else the smallest blocks of
    whole bytes that draw it in at most MAX_CELLS cells."""
    size = last - first + 1
    if size <= MAX_CELLS:
        return MapLayout(first, last, 0)
    bits = 8 * math.ceil(math.log2(size / MAX_CELLS) / 8)
    while (last >> bits) - (first >> bits) + 1 > MAX_CELLS:
        bits += 8
    return MapLayout(first, last, bits)
