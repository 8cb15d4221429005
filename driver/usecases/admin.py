"""Operator use cases behind the ``ipledger`` CLI: report, reserve, export, import and check.

Each call is one transaction on the same :class:`driver.store.Store` the plugin uses, so it may
run while the plugin serves Docker. Results are plain records; ``cli.py`` renders them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import netaddr

from driver.domain import addresses as allocator
from driver.domain import export_format
from driver.domain.addresses import Range, Subnet
from driver.domain.errors import InvalidRequest, PoolNotFound
from driver.domain.moments import as_utc
from driver.domain.pools import LOCAL_OWNER, LOCAL_SPACE, SHARED, own_plan, owner_of, pool_id_for
from driver.domain.reconcile import Finding, LedgerLease, LedgerPool
from driver.storage.inventory import (
    FindingRow,
    HistoryEvent,
    Inventory,
    PoolRow,
    SubnetRow,
    Usage,
    allocatable_in,
)
from driver.storage.models import free_ranges, history, leases, parked, pools, reservations
from driver.storage.store import Ledger, Store, pack, retrying

# Rows an operator command writes in one transaction at the most: long enough to be quick,
# short enough that a plugin call never waits long for the write lock behind it.
WRITE_BATCH = 5000
# The pause between two such transactions: longer than a waiting call sleeps between looks at
# the write lock (WriteLock.POLL_MAX), so that the calls get it rather than the next batch.
BATCH_PAUSE = 0.003


def show(address: int, version: int) -> str:
    return str(netaddr.IPAddress(address, version))


def show_range(first: int, last: int, version: int) -> str:
    return (
        show(first, version) if first == last else f"{show(first, version)}-{show(last, version)}"
    )


@dataclass(frozen=True)
class PoolReport:
    pool: PoolRow
    usage: Usage


@dataclass(frozen=True)
class AddressLine:
    """One address (or reserved range) of a pool, in any state but free."""

    address: str
    state: str  # leased, reserved, quarantined, held
    kind: str | None
    mac: str | None
    name: str | None
    since: datetime | None
    detail: str | None
    host_id: str | None


@dataclass(frozen=True)
class CheckReport:
    subnets: int
    leases: int
    problems: list[str]


class Admin:
    def __init__(self, store: Store, host_id: str = "local") -> None:
        self.store = store
        self.host_id = host_id
        self.owner = own_plan(store.shared, host_id)

    # --- reports -------------------------------------------------------------------------

    def pools(self) -> list[PoolReport]:
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            return [
                PoolReport(p, inventory.usage(p.subnet_id, p.subnet, p.range_first, p.range_last))
                for p in inventory.pools()
            ]

    def subnets(self) -> list[tuple[str, Subnet, int, Usage]]:
        """(space, subnet, pools sharing it, usage over the whole subnet) for every subnet."""
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            return [
                (
                    s.space,
                    s.subnet,
                    s.refs,
                    inventory.usage(s.id, s.subnet, s.subnet.first, s.subnet.last),
                )
                for s in inventory.subnets()
            ]

    def count_subnets(self) -> int:
        """How many subnets the ledger holds (what export and check go through)."""
        with self.store.reading() as ledger:
            return Inventory(ledger.connection).count_subnets()

    def resolve_pool(self, wanted: str, network_pools: list[str] | None = None) -> str:
        """The PoolID an operator means by ``wanted``: a PoolID, a subnet, or (given its
        ``network_pools``) a Docker network; several candidates are listed to choose from."""
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            if inventory.pools(wanted, owner_of(wanted, self.owner)):
                return wanted
            candidates = network_pools
            if candidates is None:
                try:
                    cidr = str(allocator.parse_cidr(wanted, "subnet"))
                except InvalidRequest:
                    cidr = None
                candidates = sorted(
                    p.id
                    for p in inventory.pools()
                    if cidr is not None
                    and p.subnet.cidr == cidr
                    and p.owner in (self.owner, SHARED)
                )
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            raise InvalidRequest(
                f"{wanted} is held by several pools: give one of " + ", ".join(candidates)
            )
        raise InvalidRequest(
            f"no pool {wanted}: give a PoolID, a subnet or a Docker network "
            "name ('ipledger pools' lists the pools)"
        )

    def addresses(self, pool_id: str) -> list[AddressLine]:
        """What a pool's subnet holds: leases, reservations and parked addresses, in order."""
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            found = inventory.pools(pool_id, owner_of(pool_id, self.owner))
            if not found:
                raise PoolNotFound(pool_id)
            pool = found[0]
            version = pool.subnet.version
            lines: list[tuple[int, AddressLine]] = []
            for row in inventory.leases(pool.subnet_id):
                lines.append(
                    (
                        row.address,
                        AddressLine(
                            show(row.address, version),
                            "leased",
                            row.kind,
                            row.mac,
                            row.name,
                            as_utc(row.created_at),
                            None if row.pool_id == pool_id else row.pool_id,
                            row.host_id,
                        ),
                    )
                )
            for r in inventory.reservation_rows(pool.subnet_id):
                lines.append(
                    (
                        r.first,
                        AddressLine(
                            show_range(r.first, r.last, version),
                            "reserved",
                            None,
                            None,
                            None,
                            as_utc(r.created_at),
                            r.label,
                            None,
                        ),
                    )
                )
            for p in inventory.parked(pool.subnet_id):
                state = "held" if pool.hold_s and (p.mac or p.name) else "quarantined"
                until = datetime.fromtimestamp(p.until, UTC).isoformat(timespec="seconds")
                lines.append(
                    (
                        p.address,
                        AddressLine(
                            show(p.address, version),
                            state,
                            None,
                            p.mac,
                            p.name,
                            None,
                            f"until {until}",
                            None,
                        ),
                    )
                )
            return [line for _, line in sorted(lines, key=lambda item: item[0])]

    def history(
        self, *, address: str | None = None, pool_id: str | None = None, limit: int = 50
    ) -> list[HistoryEvent]:
        if address is not None:
            address = str(allocator.parse_address(address))
        with self.store.reading() as ledger:
            return Inventory(ledger.connection).history(
                address=address, pool_id=pool_id, limit=limit
            )

    def prune_history(self, before: datetime) -> int:
        """Forget history events older than ``before``; how many were dropped. Deletes in
        transactions of :data:`WRITE_BATCH` events, so that the plugin's calls interleave."""
        dropped = 0
        while batch := self._prune_batch(before):
            dropped += batch
            time.sleep(BATCH_PAUSE)
        return dropped

    @retrying
    def _prune_batch(self, before: datetime) -> int:
        with self.store.transaction() as ledger:
            return Inventory(ledger.connection).prune_history(before, WRITE_BATCH)

    def findings(self) -> list[FindingRow]:
        with self.store.reading() as ledger:
            return Inventory(ledger.connection).findings()

    def gc_inputs(self) -> tuple[list[LedgerPool], list[LedgerLease]]:
        """This host's and the shared pools with their leases, as :func:`driver.gc.reconcile`
        compares them (other hosts' pools may have the same PoolIDs)."""
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            all_pools = [p for p in inventory.pools() if p.owner in (self.owner, SHARED)]
            found = [LedgerPool(p.id, p.space, p.owner, as_utc(p.created_at)) for p in all_pools]
            subnet_versions = {p.subnet_id: p.subnet.version for p in all_pools}
            held = [
                LedgerLease(
                    row.pool_id,
                    show(row.address, version),
                    row.kind,
                    as_utc(row.created_at),
                    row.host_id,
                )
                for subnet_id, version in subnet_versions.items()
                for row in inventory.leases(subnet_id)
            ]
        return found, held

    @retrying
    def record_findings(self, found: list[Finding]) -> None:
        """Keep what gc found and left alone, for the leak-candidate metrics."""
        with self.store.transaction() as ledger:
            Inventory(ledger.connection).replace_findings(
                [
                    {
                        "what": f.what,
                        "pool_id": f.pool_id,
                        "address": f.address,
                        "detail": f.detail[:255],
                    }
                    for f in found
                ]
            )

    # --- reservations --------------------------------------------------------------------

    @retrying
    def reserve(
        self, range_text: str, label: str, space: str = LOCAL_SPACE, shared: bool = False
    ) -> str:
        """Set addresses aside; leased ones stay leased and are not freed when released."""
        if not label.strip():
            raise InvalidRequest("a reservation needs a label (--label)")
        first, last = allocator.parse_range(range_text, "range to reserve")
        with self.store.transaction() as ledger:
            inventory = Inventory(ledger.connection)
            held = self._locked_subnet(ledger, inventory, shared, space, first, last)
            bounds = allocatable_in(held.subnet, int(first), int(last))
            if bounds is None:
                raise InvalidRequest(
                    f"{range_text} holds only addresses {held.subnet.cidr} never hands out"
                )
            for r_first, r_last, r_label in inventory.reservations(held.id):
                if r_first <= bounds[1] and bounds[0] <= r_last:
                    raise InvalidRequest(
                        f"{range_text} overlaps the reservation "
                        f"{show_range(r_first, r_last, first.version)} ({r_label})"
                    )
            allocator.take_range(ledger.book(held.id), *bounds)
            inventory.add_reservation(held.id, bounds, label)
            shown = show_range(*bounds, first.version)
            ledger.write_history(
                self.host_id, "reserve", self._pool_of_subnet(ledger, held), shown, detail=label
            )
        return shown

    @retrying
    def unreserve(self, range_text: str, space: str = LOCAL_SPACE, shared: bool = False) -> str:
        """Drop the reservation that starts at the range's first address; free what is free."""
        first, last = allocator.parse_range(range_text, "reservation")
        with self.store.transaction() as ledger:
            inventory = Inventory(ledger.connection)
            held = self._locked_subnet(ledger, inventory, shared, space, first, last)
            match = [
                r
                for r in inventory.reservations(held.id)
                if r[0] <= int(first) <= r[1]
                and ("-" not in range_text or (r[0], r[1]) == (int(first), int(last)))
            ]
            if not match:
                raise InvalidRequest(f"no reservation in {held.subnet.cidr} covers {range_text}")
            r_first, r_last, label = match[0]
            inventory.drop_reservation(held.id, r_first)
            book = ledger.book(held.id)
            taken = inventory.taken_between(held.id, r_first, r_last)
            for gap in allocator.gaps((r_first, r_last), taken):
                allocator.give_back_range(book, *gap)
            shown = show_range(r_first, r_last, first.version)
            ledger.write_history(
                self.host_id, "unreserve", self._pool_of_subnet(ledger, held), shown, detail=label
            )
        return shown

    @staticmethod
    def _pool_of_subnet(ledger: Ledger, held: SubnetRow) -> str:
        """The PoolID a subnet's history is written under: its pool (the first, when ip-range
        pools share it), a shared pool's ``shared/NAME/...`` included."""
        found = sorted(ledger.pools_of_subnet(held.id))
        return found[0] if found else pool_id_for(held.space, held.subnet.cidr, None)

    def _locked_subnet(
        self,
        ledger: Ledger,
        inventory: Inventory,
        shared: bool,
        space: str,
        first: netaddr.IPAddress,
        last: netaddr.IPAddress,
    ) -> SubnetRow:
        """The subnet (this host's, or the shared one) holding the range, locked as an
        allocation locks it."""
        owner = SHARED if shared else self.owner
        held = inventory.subnet_containing(owner, space, first.version, int(first))
        if held is None or not held.subnet.contains(int(last)):
            raise InvalidRequest(
                f"{first} is not in a subnet of a network in {space}: "
                "create the network first, or check --space"
            )
        ledger.lock_subnet(held.id)
        return held

    # --- export and import ---------------------------------------------------------------

    def export(self, progress: Callable[[int], None] = lambda _n: None) -> dict[str, Any]:
        """The whole state as JSON-ready data; free ranges are implied, not exported."""
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            pools_by_subnet: dict[int, list[PoolRow]] = {}
            for p in inventory.pools():
                pools_by_subnet.setdefault(p.subnet_id, []).append(p)
            out = []
            for s in inventory.subnets():
                v = s.subnet.version
                out.append(
                    {
                        "owner": s.owner,
                        "space": s.space,
                        "cidr": s.subnet.cidr,
                        "cursor": show(s.cursor, v) if s.cursor is not None else None,
                        "created_at": as_utc(s.created_at).isoformat(),
                        "pools": [
                            {
                                "id": p.id,
                                "subpool": p.subpool,
                                "options": json.loads(p.options),
                                "reuse": p.reuse,
                                "quarantine_s": p.quarantine_s,
                                "hold_s": p.hold_s,
                                "host_id": p.host_id,
                                "created_at": as_utc(p.created_at).isoformat(),
                            }
                            for p in pools_by_subnet.get(s.id, [])
                        ],
                        "leases": [
                            {
                                "address": show(r.address, v),
                                "pool_id": r.pool_id,
                                "kind": r.kind,
                                "mac": r.mac,
                                "name": r.name,
                                "host_id": r.host_id,
                                "created_at": as_utc(r.created_at).isoformat(),
                            }
                            for r in inventory.leases(s.id)
                        ],
                        "reservations": [
                            {
                                "first": show(r.first, v),
                                "last": show(r.last, v),
                                "label": r.label,
                                "created_at": as_utc(r.created_at).isoformat(),
                            }
                            for r in inventory.reservation_rows(s.id)
                        ],
                        "parked": [
                            {
                                "address": show(r.address, v),
                                "pool_id": r.pool_id,
                                "mac": r.mac,
                                "name": r.name,
                                "until": r.until,
                            }
                            for r in inventory.parked(s.id)
                        ],
                    }
                )
                progress(1)
            events = [
                {
                    "at": as_utc(h.at).isoformat(),
                    "host_id": h.host_id,
                    "action": h.action,
                    "pool_id": h.pool_id,
                    "address": h.address,
                    "kind": h.kind,
                    "mac": h.mac,
                    "name": h.name,
                    "detail": h.detail,
                }
                for h in inventory.all_history()
            ]
        return {
            "format": export_format.EXPORT_FORMAT,
            "exported_at": datetime.now(UTC).isoformat(),
            "subnets": out,
            "history": events,
        }

    def import_(self, data: Any, progress: Callable[[int], None] = lambda _n: None) -> int:
        """Load an export, rebuilding the free ranges; returns how many leases it held.

        An SQLite ledger's own pools (owner ``local``) become this host's; the target must not
        hold pools of any owner the export brings (so one host's ledger is imported once).
        The export is checked whole first; then it is written in short transactions of at most
        :data:`WRITE_BATCH` rows, so that the plugin's calls interleave with a long import. A
        subnet's free ranges come last: until then nothing in it can be handed out, so an
        import that stops half-way leaves addresses unusable, never given twice.
        """
        export_format.validate(data)
        entries = [
            {**e, "owner": self._owner_for(e.get("owner") or LOCAL_OWNER)} for e in data["subnets"]
        ]
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            for owner in sorted({e["owner"] for e in entries}):
                if inventory.holds_owner(owner):
                    raise InvalidRequest(
                        f"the target ledger already holds pools of "
                        f"{owner!r}: import a host's ledger only once"
                    )
        count = 0
        for entry in entries:
            count += self._import_subnet(entry)
            progress(1)
        self._insert_batches(
            history, [{**h, "at": datetime.fromisoformat(h["at"])} for h in data["history"]]
        )
        return count

    def _insert_batches(self, table: Any, rows: list[dict[str, Any]]) -> None:
        """Insert rows in transactions of at most :data:`WRITE_BATCH` rows each."""
        for start in range(0, len(rows), WRITE_BATCH):
            self._insert(table, rows[start : start + WRITE_BATCH])
            time.sleep(BATCH_PAUSE)

    @retrying
    def _insert(self, table: Any, rows: list[dict[str, Any]]) -> None:
        with self.store.transaction() as ledger:
            Inventory(ledger.connection).insert_rows(table, rows)

    @retrying
    def _insert_subnet(self, subnet_row: dict[str, Any], pool_rows: list[dict[str, Any]]) -> int:
        with self.store.transaction() as ledger:
            inventory = Inventory(ledger.connection)
            subnet_id = inventory.add_subnet_row(subnet_row)
            inventory.insert_rows(pools, [{**p, "subnet_id": subnet_id} for p in pool_rows])
        return subnet_id

    def _owner_for(self, owner: str) -> str:
        """An exported owner in this ledger: ``local`` is whichever host imports it."""
        if owner == LOCAL_OWNER or (not self.store.shared and owner != SHARED):
            return self.owner
        return owner

    def _import_subnet(self, entry: dict[str, Any]) -> int:
        subnet = Subnet(allocator.parse_cidr(entry["cidr"], "subnet"))

        def address(text: str) -> int:
            return int(allocator.parse_address(text))

        pool_rows = []
        for p in entry["pools"]:
            sub = Subnet(allocator.parse_cidr(p["subpool"], "ip-range")) if p["subpool"] else None
            bounds = (sub.first, sub.last) if sub else (subnet.first, subnet.last)
            pool_rows.append(
                {
                    "owner": entry["owner"],
                    "id": p["id"],
                    "space": entry["space"],
                    "cidr": subnet.cidr,
                    "subpool": p["subpool"],
                    "range_first": pack(bounds[0]),
                    "range_last": pack(bounds[1]),
                    "options": json.dumps(p["options"], sort_keys=True),
                    "reuse": p["reuse"],
                    "quarantine_s": p["quarantine_s"],
                    "hold_s": p["hold_s"],
                    "host_id": p["host_id"],
                    "created_at": datetime.fromisoformat(p["created_at"]),
                }
            )
        subnet_id = self._insert_subnet(
            {
                "owner": entry["owner"],
                "space": entry["space"],
                "version": subnet.version,
                "cidr": subnet.cidr,
                "first": pack(subnet.first),
                "last": pack(subnet.last),
                "refs": len(entry["pools"]),
                "cursor": pack(int(allocator.parse_address(entry["cursor"])))
                if entry["cursor"]
                else None,
                "created_at": datetime.fromisoformat(entry["created_at"]),
                "reservations": len(entry["reservations"]),
            },
            pool_rows,
        )
        taken: list[Range] = []
        lease_rows = []
        for lease in entry["leases"]:
            value = address(lease["address"])
            taken.append((value, value))
            lease_rows.append(
                {
                    **lease,
                    "subnet_id": subnet_id,
                    "address": pack(value),
                    "created_at": datetime.fromisoformat(lease["created_at"]),
                }
            )
        self._insert_batches(leases, lease_rows)
        parked_rows = []
        for p in entry["parked"]:
            value = address(p["address"])
            taken.append((value, value))
            parked_rows.append({**p, "subnet_id": subnet_id, "address": pack(value)})
        self._insert_batches(parked, parked_rows)
        reservation_rows = []
        for r in entry["reservations"]:
            first, last = address(r["first"]), address(r["last"])
            taken.append((first, last))
            reservation_rows.append(
                {
                    "subnet_id": subnet_id,
                    "first": pack(first),
                    "last": pack(last),
                    "label": r["label"],
                    "created_at": datetime.fromisoformat(r["created_at"]),
                }
            )
        self._insert_batches(reservations, reservation_rows)
        allocatable = subnet.allocatable()
        if allocatable is not None:
            self._insert_batches(
                free_ranges,
                [
                    {"subnet_id": subnet_id, "first": pack(a), "last": pack(b)}
                    for a, b in allocator.gaps(allocatable, allocator.merge(taken))
                ],
            )
        return len(lease_rows)

    # --- check ---------------------------------------------------------------------------

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
        inventory: Inventory, s: SubnetRow, subnet_pools: list[PoolRow]
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
