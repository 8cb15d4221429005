"""Every invariant the allocator relies on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from driver.domain import addresses as allocator
from driver.domain.addresses import Range
from driver.storage.inventory import (
    Inventory,
    SubnetRow,
)
from driver.storage.rows import PoolRecord
from driver.usecases.operator import OnLedger, show, show_range


@dataclass(frozen=True)
class CheckReport:
    subnets: int
    leases: int
    problems: list[str]


class Checks(OnLedger):
    """Every invariant the allocator relies on."""

    def check(self, progress: Callable[[int], None] = lambda _n: None) -> CheckReport:
        """Every invariant the allocator relies on, subnet by subnet; problems in words."""
        problems: list[str] = []
        lease_count = 0
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            problems += inventory.sqlite_problems()
            all_pools = inventory.pools()
            subnet_rows = inventory.subnets()
            for s in subnet_rows:
                found, count = self._check_subnet(
                    inventory, s, [p for p in all_pools if p.subnet_id == s.id]
                )
                problems += found
                lease_count += count
                progress(1)
        return CheckReport(len(subnet_rows), lease_count, problems)

    @staticmethod
    def _check_subnet(
        inventory: Inventory, s: SubnetRow, subnet_pools: list[PoolRecord]
    ) -> tuple[list[str], int]:
        subnet, v = s.subnet, s.subnet.version
        where = f"{s.space} {subnet.cidr}"
        problems: list[str] = []
        if s.refs != len(subnet_pools):
            problems.append(
                f"{where}: {len(subnet_pools)} pools use it but its count says {s.refs}"
            )
        pool_ids = {p.id for p in subnet_pools}
        for p in subnet_pools:
            if not subnet.first <= p.range_first <= p.range_last <= subnet.last:
                problems.append(f"{where}: pool {p.id} draws from outside the subnet")
        taken: list[Range] = []
        seen: set[int] = set()
        count = 0
        for row in inventory.leases(s.id):
            count += 1
            if not subnet.contains(row.address) or subnet.reserved(row.address):
                problems.append(f"{where}: lease {show(row.address, v)} cannot be in it")
            if row.pool_id not in pool_ids:
                problems.append(
                    f"{where}: lease {show(row.address, v)} names pool "
                    f"{row.pool_id!r}, which is not a pool of this subnet"
                )
            seen.add(row.address)
            taken.append((row.address, row.address))
        for held in inventory.parked(s.id):
            if held.address in seen:
                problems.append(f"{where}: {show(held.address, v)} is both leased and parked")
            taken.append((held.address, held.address))
        reservation_list = inventory.reservations(s.id)
        if len(reservation_list) != s.reservations:
            problems.append(
                f"{where}: {len(reservation_list)} reservations but its count says {s.reservations}"
            )
        for i, (first, last, label) in enumerate(reservation_list):
            if i and first <= reservation_list[i - 1][1]:
                problems.append(f"{where}: reservation {label!r} overlaps the one before it")
            taken.append((first, last))
        allocatable = subnet.allocatable()
        expected = allocator.gaps(allocatable, allocator.merge(taken)) if allocatable else []
        actual = inventory.free_ranges(s.id)
        if actual != expected:
            free_now = set(actual)
            should = set(expected)
            extra = sorted(free_now - should)
            missing = sorted(should - free_now)
            detail = []
            if extra:
                detail.append(
                    "marked free but not expected: "
                    + ", ".join(show_range(a, b, v) for a, b in extra[:3])
                )
            if missing:
                detail.append(
                    "expected free but not marked: "
                    + ", ".join(show_range(a, b, v) for a, b in missing[:3])
                )
            problems.append(
                f"{where}: the free ranges do not match the leases, reservations "
                f"and parked addresses ({'; '.join(detail)})"
            )
        return problems, count
