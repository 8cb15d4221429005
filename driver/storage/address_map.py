"""Counting a pool's addresses by state for its map: nothing iterates over a pool's addresses.

A block's used addresses are what its free ranges leave (the free ranges are few where the leases
are dense); its parked ones are counted by the database; the leases by kind come from the index on
``(pool_id, kind, mac)``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, func, select

from driver.domain.addresses import Range
from driver.domain.status import MapLayout
from driver.storage.models import free_ranges, leases, parked
from driver.storage.rows import pack, unpack


class AddressMap:
    """Counts by block and by kind over one subnet's leases and parked addresses."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def free_by_block(self, subnet_id: int, layout: MapLayout) -> dict[int, int]:
        """Free addresses per cell of ``layout`` (keyed by cell index), from the free ranges."""
        rows = self.connection.execute(
            select(free_ranges.c.first, free_ranges.c.last).where(
                free_ranges.c.subnet_id == subnet_id,
                free_ranges.c.last >= pack(layout.first),
                free_ranges.c.first <= pack(layout.last),
            )
        )
        free: dict[int, int] = {}
        for first_blob, last_blob in rows:
            first = max(unpack(first_blob), layout.first)
            last = min(unpack(last_blob), layout.last)
            for block in range(first >> layout.block_bits, (last >> layout.block_bits) + 1):
                lo = max(first, block << layout.block_bits)
                hi = min(last, ((block + 1) << layout.block_bits) - 1)
                index = block - layout.first_block
                free[index] = free.get(index, 0) + hi - lo + 1
        return free

    def leased_within(self, subnet_id: int, within: Range) -> int:
        return int(
            self.connection.execute(
                select(func.count()).where(
                    leases.c.subnet_id == subnet_id,
                    leases.c.address.between(pack(within[0]), pack(within[1])),
                )
            ).scalar_one()
        )

    def kinds_of_pools(self, pool_ids: list[str]) -> dict[str, int]:
        """The pools' leases by kind."""
        rows = self.connection.execute(
            select(leases.c.kind, func.count())
            .where(leases.c.pool_id.in_(pool_ids))
            .group_by(leases.c.kind)
        )
        return {kind: n for kind, n in rows}

    def parked_by_block(
        self, subnet_id: int, layout: MapLayout, at: float
    ) -> tuple[dict[int, int], dict[int, int]]:
        """Parked addresses per cell: those still parked at the clock ``at``, and those whose
        time ran out (free, as the next allocation makes them)."""
        return (
            self._by_block(parked, subnet_id, layout, parked.c.until > at),
            self._by_block(parked, subnet_id, layout, parked.c.until <= at),
        )

    def _by_block(
        self, table: Table, subnet_id: int, layout: MapLayout, *more: Any
    ) -> dict[int, int]:
        """Rows per cell of ``layout`` (keyed by cell index), grouped on the address's prefix."""
        prefix = func.substr(table.c.address, 1, 16 - layout.block_bits // 8)
        rows = self.connection.execute(
            select(prefix, func.count())
            .where(
                table.c.subnet_id == subnet_id,
                table.c.address.between(pack(layout.first), pack(layout.last)),
                *more,
            )
            .group_by(prefix)
        )
        return {int.from_bytes(key, "big") - layout.first_block: n for key, n in rows}
