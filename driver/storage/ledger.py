"""The statements of one transaction (:class:`Ledger`), built once; the free ranges and held
subnets of the domain's protocols, as rows."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import netaddr
from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)

from driver.domain.addresses import Range, Subnet
from driver.domain.errors import HostRetired
from driver.domain.history import HistoryAction
from driver.domain.hosts import STALE_AFTER_S, Beat, Host, HostState
from driver.domain.moments import as_utc
from driver.domain.pools import SHARED, SWARM, Holding, Lease, LeaseKind, Reuse, ReusePolicy
from driver.storage.dns_outbox import DnsStatements
from driver.storage.models import (
    attachments,
    free_ranges,
    history,
    hosts,
    leases,
    parked,
    pools,
    reservations,
    subnets,
)
from driver.storage.prepared import Prepared
from driver.storage.rows import PoolRecord, SubnetRecord, now, pack, parsed_subnet, unpack
from driver.storage.upkeep import HistoryRows

# Every column of a pool, with its subnet's state: read by calls and by reports alike.
POOL_QUERY = select(
    pools.c.owner,
    pools.c.id,
    pools.c.subnet_id,
    pools.c.space,
    subnets.c.cidr,
    pools.c.subpool,
    pools.c.range_first,
    pools.c.range_last,
    subnets.c.cursor,
    subnets.c.refs,
    subnets.c.reservations,
    pools.c.reuse,
    pools.c.quarantine_s,
    pools.c.hold_s,
    pools.c.options,
    pools.c.host_id,
    pools.c.created_at,
).join(subnets, subnets.c.id == pools.c.subnet_id)


def pool_record(row: Sequence[Any]) -> PoolRecord:
    """A row of :data:`POOL_QUERY` as a :class:`PoolRecord`."""
    (owner, pool_id, subnet_id, space, cidr, subpool, first, last, cursor, refs) = row[:10]
    (reservations_, reuse, quarantine_s, hold_s, options, host_id, created_at) = row[10:]
    return PoolRecord(
        owner=owner,
        id=pool_id,
        subnet_id=subnet_id,
        space=space,
        subnet=parsed_subnet(cidr),
        subpool=subpool,
        range_first=unpack(first),
        range_last=unpack(last),
        cursor=unpack(cursor) if cursor is not None else None,
        refs=refs,
        reservations=reservations_,
        policy=ReusePolicy(Reuse(reuse), quarantine_s, hold_s),
        options=options,
        host_id=host_id,
        created_at=as_utc(created_at),
    )


_POOL_QUERY = POOL_QUERY.where(
    pools.c.owner == bindparam("owner"), pools.c.id == bindparam("pool_id")
)
_POOL = Prepared(_POOL_QUERY)
# Serialises allocations in one subnet on PostgreSQL; SQLite holds the database lock anyway.
_POOL_FOR_UPDATE = Prepared(_POOL_QUERY.with_for_update(of=subnets))
_GATEWAY_OF = Prepared(
    select(leases.c.address)
    .where(
        leases.c.pool_id == bindparam("pool_id"),
        leases.c.kind == LeaseKind.GATEWAY.value,
        leases.c.subnet_id == bindparam("subnet_id"),
    )
    .limit(1)
)
_LEASE = Prepared(
    select(
        leases.c.kind, leases.c.mac, leases.c.name, leases.c.dns_name, leases.c.cni_attachment
    ).where(leases.c.subnet_id == bindparam("subnet_id"), leases.c.address == bindparam("address"))
)
# a new lease is never restoring: the column's default
_ADD_LEASE = Prepared(
    insert(leases).values({c.name: bindparam(c.name) for c in leases.c if c.name != "restoring"})
)
_CNI_LEASES = Prepared(
    select(leases.c.pool_id, leases.c.address).where(
        leases.c.cni_attachment == bindparam("attachment")
    )
)
_DROP_LEASE = Prepared(
    delete(leases)
    .where(leases.c.subnet_id == bindparam("subnet_id"), leases.c.address == bindparam("address"))
    .returning(leases.c.kind, leases.c.mac, leases.c.name, leases.c.dns_name)
)
_DROP_POOL_LEASE = Prepared(
    delete(leases)
    .where(
        leases.c.subnet_id == bindparam("subnet_id"),
        leases.c.address == bindparam("address"),
        leases.c.pool_id == bindparam("pool_id"),
    )
    .returning(leases.c.kind, leases.c.mac, leases.c.name, leases.c.dns_name)
)
_LEASE_POOL = Prepared(
    select(leases.c.pool_id).where(
        leases.c.subnet_id == bindparam("subnet_id"), leases.c.address == bindparam("address")
    )
)
_RESERVATION = Prepared(
    select(reservations.c.first, reservations.c.last, reservations.c.label)
    .where(
        reservations.c.subnet_id == bindparam("subnet_id"),
        reservations.c.first <= bindparam("address"),
    )
    .order_by(reservations.c.first.desc())
    .limit(1)
)
_DATABASE_CLOCK = select(func.extract("epoch", func.now()))
_PARK = Prepared(insert(parked).values({c.name: bindparam(c.name) for c in parked.c}))
_UNPARK = Prepared(
    delete(parked).where(
        parked.c.subnet_id == bindparam("subnet_id"), parked.c.address == bindparam("address")
    )
)
_PARKED_EXPIRED = Prepared(
    select(parked.c.address)
    .where(parked.c.subnet_id == bindparam("subnet_id"), parked.c.until <= bindparam("now"))
    .order_by(parked.c.until)
    .limit(bindparam("limit"))
)
_PARKED_SOONEST = Prepared(
    select(parked.c.address)
    .where(
        parked.c.subnet_id == bindparam("subnet_id"),
        parked.c.address >= bindparam("lo"),
        parked.c.address <= bindparam("hi"),
    )
    .order_by(parked.c.until)
    .limit(1)
)
# The address parked last for an endpoint known by its MAC, or by its name.
_PARKED_FOR_MAC, _PARKED_FOR_NAME = (
    Prepared(
        select(parked.c.address, parked.c.until)
        .where(
            parked.c.subnet_id == bindparam("subnet_id"),
            parked.c.pool_id == bindparam("pool_id"),
            column == bindparam("identity"),
        )
        .order_by(parked.c.until.desc())
        .limit(1)
    )
    for column in (parked.c.mac, parked.c.name)
)
_SET_CURSOR = Prepared(
    update(subnets).where(subnets.c.id == bindparam("subnet_id")).values(cursor=bindparam("cursor"))
)
_FREE = select(free_ranges.c.first, free_ranges.c.last).where(
    free_ranges.c.subnet_id == bindparam("subnet_id")
)
_FREE_ENDING_AT_OR_AFTER = Prepared(
    _FREE.where(free_ranges.c.last >= bindparam("address")).order_by(free_ranges.c.last).limit(1)
)
_FREE_ENDING_AT = Prepared(_FREE.where(free_ranges.c.last == bindparam("address")))
_FREE_STARTING_AT = Prepared(_FREE.where(free_ranges.c.first == bindparam("address")))
_FREE_ADD = Prepared(insert(free_ranges).values({c.name: bindparam(c.name) for c in free_ranges.c}))
_FREE_REMOVE = Prepared(
    delete(free_ranges).where(
        free_ranges.c.subnet_id == bindparam("subnet_id"), free_ranges.c.first == bindparam("old")
    )
)
_FREE_REPLACE = Prepared(
    update(free_ranges)
    .where(
        free_ranges.c.subnet_id == bindparam("b_subnet_id"),
        free_ranges.c.first == bindparam("old"),
    )
    .values(first=bindparam("new_first"), last=bindparam("new_last"))
)
_HELD = select(subnets.c.id, subnets.c.first, subnets.c.last).where(
    subnets.c.owner == bindparam("owner"),
    subnets.c.space == bindparam("space"),
    subnets.c.version == bindparam("version"),
)
_HELD_BEFORE = Prepared(
    _HELD.where(subnets.c.first <= bindparam("first")).order_by(subnets.c.first.desc()).limit(1)
)
_HELD_AFTER = Prepared(
    _HELD.where(subnets.c.first > bindparam("first"), subnets.c.first <= bindparam("last"))
    .order_by(subnets.c.first)
    .limit(1)
)


class _Statements:
    """Statements on the connection of one transaction."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def free_ranges(self, subnet_id: int) -> FreeRangeRows:
        """The free ranges of a subnet."""
        return FreeRangeRows(self.connection, subnet_id)


class SubnetStatements(_Statements):
    """Subnets: address plans, overlaps, the reference count, the serial cursor."""

    def ping(self) -> None:
        """A read that reaches the database."""
        self.connection.execute(select(func.count()).select_from(subnets)).scalar_one()

    def lock_plans(self, space: str, own: str, *, shared_too: bool) -> None:
        """Serialise pool changes in this host's address plan and the shared plan.

        SQLite's BEGIN IMMEDIATE already holds the whole database. PostgreSQL takes
        transaction-scoped advisory locks, always in one order (the shared plan, then the
        host's), so that two hosts never wait on each other in a cycle: a change to a shared pool
        takes the shared plan exclusively, a change to a host's own pools takes it shared, since
        it must only see no shared pool appear while it checks for overlaps.
        """
        if self.connection.dialect.name != "postgresql":
            return
        lock = func.pg_advisory_xact_lock if shared_too else func.pg_advisory_xact_lock_shared
        self.connection.execute(
            select(lock(func.hashtextextended(f"ipledger:{SHARED}:{space}", 0)))
        )
        if own != SHARED:
            self.connection.execute(
                select(
                    func.pg_advisory_xact_lock(func.hashtextextended(f"ipledger:{own}:{space}", 0))
                )
            )

    def subnet_at(self, owner: str, space: str, subnet: Subnet) -> SubnetRecord | None:
        row = self.connection.execute(
            select(subnets.c.id, subnets.c.cidr, subnets.c.refs).where(
                subnets.c.owner == owner,
                subnets.c.space == space,
                subnets.c.version == subnet.version,
                subnets.c.first == pack(subnet.first),
                subnets.c.last == pack(subnet.last),
            )
        ).first()
        return SubnetRecord(row.id, row.cidr, row.refs) if row else None

    def plan_owners(self, space: str) -> tuple[str, ...]:
        """Every owner with a subnet in ``space``: each host's own plan, the shared one."""
        rows = self.connection.execute(
            select(subnets.c.owner).where(subnets.c.space == space).distinct()
        )
        return tuple(sorted(rows.scalars()))

    def held_subnets(self, owners: tuple[str, ...], space: str, version: int) -> HeldSubnets:
        """The subnets of these address plans (a host's own and the shared one, say)."""
        return HeldSubnets(self.connection, owners, space, version)

    def holder_of(self, owners: tuple[str, ...], space: str, held: Range) -> Holding:
        """A held subnet and what holds it: its pools, age and leases (the gateway's apart)."""
        row = self.connection.execute(
            select(subnets.c.id, subnets.c.cidr, subnets.c.created_at).where(
                subnets.c.owner.in_(owners),
                subnets.c.space == space,
                subnets.c.first == pack(held[0]),
                subnets.c.last == pack(held[1]),
            )
        ).first()
        if row is None:
            cidr = str(netaddr.IPRange(held[0], held[1]).cidrs()[0])
            return Holding(cidr, (), None, 0, False)
        by_kind: dict[str, int] = dict(
            self.connection.execute(
                select(leases.c.kind, func.count())
                .where(leases.c.subnet_id == row.id)
                .group_by(leases.c.kind)
            ).all()
        )
        return Holding(
            row.cidr,
            tuple(sorted(self.pools_of_subnet(row.id))),
            now() - as_utc(row.created_at),
            sum(by_kind.values()),
            bool(by_kind.get(LeaseKind.GATEWAY.value)),
        )

    def add_subnet(self, owner: str, space: str, subnet: Subnet) -> int:
        subnet_id: int = self.connection.execute(
            insert(subnets)
            .values(
                owner=owner,
                space=space,
                version=subnet.version,
                cidr=subnet.cidr,
                first=pack(subnet.first),
                last=pack(subnet.last),
                refs=1,
                cursor=None,
                created_at=now(),
            )
            .returning(subnets.c.id)
        ).scalar_one()
        allocatable = subnet.allocatable()
        if allocatable is not None:
            self.free_ranges(subnet_id).add(allocatable)
        return subnet_id

    def lock_subnet(self, subnet_id: int) -> None:
        """Hold the subnet's row until the transaction ends, as allocations do (PostgreSQL)."""
        self.connection.execute(
            select(subnets.c.id).where(subnets.c.id == subnet_id).with_for_update()
        )

    def change_refs(self, subnet_id: int, delta: int) -> None:
        self.connection.execute(
            update(subnets).where(subnets.c.id == subnet_id).values(refs=subnets.c.refs + delta)
        )

    def drop_subnet(self, subnet_id: int) -> None:
        """Drop a subnet with all its leases and free ranges (set-based, no per-row loop)."""
        for table in (leases, free_ranges, reservations, parked):
            self.connection.execute(delete(table).where(table.c.subnet_id == subnet_id))
        self.connection.execute(delete(subnets).where(subnets.c.id == subnet_id))

    def set_cursor(self, subnet_id: int, cursor: int) -> None:
        _SET_CURSOR.count(self.connection, {"subnet_id": subnet_id, "cursor": pack(cursor)})

    def pools_of_subnet(self, subnet_id: int) -> list[str]:
        return list(
            self.connection.execute(
                select(pools.c.id).where(pools.c.subnet_id == subnet_id)
            ).scalars()
        )


class PoolStatements(_Statements):
    """Pools: what Docker knows by a PoolID."""

    def pool(self, owner: str, pool_id: str, *, for_update: bool = False) -> PoolRecord | None:
        query = _POOL_FOR_UPDATE if for_update else _POOL
        row = query.first(self.connection, {"owner": owner, "pool_id": pool_id})
        return pool_record(row) if row is not None else None

    def add_pool(
        self,
        owner: str,
        pool_id: str,
        subnet_id: int,
        space: str,
        cidr: str,
        subpool: str | None,
        bounds: Range,
        options: str,
        policy: ReusePolicy,
        host_id: str | None = None,
    ) -> None:
        self.connection.execute(
            insert(pools).values(
                owner=owner,
                id=pool_id,
                subnet_id=subnet_id,
                space=space,
                cidr=cidr,
                subpool=subpool,
                range_first=pack(bounds[0]),
                range_last=pack(bounds[1]),
                options=options,
                created_at=now(),
                reuse=policy.reuse,
                quarantine_s=policy.quarantine_s,
                hold_s=policy.hold_s,
                host_id=host_id,
            )
        )

    def pools_with_options_containing(
        self, fragment: str, owners: tuple[str, ...], *, for_update: bool = False
    ) -> list[PoolRecord]:
        """The pools of these owners whose options' JSON text contains ``fragment`` (a caller
        checks the options it meant); their subnets held until the transaction ends, when
        ``for_update``."""
        query = POOL_QUERY.where(
            pools.c.owner.in_(owners), pools.c.options.contains(fragment, autoescape=True)
        ).order_by(pools.c.id)
        if for_update:
            query = query.with_for_update(of=subnets)
        return [pool_record(row) for row in self.connection.execute(query)]

    def set_pool_policy(self, owner: str, pool_id: str, options: str, policy: ReusePolicy) -> None:
        self.connection.execute(
            update(pools)
            .where(pools.c.owner == owner, pools.c.id == pool_id)
            .values(
                options=options,
                reuse=policy.reuse,
                quarantine_s=policy.quarantine_s,
                hold_s=policy.hold_s,
            )
        )

    def move_pool(
        self,
        owner: str,
        subnet_id: int,
        pool_id: str,
        new_id: str,
        subpool: str | None,
        bounds: Range,
    ) -> None:
        """Give a pool other bounds in its subnet, and the PoolID they make: its leases and
        parked addresses go with it."""
        self.connection.execute(
            update(pools)
            .where(pools.c.owner == owner, pools.c.id == pool_id)
            .values(
                id=new_id,
                subpool=subpool,
                range_first=pack(bounds[0]),
                range_last=pack(bounds[1]),
            )
        )
        for table in (leases, parked):
            self.connection.execute(
                update(table)
                .where(table.c.subnet_id == subnet_id, table.c.pool_id == pool_id)
                .values(pool_id=new_id)
            )
        if owner == SHARED:
            self.connection.execute(
                update(attachments).where(attachments.c.pool_id == pool_id).values(pool_id=new_id)
            )

    def drop_pool(self, owner: str, pool_id: str) -> None:
        self.connection.execute(delete(pools).where(pools.c.owner == owner, pools.c.id == pool_id))
        if owner == SHARED:
            self.connection.execute(delete(attachments).where(attachments.c.pool_id == pool_id))


class SharedPoolStatements(_Statements):
    """Shared pools: which hosts use them."""

    def attach(self, pool_id: str, host_id: str) -> bool:
        """Record that ``host_id`` uses the shared pool; False when it already did."""
        known = self.connection.execute(
            select(attachments.c.host_id).where(
                attachments.c.pool_id == pool_id, attachments.c.host_id == host_id
            )
        ).first()
        if known is not None:
            return False
        self.connection.execute(
            insert(attachments).values(pool_id=pool_id, host_id=host_id, attached_at=now())
        )
        return True

    def detach(self, pool_id: str, host_id: str) -> None:
        self.connection.execute(
            delete(attachments).where(
                attachments.c.pool_id == pool_id, attachments.c.host_id == host_id
            )
        )

    def shared_pools_named(self, prefix: str) -> list[str]:
        return list(
            self.connection.execute(
                select(pools.c.id).where(
                    pools.c.owner == SHARED, pools.c.id.startswith(prefix, autoescape=True)
                )
            ).scalars()
        )

    def attached_hosts(self, pool_id: str) -> list[str]:
        return list(
            self.connection.execute(
                select(attachments.c.host_id).where(attachments.c.pool_id == pool_id)
            ).scalars()
        )


class LeaseStatements(_Statements):
    """Leases, the free ranges they are taken from, and the history they write."""

    def add_lease(
        self,
        subnet_id: int,
        address: int,
        pool_id: str,
        kind: LeaseKind,
        mac: str | None,
        name: str | None,
        host_id: str | None = None,
        cni_attachment: str | None = None,
        pod: str | None = None,
        dns_name: str | None = None,
    ) -> None:
        _ADD_LEASE.count(
            self.connection,
            {
                "cni_attachment": cni_attachment,
                "pod": pod,
                "dns_name": dns_name,
                "subnet_id": subnet_id,
                "address": pack(address),
                "pool_id": pool_id,
                "kind": kind.value,
                "mac": mac,
                "name": name,
                "created_at": now(),
                "host_id": host_id,
            },
        )

    def cni_leases(self, attachment: str) -> list[tuple[str, int]]:
        """The (PoolID, address) of every lease of one CNI attachment."""
        return [
            (pool_id, unpack(address))
            for pool_id, address in _CNI_LEASES.rows(self.connection, {"attachment": attachment})
        ]

    def holds_cni_leases(self, pool_id: str) -> bool:
        found = self.connection.execute(
            select(leases.c.address)
            .where(leases.c.pool_id == pool_id, leases.c.cni_attachment.is_not(None))
            .limit(1)
        ).first()
        return found is not None

    def cni_leases_of_network(self, network: str) -> list[tuple[str, str, int]]:
        """The (attachment, PoolID, address) of every lease of one CNI network."""
        rows = self.connection.execute(
            select(leases.c.cni_attachment, leases.c.pool_id, leases.c.address).where(
                leases.c.cni_attachment.startswith(f"{network}/", autoescape=True)
            )
        )
        return [(a, pool_id, unpack(address)) for a, pool_id, address in rows]

    def cni_attachments_in(
        self, *, pool: tuple[int, str] | None = None, network: str | None = None
    ) -> tuple[int, str | None]:
        """How many CNI attachments hold leases in this pool (subnet ID, PoolID) or in this
        network, and the first of them by name."""
        where = (
            (leases.c.subnet_id == pool[0]) & (leases.c.pool_id == pool[1])
            if pool is not None
            else leases.c.cni_attachment.startswith(f"{network}/", autoescape=True)
        )
        count, first = self.connection.execute(
            select(
                func.count(leases.c.cni_attachment.distinct()), func.min(leases.c.cni_attachment)
            ).where(where, leases.c.cni_attachment.is_not(None))
        ).one()
        return int(count), first

    def cni_leases_outside(
        self, subnet_id: int, pool_id: str, first: int, last: int
    ) -> tuple[int, tuple[str, int]]:
        """How many CNI leases of the pool are outside ``first``-``last``, and the first of
        them by address (attachment, address)."""
        outside = (
            leases.c.subnet_id == subnet_id,
            leases.c.pool_id == pool_id,
            leases.c.cni_attachment.is_not(None),
            (leases.c.address < pack(first)) | (leases.c.address > pack(last)),
        )
        count = self.connection.execute(
            select(func.count()).select_from(leases).where(*outside)
        ).scalar_one()
        row = self.connection.execute(
            select(leases.c.cni_attachment, leases.c.address)
            .where(*outside)
            .order_by(leases.c.address)
            .limit(1)
        ).first()
        return int(count), ((row[0], unpack(row[1])) if row else ("", 0))

    def last_allocation(self, pool_ids: Sequence[str], kind: LeaseKind) -> datetime | None:
        """When the history last recorded an allocation of ``kind`` in these pools."""
        at = self.connection.execute(
            select(func.max(history.c.at)).where(
                history.c.action == HistoryAction.ALLOCATE.value,
                history.c.kind == kind.value,
                history.c.pool_id.in_(pool_ids),
            )
        ).scalar()
        return as_utc(at) if at is not None else None

    def drop_lease(self, subnet_id: int, address: int) -> Lease | None:
        """Delete a lease and say what it was; None when there was none."""
        row = _DROP_LEASE.first(self.connection, {"subnet_id": subnet_id, "address": pack(address)})
        return _lease(row) if row else None

    def drop_pool_lease(self, subnet_id: int, address: int, pool_id: str) -> Lease | None:
        """Delete a lease that ``pool_id`` holds and say what it was; None when it holds none
        there (the address may be free, or leased through another pool of the subnet)."""
        row = _DROP_POOL_LEASE.first(
            self.connection, {"subnet_id": subnet_id, "address": pack(address), "pool_id": pool_id}
        )
        return _lease(row) if row else None

    def lease_pool(self, subnet_id: int, address: int) -> str | None:
        """The pool an address is leased through; None when it is not leased."""
        row = _LEASE_POOL.first(self.connection, {"subnet_id": subnet_id, "address": pack(address)})
        return str(row[0]) if row else None

    def lease_pod(self, subnet_id: int, address: int) -> str | None:
        """The pod a lease records (a CNI lease the runtime named one for); None when none."""
        pod = self.connection.execute(
            select(leases.c.pod).where(
                leases.c.subnet_id == subnet_id, leases.c.address == pack(address)
            )
        ).scalar()
        return str(pod) if pod is not None else None

    def mark_restoring(self, subnet_id: int, pool_id: str) -> int:
        """Every lease of a swarm pool awaits its new leader's request again; how many."""
        return self.connection.execute(
            update(leases)
            .where(leases.c.subnet_id == subnet_id, leases.c.pool_id == pool_id)
            .values(restoring=True)
        ).rowcount

    def claim_restoring(self, subnet_id: int, address: int, pool_id: str) -> bool:
        """Whether ``address`` was a lease of ``pool_id`` awaiting its new leader's request,
        which it no longer awaits: one request is answered with it, never a second."""
        done = self.connection.execute(
            update(leases)
            .where(
                leases.c.subnet_id == subnet_id,
                leases.c.address == pack(address),
                leases.c.pool_id == pool_id,
                leases.c.restoring.is_(True),
            )
            .values(restoring=False)
        )
        return done.rowcount == 1

    def lease_created_at(self, subnet_id: int, address: int) -> datetime | None:
        created = self.connection.execute(
            select(leases.c.created_at).where(
                leases.c.subnet_id == subnet_id, leases.c.address == pack(address)
            )
        ).scalar()
        return as_utc(created) if created is not None else None

    def write_history(
        self,
        host_id: str,
        action: HistoryAction,
        pool_id: str,
        address: str,
        lease: Lease | None = None,
        detail: str | None = None,
    ) -> None:
        """One line of the audit history, in this transaction."""
        HistoryRows(self.connection).write(host_id, action, pool_id, address, lease, detail)


class ParkedStatements(_Statements):
    """Reservations, parked addresses and the clock their deadlines follow."""

    def clock(self) -> float:
        """Now, in seconds since the epoch, for quarantine and hold deadlines: the database's
        clock on a shared ledger, where every host must agree on when an address is due; this
        host's on SQLite, which only one host uses."""
        if self.connection.dialect.name == "postgresql":
            return float(self.connection.execute(_DATABASE_CLOCK).scalar_one())
        return time.time()

    def reservation_at(self, subnet_id: int, address: int) -> tuple[Range, str] | None:
        """The reservation that covers ``address``, with its label."""
        row = _RESERVATION.first(
            self.connection, {"subnet_id": subnet_id, "address": pack(address)}
        )
        if row is None or unpack(row[1]) < address:
            return None
        return (unpack(row[0]), unpack(row[1])), row[2]

    def park(self, subnet_id: int, address: int, pool_id: str, lease: Lease, until: float) -> None:
        _PARK.count(
            self.connection,
            {
                "subnet_id": subnet_id,
                "address": pack(address),
                "pool_id": pool_id,
                "mac": lease.mac,
                "name": lease.name,
                "until": until,
            },
        )

    def unpark(self, subnet_id: int, address: int) -> bool:
        return bool(
            _UNPARK.count(self.connection, {"subnet_id": subnet_id, "address": pack(address)})
        )

    def expired_parked(self, subnet_id: int, at: float, limit: int) -> list[int]:
        rows = _PARKED_EXPIRED.rows(
            self.connection, {"subnet_id": subnet_id, "now": at, "limit": limit}
        )
        return [unpack(address) for (address,) in rows]

    def soonest_parked(self, subnet_id: int, lo: int, hi: int) -> int | None:
        """The parked address in ``[lo, hi]`` that would be freed first."""
        row = _PARKED_SOONEST.first(
            self.connection, {"subnet_id": subnet_id, "lo": pack(lo), "hi": pack(hi)}
        )
        return unpack(row[0]) if row else None

    def parked_for(
        self, subnet_id: int, pool_id: str, mac: str | None, name: str | None, at: float
    ) -> int | None:
        """The address held for the endpoint with this MAC (or else this name), if unexpired."""
        for query, identity in ((_PARKED_FOR_MAC, mac), (_PARKED_FOR_NAME, name)):
            if not identity:
                continue
            row = query.first(
                self.connection, {"subnet_id": subnet_id, "pool_id": pool_id, "identity": identity}
            )
            if row is not None and row[1] > at:
                return unpack(row[0])
        return None

    def gateway_of(self, subnet_id: int, pool_id: str) -> int | None:
        """The address this pool leased to its gateway, if any."""
        row = _GATEWAY_OF.first(self.connection, {"subnet_id": subnet_id, "pool_id": pool_id})
        return unpack(row[0]) if row else None

    def lease_at(self, subnet_id: int, address: int) -> Lease | None:
        """The lease of an address, with its CNI attachment; None when nobody holds it."""
        row = _LEASE.first(self.connection, {"subnet_id": subnet_id, "address": pack(address)})
        return _lease(row) if row else None

    def leased_addresses_of_pool(
        self, subnet_id: int, pool_id: str, host_id: str | None = None
    ) -> list[int]:
        """The pool's leases Docker made (not CNI's); only those ``host_id`` made, when given."""
        query = select(leases.c.address).where(
            leases.c.subnet_id == subnet_id,
            leases.c.pool_id == pool_id,
            leases.c.cni_attachment.is_(None),
        )
        if host_id is not None:
            query = query.where(leases.c.host_id == host_id)
        return [unpack(row.address) for row in self.connection.execute(query)]

    def parked_of_pool(self, subnet_id: int, pool_id: str) -> list[int]:
        rows = self.connection.execute(
            select(parked.c.address).where(
                parked.c.subnet_id == subnet_id, parked.c.pool_id == pool_id
            )
        )
        return [unpack(row.address) for row in rows]


class OperatorStatements(_Statements):
    """What operators change beside Docker's calls: reservations, import, housekeeping."""

    def add_reservation(self, subnet_id: int, bounds: Range, label: str) -> None:
        self.connection.execute(
            insert(reservations).values(
                subnet_id=subnet_id,
                first=pack(bounds[0]),
                last=pack(bounds[1]),
                label=label,
                created_at=now(),
            )
        )
        self._count_reservations(subnet_id, +1)

    def drop_reservation(self, subnet_id: int, first: int) -> None:
        self.connection.execute(
            delete(reservations).where(
                reservations.c.subnet_id == subnet_id, reservations.c.first == pack(first)
            )
        )
        self._count_reservations(subnet_id, -1)

    def _count_reservations(self, subnet_id: int, delta: int) -> None:
        self.connection.execute(
            update(subnets)
            .where(subnets.c.id == subnet_id)
            .values(reservations=subnets.c.reservations + delta)
        )

    def insert_rows(self, table: Any, rows: list[dict[str, Any]]) -> None:
        """A bulk insert (one executemany); used by import."""
        if rows:
            self.connection.execute(insert(table), rows)

    def add_subnet_row(self, values: dict[str, Any]) -> int:
        subnet_id: int = self.connection.execute(
            insert(subnets).values(**values).returning(subnets.c.id)
        ).scalar_one()
        return subnet_id


def _lease(row: Sequence[Any]) -> Lease:
    """(kind, mac, name, dns_name[, cni_attachment]) as a :class:`Lease`."""
    return Lease(LeaseKind(row[0]), *row[1:])


# Read FOR SHARE at the start of every write of a serving host: an operator's retire (which
# updates the row first) waits for the writes under way, and the writes after it see it.
_HOST_STATE = Prepared(
    select(hosts.c.state, hosts.c.name)
    .where(hosts.c.id == bindparam("host_id"))
    .with_for_update(read=True)
)
HOST_COLUMNS = (
    hosts.c.id,
    hosts.c.name,
    hosts.c.version,
    hosts.c.first_seen,
    hosts.c.last_seen,
    hosts.c.state,
    hosts.c.retired_at,
    hosts.c.retired_by,
)


def host_record(row: Sequence[Any]) -> Host:
    """A row of the ``hosts`` table as a :class:`Host`."""
    host_id, name, version, first_seen, last_seen, state, retired_at, retired_by = row
    return Host(
        host_id,
        name,
        version,
        as_utc(first_seen),
        as_utc(last_seen) if last_seen is not None else None,
        HostState(state),
        as_utc(retired_at) if retired_at is not None else None,
        retired_by,
    )


class HostStatements(_Statements):
    """The hosts of the ledger: heartbeats, state, and what a host holds."""

    def check_serving(self, host_id: str) -> None:
        """Refuse (HostRetired) a write of a host an operator retired; a host without a row
        yet (its first heartbeat is to come) is active."""
        row = _HOST_STATE.first(self.connection, {"host_id": host_id})
        if row is not None and row[0] == HostState.RETIRED:
            raise HostRetired(host_id, row[1])

    def beat(self, host_id: str, name: str, version: str) -> Beat:
        """Record that ``host_id`` is alive now, as ``name`` running ``version``; its state,
        and the other name a live serve with this id beat under."""
        at = now()
        before = self.connection.execute(
            select(hosts.c.name, hosts.c.last_seen).where(hosts.c.id == host_id)
        ).first()
        state = self.connection.execute(
            update(hosts)
            .where(hosts.c.id == host_id)
            .values(name=name, version=version, last_seen=at)
            .returning(hosts.c.state)
        ).scalar()
        if state is not None:
            assert before is not None
            other, seen = before
            live = seen is not None and (at - as_utc(seen)).total_seconds() <= STALE_AFTER_S
            return Beat(HostState(state), other if live and other != name else None)
        self.connection.execute(
            insert(hosts).values(
                id=host_id, name=name, version=version, first_seen=at, last_seen=at, state="active"
            )
        )
        return Beat(HostState.ACTIVE)

    def host(self, host_id: str, *, for_update: bool = False) -> Host | None:
        query = select(*HOST_COLUMNS).where(hosts.c.id == host_id)
        row = self.connection.execute(query.with_for_update() if for_update else query).first()
        return host_record(row) if row is not None else None

    def hosts_named(self, name: str) -> list[Host]:
        rows = self.connection.execute(select(*HOST_COLUMNS).where(hosts.c.name == name))
        return [host_record(row) for row in rows]

    def set_host_state(
        self, host_id: str, state: HostState, at: datetime | None, by: str | None
    ) -> None:
        self.connection.execute(
            update(hosts)
            .where(hosts.c.id == host_id)
            .values(state=state.value, retired_at=at, retired_by=by)
        )

    def leases_of_host(self, host_id: str) -> list[tuple[str, str, int]]:
        """(owner, PoolID, address) of every lease ``host_id`` made, but in the swarm's pools:
        a manager asks for the addresses of containers on every node, which outlive it."""
        rows = self.connection.execute(
            select(pools.c.owner, leases.c.pool_id, leases.c.address)
            .join(
                pools,
                (pools.c.subnet_id == leases.c.subnet_id) & (pools.c.id == leases.c.pool_id),
            )
            .where(leases.c.host_id == host_id, pools.c.owner != SWARM)
            .order_by(leases.c.subnet_id, leases.c.address)
        )
        return [(owner, pool_id, unpack(address)) for owner, pool_id, address in rows]

    def shared_leases_of_host(self, host_id: str) -> list[tuple[str, str, int]]:
        """(owner, PoolID, address) of the leases ``host_id`` made in the shared pools."""
        return [lease for lease in self.leases_of_host(host_id) if lease[0] == SHARED]

    def pools_left_since(self, host_id: str, action: str, since: datetime) -> list[str]:
        """The shared pools that still exist and that ``host_id`` left by ``action`` (a pool's
        history line has no address) since ``since``."""
        rows = self.connection.execute(
            select(history.c.pool_id)
            .distinct()
            .join(pools, (pools.c.owner == SHARED) & (pools.c.id == history.c.pool_id))
            .where(
                history.c.host_id == host_id,
                history.c.action == action,
                history.c.address == "",
                history.c.at >= since,
            )
            .order_by(history.c.pool_id)
        )
        return list(rows.scalars())

    def attachments_of_host(self, host_id: str) -> list[str]:
        """The shared pools ``host_id`` uses."""
        rows = self.connection.execute(
            select(attachments.c.pool_id)
            .where(attachments.c.host_id == host_id)
            .order_by(attachments.c.pool_id)
        )
        return list(rows.scalars())


class Ledger(
    HostStatements,
    SubnetStatements,
    PoolStatements,
    SharedPoolStatements,
    LeaseStatements,
    ParkedStatements,
    OperatorStatements,
    DnsStatements,
):
    """Every statement of one transaction, by what it works on."""


class FreeRangeRows:
    """The :class:`driver.domain.addresses.FreeRanges` of one subnet, as rows of ``free_ranges``."""

    def __init__(self, connection: Connection, subnet_id: int) -> None:
        self.connection = connection
        self.subnet_id = subnet_id

    def _one(self, query: Prepared, address: int) -> Range | None:
        row = query.first(self.connection, {"subnet_id": self.subnet_id, "address": pack(address)})
        return (unpack(row[0]), unpack(row[1])) if row else None

    def first_ending_at_or_after(self, address: int) -> Range | None:
        return self._one(_FREE_ENDING_AT_OR_AFTER, address)

    def containing(self, address: int) -> Range | None:
        found = self.first_ending_at_or_after(address)
        return found if found is not None and found[0] <= address else None

    def ending_at(self, address: int) -> Range | None:
        return None if address < 0 else self._one(_FREE_ENDING_AT, address)

    def starting_at(self, address: int) -> Range | None:
        return None if address >= 1 << 128 else self._one(_FREE_STARTING_AT, address)

    def add(self, free: Range) -> None:
        _FREE_ADD.count(
            self.connection,
            {"subnet_id": self.subnet_id, "first": pack(free[0]), "last": pack(free[1])},
        )

    def remove(self, free: Range) -> None:
        _FREE_REMOVE.count(self.connection, {"subnet_id": self.subnet_id, "old": pack(free[0])})

    def replace(self, old: Range, new: Range) -> None:
        _FREE_REPLACE.count(
            self.connection,
            {
                "b_subnet_id": self.subnet_id,
                "old": pack(old[0]),
                "new_first": pack(new[0]),
                "new_last": pack(new[1]),
            },
        )


class HeldSubnets:
    """The :class:`driver.domain.addresses.HeldSubnets` of some address plans, in one address space
    and family."""

    def __init__(
        self, connection: Connection, owners: tuple[str, ...], space: str, version: int
    ) -> None:
        self.connection = connection
        self.params = [{"owner": owner, "space": space, "version": version} for owner in owners]

    def first_overlapping(self, first: int, last: int) -> Range | None:
        found = [
            held
            for params in self.params
            if (held := self._first_overlapping(params, first, last)) is not None
        ]
        return min(found) if found else None

    def _first_overlapping(self, params: dict[str, Any], first: int, last: int) -> Range | None:
        params = {**params, "first": pack(first), "last": pack(last)}
        # One plan's subnets never overlap each other, so the only one that can start before
        # `first` and still reach into the range is the one that starts last before it.
        before = _HELD_BEFORE.first(self.connection, params)
        if before is not None and unpack(before[2]) >= first:
            return unpack(before[1]), unpack(before[2])
        after = _HELD_AFTER.first(self.connection, params)
        return (unpack(after[1]), unpack(after[2])) if after is not None else None
