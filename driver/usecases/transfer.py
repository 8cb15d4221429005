"""A whole ledger out as JSON, and into an empty one."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from driver.domain import addresses as allocator
from driver.domain import export_format
from driver.domain.addresses import Range, Subnet
from driver.domain.errors import InvalidRequest
from driver.domain.moments import as_utc
from driver.domain.pools import LOCAL_OWNER, SHARED
from driver.storage.inventory import (
    HistoryEvent,
    Inventory,
    Journal,
    SubnetRow,
)
from driver.storage.models import free_ranges, history, leases, parked, pools, reservations
from driver.storage.rows import PoolRecord, pack
from driver.storage.store import retrying
from driver.usecases.operator import BATCH_PAUSE, WRITE_BATCH, OnLedger, show


class Transfer(OnLedger):
    """A whole ledger out as JSON, and into an empty one."""

    def export(self, progress: Callable[[int], None] = lambda _n: None) -> dict[str, Any]:
        """The whole state as JSON-ready data; free ranges are implied, not exported."""
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            pools_by_subnet: dict[int, list[PoolRecord]] = {}
            for p in inventory.pools():
                pools_by_subnet.setdefault(p.subnet_id, []).append(p)
            out = []
            for s in inventory.subnets():
                out.append(_exported_subnet(inventory, s, pools_by_subnet.get(s.id, [])))
                progress(1)
            events = [_exported_event(h) for h in Journal(ledger.connection).all_history()]
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
            ledger.insert_rows(table, rows)

    @retrying
    def _insert_subnet(self, subnet_row: dict[str, Any], pool_rows: list[dict[str, Any]]) -> int:
        with self.store.transaction() as ledger:
            subnet_id = ledger.add_subnet_row(subnet_row)
            ledger.insert_rows(pools, [{**p, "subnet_id": subnet_id} for p in pool_rows])
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
                    "cni_attachment": lease.get("cni_attachment"),
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


def _exported_subnet(inventory: Inventory, s: SubnetRow, pools: list[PoolRecord]) -> dict[str, Any]:
    """A subnet with its pools, leases, reservations and parked addresses, as exported."""
    v = s.subnet.version
    return {
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
                "reuse": p.policy.reuse,
                "quarantine_s": p.policy.quarantine_s,
                "hold_s": p.policy.hold_s,
                "host_id": p.host_id,
                "created_at": as_utc(p.created_at).isoformat(),
            }
            for p in pools
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
                "cni_attachment": r.cni_attachment,
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


def _exported_event(h: HistoryEvent) -> dict[str, Any]:
    return {
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
