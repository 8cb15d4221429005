"""Counting a pool's addresses by state for its map, in the database: nothing iterates over a
pool's addresses, so a map costs the same with a thousand leases as with a million."""

from __future__ import annotations

from sqlalchemy import Connection, Table, func, select

from driver.domain.addresses import Range
from driver.domain.status import MapLayout
from driver.storage.models import leases, parked
from driver.storage.rows import pack


class AddressMap:
    """Counts by block and by kind over one subnet's leases and parked addresses."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def leased_by_block(self, subnet_id: int, layout: MapLayout) -> dict[int, int]:
        return self._by_block(leases, subnet_id, layout)

    def parked_by_block(self, subnet_id: int, layout: MapLayout) -> dict[int, int]:
        return self._by_block(parked, subnet_id, layout)

    def _by_block(self, table: Table, subnet_id: int, layout: MapLayout) -> dict[int, int]:
        """Rows per cell of ``layout`` (keyed by cell index), grouped on the address's prefix."""
        prefix = func.substr(table.c.address, 1, 16 - layout.block_bits // 8)
        rows = self.connection.execute(
            select(prefix, func.count())
            .where(
                table.c.subnet_id == subnet_id,
                table.c.address.between(pack(layout.first), pack(layout.last)),
            )
            .group_by(prefix)
        )
        return {int.from_bytes(key, "big") - layout.first_block: n for key, n in rows}

    def kinds(self, subnet_id: int, within: Range) -> dict[str, int]:
        """Leases by kind within the bounds."""
        rows = self.connection.execute(
            select(leases.c.kind, func.count())
            .where(
                leases.c.subnet_id == subnet_id,
                leases.c.address.between(pack(within[0]), pack(within[1])),
            )
            .group_by(leases.c.kind)
        )
        return {kind: n for kind, n in rows}

    def parked_count(self, subnet_id: int, within: Range) -> int:
        return int(
            self.connection.execute(
                select(func.count()).where(
                    parked.c.subnet_id == subnet_id,
                    parked.c.address.between(pack(within[0]), pack(within[1])),
                )
            ).scalar_one()
        )
