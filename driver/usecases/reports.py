"""What the ledger holds, read in read-only transactions: pools, subnets, addresses,
history, and what gc left alone."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from driver.domain import addresses as allocator
from driver.domain.addresses import Subnet
from driver.domain.errors import InvalidRequest
from driver.domain.moments import as_utc
from driver.domain.pools import CNI_NETWORK_OPTION
from driver.domain.reconcile import LedgerLease, LedgerPool
from driver.domain.status import FillLevel, fill_level
from driver.storage.inventory import (
    FindingRow,
    HistoryEvent,
    Inventory,
    Journal,
    LeaseRow,
    Usage,
)
from driver.storage.rows import PoolRecord
from driver.storage.store import retrying
from driver.usecases.operator import OnLedger, show, show_range


@dataclass(frozen=True)
class PoolReport:
    """A pool and how its range is used."""

    pool: PoolRecord
    usage: Usage

    @property
    def level(self) -> FillLevel:
        """How full, by the thresholds of the example alerts."""
        return fill_level(self.usage.size, self.usage.free)


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
    until: datetime | None = None  # a parked address's end of quarantine or hold
    attachment: str | None = None  # a CNI lease's NETWORK/CONTAINER-ID/IFNAME
    pod: str | None = None  # a CNI lease's pod, NAMESPACE/NAME, when the runtime named one


class Reports(OnLedger):
    """What the ledger holds: pools, subnets, addresses, history, what gc left alone."""

    @retrying
    def pools(self) -> list[PoolReport]:
        with self.store.reading() as ledger:
            inventory, at = Inventory(ledger.connection), ledger.clock()
            return [
                PoolReport(
                    p, inventory.usage(p.subnet_id, p.subnet, p.range_first, p.range_last, at)
                )
                for p in inventory.pools()
            ]

    @retrying
    def subnets(self) -> list[tuple[str, Subnet, int, Usage]]:
        """(space, subnet, pools sharing it, usage over the whole subnet) for every subnet."""
        with self.store.reading() as ledger:
            inventory, at = Inventory(ledger.connection), ledger.clock()
            return [
                (
                    s.space,
                    s.subnet,
                    s.refs,
                    inventory.usage(s.id, s.subnet, s.subnet.first, s.subnet.last, at),
                )
                for s in inventory.subnets()
            ]

    @retrying
    def count_subnets(self) -> int:
        """How many subnets the ledger holds (what export and check go through)."""
        with self.store.reading() as ledger:
            return Inventory(ledger.connection).count_subnets()

    def resolve_pool(
        self,
        wanted: str,
        network_pools: list[str] | None = None,
        docker_unreachable: str | None = None,
    ) -> str:
        """The PoolID an operator means by ``wanted``: a PoolID, a subnet, or (given its
        ``network_pools``) a Docker network; several candidates are listed to choose from.
        ``docker_unreachable`` says why Docker could not be asked for a network of that name."""
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            if inventory.pools(wanted, self._owner_of(wanted)):
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
                    if cidr is not None and p.subnet.cidr == cidr and p.owner in self.plans.seen
                )
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            raise InvalidRequest(
                f"{wanted} is held by several pools: give one of " + ", ".join(candidates)
            )
        if docker_unreachable is not None:
            raise InvalidRequest(
                f"no pool {wanted} in the ledger, and Docker could not be reached to resolve the "
                f"network name {wanted} ({docker_unreachable}); give a PoolID or a subnet "
                "('ipledger pools' lists the pools)"
            )
        raise InvalidRequest(
            f"no pool {wanted}: give a PoolID, a subnet or a Docker network "
            "name ('ipledger pools' lists the pools)"
        )

    @retrying
    def addresses(self, pool_id: str) -> list[AddressLine]:
        """What a pool's subnet holds: leases, reservations and parked addresses, in order."""
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            pool = self._pool_in(inventory, pool_id)
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
                            _lease_detail(row, pool_id),
                            row.host_id,
                            attachment=row.cni_attachment,
                            pod=row.pod,
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
            # an address whose time ran out is free, though it stays parked until an
            # allocation in the pool frees it
            for p in inventory.parked(pool.subnet_id, at=ledger.clock()):
                state = "held" if pool.policy.hold_s and (p.mac or p.name) else "quarantined"
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
                            None,
                            None,
                            datetime.fromtimestamp(p.until, UTC),
                        ),
                    )
                )
            return [line for _, line in sorted(lines, key=lambda item: item[0])]

    @retrying
    def history(
        self, *, address: str | None = None, pool_id: str | None = None, limit: int = 50
    ) -> list[HistoryEvent]:
        if address is not None:
            address = str(allocator.parse_address(address))
        with self.store.reading() as ledger:
            return Journal(ledger.connection).history(address=address, pool_id=pool_id, limit=limit)

    @retrying
    def findings(self) -> list[FindingRow]:
        with self.store.reading() as ledger:
            return Journal(ledger.connection).findings()

    @retrying
    def served_drivers(self) -> list[str]:
        """The driver names this host's ``ipledger serve`` has served the ledger under."""
        with self.store.reading() as ledger:
            return Journal(ledger.connection).served_drivers(self.host_id)

    @retrying
    def gc_inputs(self) -> tuple[list[LedgerPool], list[LedgerLease]]:
        """This host's, the shared and the swarm's pools with their leases, as
        :func:`driver.domain.reconcile.reconcile` compares them (other hosts' pools may have the
        same PoolIDs)."""
        with self.store.reading() as ledger:
            inventory = Inventory(ledger.connection)
            all_pools = [p for p in inventory.pools() if p.owner in self.plans.seen]
            found = [
                LedgerPool(
                    p.id,
                    p.space,
                    p.owner,
                    as_utc(p.created_at),
                    CNI_NETWORK_OPTION in json.loads(p.options),
                )
                for p in all_pools
            ]
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


def _lease_detail(row: LeaseRow, pool_id: str) -> str | None:
    """A CNI lease's attachment, and the pool of a lease another pool of the subnet made."""
    parts = [f"CNI {row.cni_attachment}"] if row.cni_attachment else []
    if row.pool_id != pool_id:
        parts.append(row.pool_id)
    return ", ".join(parts) or None
