"""The Docker leases waiting for their container's name, as statements of one transaction.

No table of their own: a lease of a pool that publishes in DNS, made by Docker for an endpoint
without the container's name (engines before 29) and not yet named (``dns_name`` NULL), is
waiting. Released, it is gone from the leases and so from the wait; nothing is left to clean.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import netaddr
from sqlalchemy import Connection, and_, select, update

from driver.domain.dns import ZONE_OPTION
from driver.domain.moments import as_utc
from driver.domain.pools import LeaseKind
from driver.storage.models import leases, pools, subnets
from driver.storage.rows import pack, unpack

# what Docker leases for an endpoint: with its MAC (endpoint), or with nothing (other)
_DOCKER_ENDPOINT_KINDS = (str(LeaseKind.ENDPOINT), str(LeaseKind.OTHER))


@dataclass(frozen=True)
class WaitingLease:
    pool_id: str
    subnet_id: int
    address: str
    value: int
    mac: str | None
    created_at: datetime


def _waiting() -> object:
    return and_(
        leases.c.kind.in_(_DOCKER_ENDPOINT_KINDS),
        leases.c.name.is_(None),
        leases.c.dns_name.is_(None),
        leases.c.cni_attachment.is_(None),
    )


def leases_waiting_for_names(
    connection: Connection, host_id: str, owners: tuple[str, ...], since: datetime | None
) -> list[WaitingLease]:
    """This host's Docker leases in pools with a DNS zone that wait for their container's name,
    made at or after ``since`` (all of them when None)."""
    query = (
        select(
            leases.c.pool_id,
            leases.c.subnet_id,
            leases.c.address,
            leases.c.mac,
            leases.c.created_at,
            subnets.c.version,
        )
        .join(pools, and_(pools.c.id == leases.c.pool_id, pools.c.owner.in_(owners)))
        .join(subnets, subnets.c.id == leases.c.subnet_id)
        .where(
            pools.c.options.contains(ZONE_OPTION),
            leases.c.host_id == host_id,
            _waiting(),  # type: ignore[arg-type]
        )
    )
    if since is not None:
        query = query.where(leases.c.created_at >= since)
    found = []
    for row in connection.execute(query):
        value = unpack(row.address)
        found.append(
            WaitingLease(
                row.pool_id,
                row.subnet_id,
                str(netaddr.IPAddress(value, row.version)),
                value,
                row.mac,
                as_utc(row.created_at),
            )
        )
    return found


def still_waiting(connection: Connection, lease: WaitingLease) -> bool:
    """Whether the lease is still the one that waited (not released, nor released and made
    again for another container) and still without a name; locks it until the commit."""
    query = select(leases.c.created_at, leases.c.mac).where(
        leases.c.subnet_id == lease.subnet_id,
        leases.c.address == pack(lease.value),
        leases.c.pool_id == lease.pool_id,
        _waiting(),  # type: ignore[arg-type]
    )
    if connection.dialect.name == "postgresql":
        query = query.with_for_update()
    row = connection.execute(query).first()
    return row is not None and as_utc(row.created_at) == lease.created_at and row.mac == lease.mac


def name_lease(connection: Connection, lease: WaitingLease, dns_name: str) -> None:
    """Record the full DNS name the lease is now published under."""
    connection.execute(
        update(leases)
        .where(leases.c.subnet_id == lease.subnet_id, leases.c.address == pack(lease.value))
        .values(dns_name=dns_name)
    )
