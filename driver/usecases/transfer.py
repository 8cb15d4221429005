"""A whole ledger out as JSON, and into another one."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from driver.domain import addresses as allocator
from driver.domain import export_format, invariants
from driver.domain.addresses import Subnet
from driver.domain.errors import InvalidRequest
from driver.domain.moments import as_utc
from driver.domain.pools import LOCAL_OWNER, SHARED, SWARM, Plans
from driver.storage.inventory import (
    HistoryEvent,
    Inventory,
    Journal,
    SubnetRow,
)
from driver.storage.ledger import Ledger
from driver.storage.models import free_ranges, history, leases, parked, pools, reservations
from driver.storage.rows import PoolRecord, pack
from driver.storage.store import retrying
from driver.usecases.operator import BATCH_PAUSE, WRITE_BATCH, OnLedger, show

log = logging.getLogger(__name__)


class Transfer(OnLedger):
    """A whole ledger out as JSON, and into an empty one."""

    @retrying
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

        See :func:`plan_import` for what is checked, and :meth:`import_plan` for how it is
        written.
        """
        return self.import_plan(plan_import(data, self.store.shared, self.host_id), progress)

    def import_plan(
        self, plan: ImportPlan, progress: Callable[[int], None] = lambda _n: None
    ) -> int:
        """Write a checked export; returns how many leases it held.

        A refused file changes nothing. The file was checked whole on its own
        (:func:`plan_import`); what it must not clash with in the ledger (an owner whose pools
        the ledger holds already, an overlapping subnet) is checked in the first transaction,
        before its first write, with the address plans locked as RequestPool locks them. That
        transaction writes every subnet and pool, so from its commit on nothing else can claim
        their addresses. The rest (leases, parked addresses, reservations, free ranges,
        history) cannot be refused any more, and is written in transactions of at most
        :data:`WRITE_BATCH` rows, so that the plugin's calls interleave with a long import. The
        free ranges come after what the subnets hold: until then nothing in a subnet can be
        handed out. An import that the database stops half-way (a full disk) removes again the
        subnets whose free ranges it had not written (they handed out nothing); if even that
        fails, they stay unusable, never given twice, and ``check`` names them.
        """
        if (plan.shared, plan.owner) != (self.store.shared, self.owner):
            raise AssertionError("an import planned for another kind of ledger")
        subnet_ids = self._claim(plan)
        count, freed = 0, 0
        try:
            for entry, subnet_id in zip(plan.subnets, subnet_ids, strict=True):
                count += self._import_contents(entry, subnet_id)
            for facts, subnet_id in zip(plan.facts, subnet_ids, strict=True):
                self._insert_batches(
                    free_ranges,
                    [
                        {"subnet_id": subnet_id, "first": pack(a), "last": pack(b)}
                        for a, b in invariants.expected_free(facts)
                    ],
                )
                freed += 1
                progress(1)
        except Exception:
            # The database stopped the import (a full disk, say). The subnets whose free ranges
            # are not written yet have handed out nothing: remove them again, best effort.
            self._forget(plan.subnets[freed:], subnet_ids[freed:])
            raise
        self._insert_batches(
            history, [{**h, "at": datetime.fromisoformat(h["at"])} for h in plan.history]
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
    def _claim(self, plan: ImportPlan) -> list[int]:
        """In one transaction: refuse what clashes with the ledger, else write every subnet and
        pool of the plan; their ids."""
        with self.store.transaction() as ledger:
            spaces = sorted({e["space"] for e in plan.subnets})
            for space in spaces:
                for owner in sorted({e["owner"] for e in plan.subnets} - {SHARED}) or [SHARED]:
                    ledger.lock_plans(space, owner, shared_too=True)
            inventory = Inventory(ledger.connection)
            # the swarm's pools come from every host that was a manager: overlaps are refused
            # below, as any two pools' are
            for owner in sorted({e["owner"] for e in plan.subnets} - {SWARM}):
                if inventory.holds_owner(owner):
                    raise InvalidRequest(
                        f"the target ledger already holds pools of "
                        f"{owner!r}: import a host's ledger only once"
                    )
            held = _placed_in_ledger(inventory, spaces)
            refuse(invariants.plan_problems(held + [f.placed() for f in plan.facts]))
            return [self._write_subnet(ledger, entry) for entry in plan.subnets]

    def _forget(self, entries: list[dict[str, Any]], subnet_ids: list[int]) -> None:
        """Remove claimed subnets with their pools and whatever of them is written; a failure
        to do so is logged, and the import's own error is what its caller sees."""
        try:
            with self.store.transaction() as ledger:
                for entry, subnet_id in zip(entries, subnet_ids, strict=True):
                    for p in entry["pools"]:
                        ledger.drop_pool(entry["owner"], p["id"])
                    ledger.drop_subnet(subnet_id)
        except Exception:
            log.exception(
                "a stopped import could not remove its %d unfinished subnets: "
                "ipledger check names them",
                len(subnet_ids),
            )

    @staticmethod
    def _write_subnet(ledger: Ledger, entry: dict[str, Any]) -> int:
        subnet = Subnet(allocator.parse_cidr(entry["cidr"], "subnet"))
        subnet_id = ledger.add_subnet_row(
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
            }
        )
        pool_rows = []
        for p in entry["pools"]:
            bounds = (
                invariants.subpool_bounds(p["subpool"])[1:]  # type: ignore[index]
                if p["subpool"]
                else (subnet.first, subnet.last)
            )
            pool_rows.append(
                {
                    "owner": entry["owner"],
                    "id": p["id"],
                    "subnet_id": subnet_id,
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
        ledger.insert_rows(pools, pool_rows)
        return subnet_id

    def _import_contents(self, entry: dict[str, Any], subnet_id: int) -> int:
        """A claimed subnet's leases, parked addresses and reservations; how many leases."""

        def address(text: str) -> bytes:
            return pack(int(allocator.parse_address(text)))

        lease_rows = [
            {
                **lease,
                "subnet_id": subnet_id,
                "address": address(lease["address"]),
                "created_at": datetime.fromisoformat(lease["created_at"]),
                "cni_attachment": lease.get("cni_attachment"),
                "pod": lease.get("pod"),
            }
            for lease in entry["leases"]
        ]
        self._insert_batches(leases, lease_rows)
        self._insert_batches(
            parked,
            [
                {
                    **p,
                    "subnet_id": subnet_id,
                    "address": address(p["address"]),
                    "until": float(p["until"]),
                }
                for p in entry["parked"]
            ],
        )
        self._insert_batches(
            reservations,
            [
                {
                    "subnet_id": subnet_id,
                    "first": address(r["first"]),
                    "last": address(r["last"]),
                    "label": r["label"],
                    "created_at": datetime.fromisoformat(r["created_at"]),
                }
                for r in entry["reservations"]
            ],
        )
        return len(lease_rows)


@dataclass(frozen=True)
class ImportPlan:
    """An export checked on its own, with each subnet's owner in the importing ledger."""

    shared: bool
    owner: str
    subnets: list[dict[str, Any]]
    facts: list[invariants.SubnetFacts]
    history: list[dict[str, Any]]


def plan_import(data: Any, shared: bool, host_id: str) -> ImportPlan:
    """An export checked whole before anything of it is written: its shape
    (:func:`driver.domain.export_format.validate`), then every invariant of a ledger
    (:mod:`driver.domain.invariants`) on the file alone. Needs no ledger: ``shared`` says
    whether the importing one is a server database (where hosts' own pools stay theirs) and
    ``host_id`` which host imports. InvalidRequest names the first problem and its rule."""
    export_format.validate(data)
    plans = Plans.of(shared, host_id)
    owner = plans.own

    def owner_for(exported: str, space: str) -> str:
        """An exported owner in the importing ledger: ``local`` is whichever host imports it
        (the swarm, for a global pool in a shared ledger), and an SQLite ledger has one host,
        which every pool not shared becomes."""
        if exported == LOCAL_OWNER or (not shared and exported != SHARED):
            return plans.of_space(space)
        return exported

    entries = [
        {**e, "owner": owner_for(e.get("owner") or LOCAL_OWNER, str(e.get("space")))}
        for e in data["subnets"]
    ]
    facts = [
        export_format.subnet_facts(e, f"subnets[{i}]", e["owner"]) for i, e in enumerate(entries)
    ]
    problems = [p for f in facts for p in invariants.subnet_problems(f)]
    problems += invariants.plan_problems([f.placed() for f in facts])
    refuse(problems)
    return ImportPlan(shared, owner, entries, facts, data["history"])


def refuse(problems: list[invariants.Problem]) -> None:
    """Refuse an import that breaks an invariant: the first problem, and how many there are."""
    if problems:
        others = len(problems) - 1
        more = f" (and {others} more problem{'s' if others > 1 else ''})" if others else ""
        raise InvalidRequest(f"export refused: {problems[0]}{more}")


def _placed_in_ledger(inventory: Inventory, spaces: list[str]) -> list[invariants.Placed]:
    """The subnets the ledger holds in these address spaces, for the overlap checks."""
    pool_ids: dict[int, list[str]] = {}
    for p in inventory.pools():
        pool_ids.setdefault(p.subnet_id, []).append(p.id)
    return [
        invariants.Placed(
            s.owner,
            s.space,
            s.subnet,
            f"{s.space} {s.subnet.cidr} (in the ledger)",
            " (in the ledger)",
            tuple(pool_ids.get(s.id, ())),
            fresh=False,
        )
        for s in inventory.subnets()
        if s.space in spaces
    ]


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
                "pod": r.pod,
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
