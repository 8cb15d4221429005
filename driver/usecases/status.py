"""What the status page shows: every pool and how full it is, a pool's map, leases and last day,
and the history. Read-only; each view is one read transaction, aggregated in the database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from driver.domain import addresses as allocator
from driver.domain.history import RELEASES, HistoryAction
from driver.domain.moments import as_utc
from driver.domain.status import CellState, MapLayout, map_layout
from driver.storage.address_map import AddressMap
from driver.storage.inventory import HistoryEvent, Inventory, Journal, LeaseRow
from driver.storage.ledger import Ledger
from driver.storage.rows import PoolRecord
from driver.usecases.hosts import HostReport, Hosts
from driver.usecases.operator import OnLedger, show
from driver.usecases.reports import PoolReport, Reports

LEASES_PER_PAGE = 200


@dataclass(frozen=True)
class DatabaseState:
    """The database servers this instance's workers are on now (host:port, never a password),
    and how many plugin calls waited through an outage and how many it made refuse (503)."""

    servers: tuple[str, ...]
    waited: int
    refused: int


@dataclass(frozen=True)
class SpaceTotal:
    """An address space's pools of one family, added up."""

    space: str
    version: int
    pools: int
    size: int
    leased: int
    reserved: int
    parked: int
    free: int


@dataclass(frozen=True)
class Overview:
    pools: list[PoolReport]
    totals: list[SpaceTotal]


@dataclass(frozen=True)
class Cell:
    """One cell of a pool's map: an address, or a block of them with their counts by state."""

    first: str
    last: str
    size: int
    leased: int
    reserved: int
    parked: int
    state: CellState  # an address's state; for a block, the state most of its used ones are in
    holder: str | None = None

    @property
    def fill(self) -> float:
        return (self.leased + self.reserved + self.parked) / self.size if self.size else 0.0


@dataclass(frozen=True)
class Hour:
    start: datetime
    allocations: int
    releases: int


@dataclass(frozen=True)
class PoolPage:
    status: PoolReport
    layout: MapLayout
    cells: list[Cell]
    counts: dict[CellState, int]  # the map's addresses by state
    leases: list[LeaseRow]
    more_after: str | None  # the last address shown, when more leases follow
    hours: list[Hour]
    # per lease shown with a DNS name, by address: published, pending, or not published
    dns: dict[int, str]


SORTS: dict[str, Callable[[PoolReport], Any]] = {
    "utilisation": lambda p: (p.usage.utilisation, p.pool.id),
    "pool": lambda p: p.pool.id,
    "owner": lambda p: (p.pool.owner, p.pool.id),
    "size": lambda p: p.usage.size,
    "leased": lambda p: p.usage.leased,
    "reserved": lambda p: p.usage.reserved,
    "parked": lambda p: p.usage.parked,
    "free": lambda p: p.usage.free,
}


class StatusViews(OnLedger):
    def overview(self, sort: str = "utilisation", descending: bool = True) -> Overview:
        """Every pool with its usage (nearest exhaustion first by default), and the totals."""
        pools = Reports(self.store, self.host_id).pools()
        pools.sort(key=SORTS.get(sort, SORTS["utilisation"]), reverse=descending)
        totals: dict[tuple[str, int], list[PoolReport]] = {}
        for status in pools:
            totals.setdefault((status.pool.space, status.pool.subnet.version), []).append(status)
        return Overview(
            pools,
            [
                SpaceTotal(
                    space,
                    version,
                    len(members),
                    *(
                        sum(getattr(m.usage, field) for m in members)
                        for field in ("size", "leased", "reserved", "parked", "free")
                    ),
                )
                for (space, version), members in sorted(totals.items())
            ],
        )

    def pool(self, pool_id: str, after: str | None = None) -> PoolPage:
        """A pool's map over its subnet, a page of its subnet's leases, and its last 24 hours."""
        since = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            pool = self._pool_in(inventory, pool_id)
            at = ledger.clock()
            usage = inventory.usage(
                pool.subnet_id, pool.subnet, pool.range_first, pool.range_last, at
            )
            bounds = pool.subnet.allocatable() or (pool.subnet.first, pool.subnet.last)
            layout = map_layout(*bounds)
            if layout.per_address:
                cells = self._address_cells(inventory, pool, layout, at)
                counts = _count_states(cells)
            else:
                cells, counts = self._block_cells(ledger, inventory, pool, layout, at)
            start = bounds[0] if not after else int(allocator.parse_address(after, "after")) + 1
            page = list(inventory.leases(pool.subnet_id, (start, bounds[1]), LEASES_PER_PAGE + 1))
            activity = Journal(ledger.connection).activity(pool.id, since)
            dns = _dns_states(ledger, page[:LEASES_PER_PAGE], pool.subnet.version)
        more = None
        if len(page) > LEASES_PER_PAGE:
            more = show(page[LEASES_PER_PAGE - 1].address, pool.subnet.version)
        return PoolPage(
            PoolReport(pool, usage),
            layout,
            cells,
            counts,
            page[:LEASES_PER_PAGE],
            more,
            _hours(activity, since),
            dns,
        )

    def hosts(self) -> list[HostReport]:
        """Every host of the ledger, with its heartbeat, state and leases."""
        return Hosts(self.store, self.host_id).reports()

    def host_names(self) -> dict[str, str]:
        """Host id -> human name, for every view that shows a host."""
        return Hosts(self.store, self.host_id).names()

    def history(
        self, pool_id: str | None = None, address: str | None = None, limit: int = 100
    ) -> list[HistoryEvent]:
        """The latest events, newest first."""
        with self.store.reading() as ledger:
            events = Journal(ledger.connection).history(
                address=address, pool_id=pool_id, limit=limit
            )
        return list(reversed(events))

    @staticmethod
    def _address_cells(
        inventory: Inventory, pool: PoolRecord, layout: MapLayout, at: float
    ) -> list[Cell]:
        states: dict[int, tuple[CellState, str | None]] = {}
        for first, last, label in inventory.reservations(pool.subnet_id):
            for address in range(max(first, layout.first), min(last, layout.last) + 1):
                states[address] = (CellState.RESERVED, label)
        for p in inventory.parked(pool.subnet_id, (layout.first, layout.last), at):
            states[p.address] = (CellState.PARKED, p.name or p.mac)
        for lease in inventory.leases(pool.subnet_id, (layout.first, layout.last)):
            states[lease.address] = (CellState(lease.kind), lease.name or lease.mac)
        version = pool.subnet.version
        cells = []
        for address in range(layout.first, layout.last + 1):
            state, holder = states.get(address, (CellState.FREE, None))
            text = show(address, version)
            cells.append(
                Cell(
                    text,
                    text,
                    1,
                    int(state not in (CellState.FREE, CellState.RESERVED, CellState.PARKED)),
                    int(state == CellState.RESERVED),
                    int(state == CellState.PARKED),
                    state,
                    holder,
                )
            )
        return cells

    @staticmethod
    def _block_cells(
        ledger: Ledger, inventory: Inventory, pool: PoolRecord, layout: MapLayout, at: float
    ) -> tuple[list[Cell], dict[CellState, int]]:
        counts_of = AddressMap(ledger.connection)
        free = counts_of.free_by_block(pool.subnet_id, layout)
        parked, expired = counts_of.parked_by_block(pool.subnet_id, layout, at)
        # an address whose quarantine or hold ran out is free (the next allocation frees it)
        for index, n in expired.items():
            free[index] = free.get(index, 0) + n
        reservations = inventory.reservations(pool.subnet_id)
        version = pool.subnet.version
        cells = []
        for index in range(layout.cells):
            lo, hi = layout.block_bounds(index)
            size = hi - lo + 1
            kept = parked.get(index, 0)
            # reserved and not leased: a reservation's part in the block, less its leases
            reserved = 0
            for r_first, r_last, _ in reservations:
                a, b = max(lo, r_first), min(hi, r_last)
                if a <= b:
                    reserved += b - a + 1 - counts_of.leased_within(pool.subnet_id, (a, b))
            used = size - free.get(index, 0) - kept - reserved
            state = CellState.FREE
            if used or reserved or kept:
                state = max(
                    (used, CellState.ENDPOINT),
                    (reserved, CellState.RESERVED),
                    (kept, CellState.PARKED),
                    key=lambda pair: pair[0],
                )[1]
            cells.append(
                Cell(show(lo, version), show(hi, version), size, used, reserved, kept, state)
            )
        pool_ids = ledger.pools_of_subnet(pool.subnet_id)
        counts = {CellState(k): n for k, n in counts_of.kinds_of_pools(pool_ids).items()}
        counts[CellState.RESERVED] = sum(c.reserved for c in cells)
        counts[CellState.PARKED] = sum(c.parked for c in cells)
        counts[CellState.FREE] = sum(free.values())
        return cells, counts


def _count_states(cells: list[Cell]) -> dict[CellState, int]:
    counts = dict.fromkeys(CellState, 0)
    for cell in cells:
        counts[cell.state] += 1
    return counts


def _hours(activity: list[tuple[datetime, str, int]], since: datetime) -> list[Hour]:
    allocations: dict[datetime, int] = {}
    releases: dict[datetime, int] = {}
    for at, action, count in activity:
        hour = as_utc(at).replace(minute=0, second=0, microsecond=0)
        if action == HistoryAction.ALLOCATE:
            allocations[hour] = allocations.get(hour, 0) + count
        elif action in RELEASES:
            releases[hour] = releases.get(hour, 0) + count
    hours = [since + timedelta(hours=i) for i in range(24)]
    return [Hour(h, allocations.get(h, 0), releases.get(h, 0)) for h in hours]


def _dns_states(ledger: Ledger, page: list[LeaseRow], version: int) -> dict[int, str]:
    """Whether each lease of the page that has a DNS name is in DNS yet."""
    states = ledger.dns_states(lease.dns_name for lease in page if lease.dns_name)
    return {
        lease.address: states.get((lease.dns_name, show(lease.address, version)), "not published")
        for lease in page
        if lease.dns_name
    }
