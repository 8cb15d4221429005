"""Storage for operators: the ledger read whole, counted, exported and imported.

Nothing here is on Docker's request path; queries are built inline. Addresses come back as ints,
as in :mod:`driver.storage.ledger`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select, text

from driver.domain.addresses import Range, Subnet
from driver.domain.hosts import Host
from driver.domain.pools import CNI_NETWORK_OPTION, LeaseKind
from driver.storage.ledger import HOST_COLUMNS, POOL_QUERY, host_record, pool_record
from driver.storage.models import (
    attachments,
    free_ranges,
    history,
    hosts,
    leases,
    parked,
    pools,
    reservations,
    served,
)
from driver.storage.models import subnets as subnets_table
from driver.storage.rows import PoolRecord, pack, parsed_subnet, unpack
from driver.storage.upkeep import FindingRows, ServedRows


@dataclass(frozen=True)
class SubnetRow:
    owner: str
    id: int
    space: str
    subnet: Subnet
    refs: int
    cursor: int | None
    reservations: int
    created_at: datetime


@dataclass(frozen=True)
class Usage:
    """The addresses of one range, by state; they add up to ``size``."""

    size: int
    leased: int
    reserved: int
    parked: int

    @property
    def free(self) -> int:
        return self.size - self.leased - self.reserved - self.parked

    @property
    def utilisation(self) -> float:
        return 1 - self.free / self.size if self.size else 1.0


@dataclass(frozen=True)
class LeaseRow:
    address: int
    pool_id: str
    kind: LeaseKind
    mac: str | None
    name: str | None
    host_id: str | None
    created_at: datetime
    cni_attachment: str | None = None
    pod: str | None = None  # a CNI lease's pod, "NAMESPACE/NAME", when the runtime named one
    dns_name: str | None = None  # the full name it is published under in DNS


@dataclass(frozen=True)
class ParkedRow:
    address: int
    pool_id: str
    mac: str | None
    name: str | None
    until: float


@dataclass(frozen=True)
class ReservationRow:
    first: int
    last: int
    label: str
    created_at: datetime


@dataclass(frozen=True)
class HistoryEvent:
    at: datetime
    host_id: str
    action: str
    pool_id: str
    address: str
    kind: str | None
    mac: str | None
    name: str | None
    detail: str | None


@dataclass(frozen=True)
class FindingRow:
    """What the last ``ipledger gc`` found and left alone."""

    what: str
    pool_id: str
    address: str | None
    detail: str


def _event(row: Any) -> HistoryEvent:
    return HistoryEvent(
        row.at,
        row.host_id,
        row.action,
        row.pool_id,
        row.address,
        row.kind,
        row.mac,
        row.name,
        row.detail,
    )


def _subnet_row(row: Any) -> SubnetRow:
    return SubnetRow(
        row.owner,
        row.id,
        row.space,
        parsed_subnet(row.cidr),
        row.refs,
        unpack(row.cursor) if row.cursor is not None else None,
        row.reservations,
        row.created_at,
    )


def allocatable_in(subnet: Subnet, lo: int, hi: int) -> Range | None:
    """The addresses of ``[lo, hi]`` that the subnet may hand out at all."""
    bounds = subnet.allocatable()
    if bounds is None:
        return None
    first, last = max(lo, bounds[0]), min(hi, bounds[1])
    return (first, last) if first <= last else None


class Inventory:
    """Operator queries over one connection, inside a
    :class:`driver.storage.store.Store` transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    # --- reading -------------------------------------------------------------------------

    def subnets(self) -> list[SubnetRow]:
        rows = self.connection.execute(
            select(subnets_table).order_by(
                subnets_table.c.space, subnets_table.c.version, subnets_table.c.first
            )
        )
        return [_subnet_row(r) for r in rows]

    def pools(self, pool_id: str | None = None, owner: str | None = None) -> list[PoolRecord]:
        query = POOL_QUERY.order_by(
            pools.c.space, subnets_table.c.version, subnets_table.c.first, pools.c.id
        )
        if pool_id is not None:
            query = query.where(pools.c.id == pool_id)
        if owner is not None:
            query = query.where(pools.c.owner == owner)
        return [pool_record(row) for row in self.connection.execute(query)]

    def usage(
        self, subnet_id: int, subnet: Subnet, lo: int, hi: int, at: float | None = None
    ) -> Usage:
        """Counts over ``[lo, hi]`` of one subnet: leased, reserved (not leased), parked, free.
        Given the clock ``at``, an address parked until then or before is free (as the next
        allocation makes it)."""
        bounds = allocatable_in(subnet, lo, hi)
        if bounds is None:
            return Usage(0, 0, 0, 0)
        first, last = bounds
        leased = self._count(leases, leases.c.address, subnet_id, first, last)
        parked_count = self._count(
            parked,
            parked.c.address,
            subnet_id,
            first,
            last,
            *([parked.c.until > at] if at is not None else []),
        )
        reserved = 0
        for r_first, r_last, _label in self.reservations(subnet_id):
            a, b = max(first, r_first), min(last, r_last)
            if a <= b:
                reserved += b - a + 1 - self._count(leases, leases.c.address, subnet_id, a, b)
        return Usage(last - first + 1, leased, reserved, parked_count)

    def _count(
        self, table: Any, column: Any, subnet_id: int, first: int, last: int, *more: Any
    ) -> int:
        return int(
            self.connection.execute(
                select(func.count())
                .select_from(table)
                .where(
                    table.c.subnet_id == subnet_id,
                    column >= pack(first),
                    column <= pack(last),
                    *more,
                )
            ).scalar_one()
        )

    def leases(
        self, subnet_id: int, within: Range | None = None, limit: int | None = None
    ) -> Iterator[LeaseRow]:
        """The subnet's leases in address order; only those ``within`` bounds, at most
        ``limit`` of them, when given."""
        query = select(leases).where(leases.c.subnet_id == subnet_id).order_by(leases.c.address)
        if within is not None:
            query = query.where(leases.c.address.between(pack(within[0]), pack(within[1])))
        rows = self.connection.execute(query.limit(limit))
        for row in rows:
            yield LeaseRow(
                unpack(row.address),
                row.pool_id,
                LeaseKind(row.kind),
                row.mac,
                row.name,
                row.host_id,
                row.created_at,
                row.cni_attachment,
                row.pod,
                row.dns_name,
            )

    def parked(
        self, subnet_id: int, within: Range | None = None, at: float | None = None
    ) -> list[ParkedRow]:
        """The subnet's parked addresses; given the clock ``at``, only those still parked then
        (one parked until ``at`` or before is free, as the next allocation makes it)."""
        query = select(parked).where(parked.c.subnet_id == subnet_id).order_by(parked.c.address)
        if at is not None:
            query = query.where(parked.c.until > at)
        if within is not None:
            query = query.where(parked.c.address.between(pack(within[0]), pack(within[1])))
        rows = self.connection.execute(query)
        return [
            ParkedRow(unpack(row.address), row.pool_id, row.mac, row.name, row.until)
            for row in rows
        ]

    def reservations(self, subnet_id: int) -> list[tuple[int, int, str]]:
        """(first, last, label) of each reservation, in address order."""
        return [(r.first, r.last, r.label) for r in self.reservation_rows(subnet_id)]

    def reservation_rows(self, subnet_id: int) -> list[ReservationRow]:
        rows = self.connection.execute(
            select(reservations)
            .where(reservations.c.subnet_id == subnet_id)
            .order_by(reservations.c.first)
        )
        return [
            ReservationRow(unpack(r.first), unpack(r.last), r.label, r.created_at) for r in rows
        ]

    def free_ranges(self, subnet_id: int) -> list[Range]:
        rows = self.connection.execute(
            select(free_ranges.c.first, free_ranges.c.last)
            .where(free_ranges.c.subnet_id == subnet_id)
            .order_by(free_ranges.c.first)
        )
        return [(unpack(r.first), unpack(r.last)) for r in rows]

    def subnet_containing(
        self, owner: str, space: str, version: int, address: int
    ) -> SubnetRow | None:
        row = self.connection.execute(
            select(subnets_table).where(
                subnets_table.c.owner == owner,
                subnets_table.c.space == space,
                subnets_table.c.version == version,
                subnets_table.c.first <= pack(address),
                subnets_table.c.last >= pack(address),
            )
        ).first()
        return _subnet_row(row) if row is not None else None

    def count_subnets(self) -> int:
        return int(
            self.connection.execute(select(func.count()).select_from(subnets_table)).scalar_one()
        )

    def holds_owner(self, owner: str) -> bool:
        return (
            self.connection.execute(
                select(func.count())
                .select_from(subnets_table)
                .where(subnets_table.c.owner == owner)
            ).scalar_one()
            > 0
        )

    def sqlite_problems(self) -> list[str]:
        """SQLite's own integrity and foreign key checks; nothing on other databases."""
        if self.connection.dialect.name != "sqlite":
            return []
        problems = [
            row[0]
            for row in self.connection.execute(text("PRAGMA integrity_check"))
            if row[0] != "ok"
        ]
        problems += [
            f"foreign key: {tuple(row)}"
            for row in self.connection.execute(text("PRAGMA foreign_key_check"))
        ]
        return problems

    def taken_between(self, subnet_id: int, first: int, last: int) -> list[Range]:
        """Leased and parked addresses of ``[first, last]``, as sorted one-address ranges."""
        found: list[int] = []
        for table in (leases, parked):
            found += [
                unpack(r.address)
                for r in self.connection.execute(
                    select(table.c.address).where(
                        table.c.subnet_id == subnet_id,
                        table.c.address >= pack(first),
                        table.c.address <= pack(last),
                    )
                )
            ]
        return [(a, a) for a in sorted(found)]


class Journal:
    """The history of changes and what the last ``ipledger gc`` found, read."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def history(
        self, *, address: str | None = None, pool_id: str | None = None, limit: int = 50
    ) -> list[HistoryEvent]:
        query = select(history).order_by(history.c.id.desc()).limit(limit)
        if address is not None:
            query = query.where(history.c.address == address)
        if pool_id is not None:
            query = query.where(history.c.pool_id == pool_id)
        return [_event(row) for row in reversed(self.connection.execute(query).all())]

    def all_history(self) -> list[HistoryEvent]:
        return [
            _event(row) for row in self.connection.execute(select(history).order_by(history.c.id))
        ]

    def activity(self, pool_id: str, since: datetime) -> list[tuple[datetime, str, int]]:
        """(hour, action, how many) of the pool's history since ``since``, by the hour."""
        if self.connection.dialect.name == "postgresql":
            hour: Any = func.date_trunc("hour", history.c.at)
        else:
            hour = func.strftime("%Y-%m-%d %H:00:00", history.c.at)
        rows = self.connection.execute(
            select(hour, history.c.action, func.count())
            .where(history.c.pool_id == pool_id, history.c.at >= since)
            .group_by(hour, history.c.action)
        )
        return [
            (at if isinstance(at, datetime) else datetime.fromisoformat(at), action, count)
            for at, action, count in rows
        ]

    def findings(self) -> list[FindingRow]:
        return [FindingRow(*kept) for kept in FindingRows(self.connection).kept()]

    def served_drivers(self, host_id: str) -> list[str]:
        """The driver names ``ipledger serve`` on ``host_id`` has served the ledger under."""
        return ServedRows(self.connection).drivers(host_id)


class Roster:
    """The hosts of the ledger, and what each serves and holds, read."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def hosts(self) -> list[Host]:
        rows = self.connection.execute(select(*HOST_COLUMNS).order_by(hosts.c.name, hosts.c.id))
        return [host_record(row) for row in rows]

    def names(self) -> dict[str, str]:
        """Host id -> human name, for views that show a host id."""
        return {
            host_id: name
            for host_id, name in self.connection.execute(select(hosts.c.id, hosts.c.name))
        }

    def lease_counts(self) -> dict[str, int]:
        """How many leases each host made (a lease records the host that asked for it)."""
        rows = self.connection.execute(
            select(leases.c.host_id, func.count())
            .where(leases.c.host_id.is_not(None))
            .group_by(leases.c.host_id)
        )
        return {host_id: int(n) for host_id, n in rows}

    def drivers(self) -> dict[str, list[str]]:
        """The driver names each host's ``ipledger serve`` served the ledger under."""
        found: dict[str, list[str]] = {}
        for host_id, driver in self.connection.execute(
            select(served.c.host_id, served.c.driver).order_by(served.c.driver)
        ):
            found.setdefault(host_id, []).append(driver)
        return found

    def cni_networks(self) -> dict[str, list[str]]:
        """The CNI networks each host serves: those of the pools it made or attached to."""
        cni_pools = select(pools.c.id, pools.c.host_id, pools.c.options).where(
            pools.c.options.contains(f'"{CNI_NETWORK_OPTION}"', autoescape=True)
        )
        users: dict[str, set[str]] = {}
        for pool_id, host_id in self.connection.execute(
            select(attachments.c.pool_id, attachments.c.host_id)
        ):
            users.setdefault(pool_id, set()).add(host_id)
        found: dict[str, set[str]] = {}
        for pool_id, host_id, options in self.connection.execute(cni_pools):
            name = json.loads(options).get(CNI_NETWORK_OPTION)
            if isinstance(name, str):
                for user in users.get(pool_id, set()) | ({host_id} if host_id else set()):
                    found.setdefault(user, set()).add(name)
        return {host_id: sorted(names) for host_id, names in found.items()}
