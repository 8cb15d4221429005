"""Pre-filling a ledger through the same tables the driver uses (bulk inserts of leases and of
the free ranges between them), not through a million HTTP calls."""

from __future__ import annotations

from datetime import UTC, datetime

import netaddr
from sqlalchemy import Engine, delete, insert, select

from driver.config import Settings
from driver.storage.models import free_ranges, leases, pools
from driver.storage.rows import pack
from driver.storage.store import Store
from driver.usecases.ipam import Ipam

# a hole every HOLE_EVERY addresses, so that the free ranges are many, as after real churn
HOLE_EVERY = 50


def prefill(engine: Engine, cidr: str, count: int, filler_base: str = "10.0.0.0/8") -> str:
    """Create pool ``cidr`` and make the database hold ``count`` leases in all.

    The pool itself holds as many as fit in 90% of it, with a hole every HOLE_EVERY addresses;
    the rest go to /16 filler pools carved from ``filler_base``. Returns the pool's PoolID.
    """
    ipam = Ipam(Store(engine), Settings().default_pools)
    pool_id = ipam.request_pool("LocalDefault", cidr, "", {}, ":" in cidr).pool_id
    network = netaddr.IPNetwork(cidr)
    capacity = min(network.size - 2, 1 << 62)
    here = min(count, int(capacity * 0.9))
    _fill(engine, pool_id, network, here)
    rest = count - here
    fillers = netaddr.IPNetwork(filler_base).subnet(16)
    while rest > 0:
        filler = next(fillers)
        filler_id = ipam.request_pool("LocalDefault", str(filler), "", {}, False).pool_id
        chunk = min(rest, 60_000)
        _fill(engine, filler_id, filler, chunk)
        rest -= chunk
    return pool_id


def _fill(engine: Engine, pool_id: str, network: netaddr.IPNetwork, count: int) -> None:
    """Lease ``count`` addresses from the bottom of the pool, leaving regular holes."""
    first = int(network.first) + 1
    with engine.begin() as c:
        subnet_id = c.execute(select(pools.c.subnet_id).where(pools.c.id == pool_id)).scalar_one()
        c.execute(delete(free_ranges).where(free_ranges.c.subnet_id == subnet_id))
        now = datetime.now(UTC)
        batch: list[dict[str, object]] = []
        holes: list[dict[str, object]] = []
        leased, address = 0, first
        while leased < count:
            if (address - first) % HOLE_EVERY == HOLE_EVERY - 1:
                holes.append(
                    {"subnet_id": subnet_id, "first": pack(address), "last": pack(address)}
                )
            else:
                batch.append(
                    {
                        "subnet_id": subnet_id,
                        "address": pack(address),
                        "pool_id": pool_id,
                        "kind": "endpoint",
                        "mac": None,
                        "name": None,
                        "created_at": now,
                    }
                )
                leased += 1
            address += 1
            if len(batch) >= 50_000:
                c.execute(insert(leases), batch)
                batch.clear()
        if batch:
            c.execute(insert(leases), batch)
        last = int(network.last) - (1 if network.version == 4 else 0)
        holes.append({"subnet_id": subnet_id, "first": pack(address), "last": pack(last)})
        c.execute(insert(free_ranges), holes)
