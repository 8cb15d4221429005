"""Every invariant the allocator relies on, checked on what the ledger holds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from driver.domain import invariants
from driver.domain.pools import LOCAL_OWNER
from driver.storage.inventory import Inventory, SubnetRow
from driver.storage.rows import PoolRecord
from driver.storage.store import retrying
from driver.usecases.operator import OnLedger


@dataclass(frozen=True)
class CheckReport:
    subnets: int
    leases: int
    problems: list[str]


class Checks(OnLedger):
    """Every invariant the allocator relies on: the import's checker, on the ledger."""

    @retrying
    def check(self, progress: Callable[[int], None] = lambda _n: None) -> CheckReport:
        """Every invariant of :mod:`driver.domain.invariants`, subnet by subnet, then across
        subnets (overlaps, and the addresses two overlapping subnets both hold); problems in
        words."""
        problems: list[str] = []
        lease_count = 0
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            problems += inventory.sqlite_problems()
            pools_by_subnet: dict[int, list[PoolRecord]] = {}
            for p in inventory.pools():
                pools_by_subnet.setdefault(p.subnet_id, []).append(p)
            subnet_rows = inventory.subnets()
            placed: dict[int, invariants.Placed] = {}
            for s in subnet_rows:
                facts = _facts(inventory, s, pools_by_subnet.get(s.id, []))
                problems += [str(p) for p in invariants.subnet_problems(facts)]
                lease_count += sum(1 for h in facts.held if h.until is None)
                placed[s.id] = facts.placed()
                progress(1)
            problems += [str(p) for p in invariants.plan_problems(list(placed.values()))]
            by_place = {id(p): subnet_id for subnet_id, p in placed.items()}
            for a, b in invariants.overlapping(list(placed.values())):
                overlap = (
                    max(a.subnet.first, b.subnet.first),
                    min(a.subnet.last, b.subnet.last),
                )
                held_a = {x for x, _ in inventory.taken_between(by_place[id(a)], *overlap)}
                held_b = [x for x, _ in inventory.taken_between(by_place[id(b)], *overlap)]
                problems += [
                    str(p)
                    for p in invariants.held_in_both(a, b, (x for x in held_b if x in held_a))
                ]
        return CheckReport(len(subnet_rows), lease_count, problems)


def _facts(inventory: Inventory, s: SubnetRow, pools: list[PoolRecord]) -> invariants.SubnetFacts:
    """A subnet of the ledger as the invariants see it, with what it stores besides."""
    where = f"{s.space} {s.subnet.cidr}"
    if s.owner != LOCAL_OWNER:
        where = f"{s.owner} {where}"
    return invariants.SubnetFacts(
        owner=s.owner,
        space=s.space,
        subnet=s.subnet,
        where=where,
        label="",
        pools=[
            invariants.PoolFacts(
                p.id,
                p.subpool,
                p.policy.quarantine_s,
                p.policy.hold_s,
                where,
                draws=(p.range_first, p.range_last),
            )
            for p in pools
        ],
        held=[invariants.HeldFacts(r.address, r.pool_id, where) for r in inventory.leases(s.id)]
        + [
            invariants.HeldFacts(r.address, r.pool_id, where, r.until)
            for r in inventory.parked(s.id)
        ],
        reservations=[
            invariants.ReservedFacts(r.first, r.last, r.label, where)
            for r in inventory.reservation_rows(s.id)
        ],
        cursor=s.cursor,
        stored=invariants.Stored(s.refs, s.reservations, inventory.free_ranges(s.id)),
        fresh=True,
    )
