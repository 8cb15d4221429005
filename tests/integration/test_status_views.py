"""What the status page shows, read from the ledger on SQLite and on PostgreSQL."""

from __future__ import annotations

from driver.domain.pools import MAC_OPTION, NAME_OPTION
from driver.domain.status import CellState, FillLevel
from driver.usecases.admin import Admin
from driver.usecases.status import StatusViews


def test_the_overview_puts_the_fullest_pool_first_and_adds_up_each_space(ipam, settings):
    tiny = ipam.request_pool("LocalDefault", "203.0.113.0/29", "", {}, False).pool_id
    for _ in range(6):
        ipam.request_address(tiny, "", {})
    roomy = ipam.request_pool("LocalDefault", "198.51.100.0/24", "", {}, False).pool_id
    ipam.request_address(roomy, "", {})
    found = StatusViews(ipam.store, settings.host_id).overview()
    assert [(p.pool.id, p.level) for p in found.pools] == [
        (tiny, FillLevel.EXHAUSTED),
        (roomy, FillLevel.OK),
    ]
    (total,) = found.totals
    assert (total.space, total.version, total.pools, total.size, total.leased) == (
        "LocalDefault",
        4,
        2,
        260,
        7,
    )


def test_a_pools_page_counts_each_state_and_its_last_day_by_the_hour(ipam, settings):
    pool = ipam.request_pool(
        "LocalDefault", "198.51.100.0/24", "", {"ipledger.quarantine": "1h"}, False
    ).pool_id
    for i in range(4):
        ipam.request_address(pool, "", {MAC_OPTION: f"02:00:00:00:00:0{i}", NAME_OPTION: f"c{i}"})
    ipam.release_address(pool, "198.51.100.2")
    Admin(ipam.store, settings.host_id).reservations.reserve("198.51.100.250-198.51.100.254", "r")
    page = StatusViews(ipam.store, settings.host_id).pool(pool)
    assert page.layout.per_address and len(page.cells) == 254
    assert {state: n for state, n in page.counts.items() if n} == {
        CellState.ENDPOINT: 3,
        CellState.PARKED: 1,
        CellState.RESERVED: 5,
        CellState.FREE: 245,
    }
    assert sum(h.allocations for h in page.hours) == 4
    assert sum(h.releases for h in page.hours) == 1
    assert page.hours[-1].allocations == 4  # this hour's


def test_a_large_pools_blocks_add_up_to_its_leases_parked_and_free(ipam, settings):
    pool = ipam.request_pool(
        "LocalDefault", "2001:db8:5::/64", "", {"ipledger.quarantine": "1h"}, True
    ).pool_id
    for _ in range(40):
        ipam.request_address(pool, "", {})
    ipam.release_address(pool, "2001:db8:5::7")
    page = StatusViews(ipam.store, settings.host_id).pool(pool)
    assert not page.layout.per_address and len(page.cells) == 256
    assert sum(c.leased for c in page.cells) == 39
    assert sum(c.parked for c in page.cells) == 1
    assert page.counts[CellState.OTHER] == 39
    assert page.counts[CellState.FREE] == 2**64 - 1 - 40
