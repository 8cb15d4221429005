"""The status page's rules, with no database: fill levels as the alerts see them, map layouts."""

from __future__ import annotations

import re
from pathlib import Path

import netaddr
import pytest

from driver.domain.status import (
    ALMOST_FULL_FREE_RATIO,
    MAX_CELLS,
    FillLevel,
    fill_level,
    map_layout,
)

RULES = Path(__file__).parents[2] / "plugin" / "prometheus" / "ipledger.rules.yml"


def test_the_page_colours_pools_by_the_example_alerts_threshold():
    threshold = re.search(
        r"free_addresses / ipledger_pool_size_addresses < ([0-9.]+)", RULES.read_text()
    )
    assert threshold is not None and float(threshold.group(1)) == ALMOST_FULL_FREE_RATIO


@pytest.mark.parametrize(
    ("size", "free", "level"),
    [
        (254, 254, FillLevel.OK),
        (100, 10, FillLevel.OK),
        (100, 9, FillLevel.ALMOST_FULL),
        (254, 0, FillLevel.EXHAUSTED),
        (0, 0, FillLevel.OK),
    ],
)
def test_a_pool_is_almost_full_below_a_tenth_free_and_exhausted_with_none(size, free, level):
    assert fill_level(size, free) == level


def test_a_pool_up_to_a_slash_20_is_drawn_one_cell_per_address():
    network = netaddr.IPNetwork("198.51.96.0/20")
    layout = map_layout(int(network.first) + 1, int(network.last) - 1)
    assert layout.per_address and layout.cells == 4094


@pytest.mark.parametrize(
    ("cidr", "bits", "cells"),
    [
        ("172.16.0.0/16", 8, 256),
        ("10.0.0.0/12", 8, 4096),
        ("2001:db8::/64", 56, 256),
        ("2001:db8::/32", 88, 256),
    ],
)
def test_a_larger_pool_is_drawn_in_blocks_of_whole_bytes_in_at_most_4096_cells(cidr, bits, cells):
    network = netaddr.IPNetwork(cidr)
    layout = map_layout(int(network.first) + 1, int(network.last))
    assert (layout.block_bits, layout.cells) == (bits, cells)
    assert layout.cells <= MAX_CELLS
    assert layout.block_bounds(0)[0] == int(network.first) + 1
    assert layout.block_bounds(layout.cells - 1)[1] == int(network.last)


def test_an_unaligned_range_gets_partial_blocks_at_its_ends():
    layout = map_layout(0x1000 + 5, 0x1000 + 5 + 10_000)
    assert layout.block_bits == 8
    first_lo, first_hi = layout.block_bounds(0)
    assert (first_lo, first_hi) == (0x1005, 0x10FF)
    covered = sum(hi - lo + 1 for lo, hi in map(layout.block_bounds, range(layout.cells)))
    assert covered == 10_001
